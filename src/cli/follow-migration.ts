/** Following a migration from the CLI: its phases as they finish, then its report. */
import { callJson, type Target } from '../http/client.js';
import type { HandoverReport, MigrationStatus } from '../records/migration-report.js';

type Out = (line: string) => void;

export /** Polls a migration's status, printing each phase as it completes; returns the report. */
async function followMigration(api: Target, m: { id: string; from: string }, out: Out): Promise<HandoverReport> {
  let shown = 0;
  let headed = false;
  for (;;) {
    const s = await callJson<MigrationStatus>(api, 'GET', `/v1/migrations/${m.id}?from=${m.from}`);
    if (!headed && (headed = true)) out(`migrating ${s.name}: ${s.from} -> ${s.to} (${s.mode}, ${s.id})`);
    for (; shown < s.completed.length; shown++) out(`  ${s.completed[shown]!.phase.padEnd(9)} ${s.completed[shown]!.ms.toFixed(1).padStart(8)} ms`);
    if (s.report) {
      const r = s.report;
      if (r.result === 'success') {
        out(`${r.result}: frozen ${r.frozen_ms} ms, ${r.tcp_connections} TCP connections, ${mib(r.image_bytes)} MiB of images; ${r.name} runs on ${r.running_on}`);
        const m = r.mode_choice;
        if (m) out(`  mode ${m.chosen} (auto): ${m.reasons.join('; ')}`);
        const h = r.handover;
        if (h) out(`  handover (${h.mechanism}): ${h.packets_replayed}/${h.packets_held} held packets replayed, ${h.connections_kicked} connections kicked, ${h.connections_fallback} left to retransmission`);
        const p = r.pull;
        if (p) out(`  pull: ${p.result}, ${mib(p.pulled_bytes)} of ${mib(p.lazy_bytes)} MiB (${p.pages_copied}/${p.pages_total} pages) in ${p.duration_ms} ms after the service resumed`);
        const c = r.client_stall;
        if (c) out(`  clients: stall p50 ${c.p50_ms} ms, p95 ${c.p95_ms} ms, max ${c.max_ms} ms over ${c.connections} active connections (${c.idle} idle)`);
      } else out(`${r.result}: ${r.reason ?? ''}`);
      return r;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
