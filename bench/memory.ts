/**
 * Frozen time against resident memory: a service holding 16 MiB to 1 GiB
 * (a table it checksums on demand) moved by each migration mode over a
 * 1 Gbit/s underlay, with an independent probe connection on a third node.
 * After every move the service's checksum is compared with the one it had
 * before: a mode that loses or corrupts memory fails the bench.
 */
import { callJson } from '../src/http/client.js';
import type { EndpointRecord } from '../src/records/endpoint.js';
import { endpointLog, median, moveWithProbe, onBenchTestbed, r1, r2, startEchoService, waitFor } from './common.js';

export const MEMORY_MODES = ['stop-copy', 'streamed', 'post-copy'] as const;

interface Sample {
  mode: string;
  size_mib: number;
  frozen_ms: number;
  probe_gap_ms: number;
  image_mib: number;
  dump_ms: number;
  transfer_ms: number;
  restore_ms: number;
  switch_ms: number;
  unlock_ms: number;
  /** what the restored sockets' clients waited (p95, from their TCP state) */
  client_stall_p95_ms: number;
  /** post-copy: how long the pull after the switch took, and what it moved */
  pull_ms?: number;
  pulled_mib?: number;
}

function checksums(log: string): string[] {
  return [...log.matchAll(/sha256 ([0-9a-f]{16})/g)].map((m) => m[1]!);
}

export async function memoryBench(runs: number, sizesMib: number[], modes: readonly string[] = MEMORY_MODES): Promise<Record<string, unknown>> {
  const samples: Sample[] = [];
  await onBenchTestbed('bmem', async (b) => {
    for (const size of sizesMib) {
      const svc = `mem${size}`;
      const ep = await startEchoService(b, svc, size, 120000);
      const expected = checksums(endpointLog(b.tb, 'node1', svc))[0]!;
      let where = 'node1';
      for (let run = 0; run < runs; run++) {
        for (const mode of modes) {
          const verify = async (to: string) => {
            const moved = (await callJson<EndpointRecord[]>(b.api, 'GET', '/v1/endpoints')).find((e) => e.name === svc)!;
            const seen = checksums(endpointLog(b.tb, to, svc)).length;
            process.kill(moved.pid!, 'SIGUSR2');
            await waitFor(`${svc}'s checksum`, () => checksums(endpointLog(b.tb, to, svc)).length > seen, 60000);
            if (checksums(endpointLog(b.tb, to, svc)).at(-1) !== expected) throw new Error(`bench: ${svc} came back with different memory after a ${mode} move`);
          };
          const { report, to, probeGapMs } = await moveWithProbe(b, { name: svc, ip: ep.ip }, where, mode, 'full', verify);
          where = to;
          samples.push({
            mode, size_mib: size, frozen_ms: report.frozen_ms, probe_gap_ms: probeGapMs, image_mib: r1(report.image_bytes / 1048576),
            dump_ms: report.phases.dump_ms, transfer_ms: report.phases.transfer_ms, restore_ms: report.phases.restore_ms,
            switch_ms: report.phases.switch_ms, unlock_ms: report.phases.unlock_ms, client_stall_p95_ms: report.client_stall?.p95_ms ?? 0,
            ...(report.pull ? { pull_ms: report.pull.duration_ms, pulled_mib: r1(report.pull.pulled_bytes / 1048576) } : {}),
          });
        }
      }
      await callJson(b.api, 'DELETE', `/v1/endpoints/${svc}`);
    }
  });
  const summary = modes.map((mode) => {
    const rows = sizesMib.map((size) => {
      const xs = samples.filter((s) => s.mode === mode && s.size_mib === size);
      const m = (f: (s: Sample) => number) => r1(median(xs.map(f)));
      return {
        size_mib: size, frozen_ms: m((s) => s.frozen_ms), probe_gap_ms: m((s) => s.probe_gap_ms), client_stall_p95_ms: m((s) => s.client_stall_p95_ms), image_mib: m((s) => s.image_mib),
        dump_ms: m((s) => s.dump_ms), transfer_ms: m((s) => s.transfer_ms), restore_ms: m((s) => s.restore_ms), switch_ms: m((s) => s.switch_ms), unlock_ms: m((s) => s.unlock_ms),
        ...(mode === 'post-copy' ? { pull_ms: m((s) => s.pull_ms ?? 0), pulled_mib: m((s) => s.pulled_mib ?? 0) } : {}),
      };
    });
    const smallest = rows[0]!;
    const largest = rows[rows.length - 1]!;
    return { mode, rows, ratio_frozen_largest_to_smallest: r2(largest.frozen_ms / smallest.frozen_ms) };
  });
  const largestOf = (m: (typeof summary)[number]) => m.rows[m.rows.length - 1]!.frozen_ms;
  const best = [...summary].sort((a, b) => largestOf(a) - largestOf(b))[0]!;
  return {
    scenario: 'memory',
    what: 'frozen time, phases and an independent probe\'s longest gap against the memory the service holds, per migration mode, underlay 1 Gbit/s; memory verified by checksum after every move',
    target: 'best mode: frozen at the largest size <= 1.5x frozen at 16 MiB, and under 300 ms',
    runs_per_point: runs,
    best_mode: {
      mode: best.mode, frozen_ms_at_largest: largestOf(best), ratio_frozen_largest_to_smallest: best.ratio_frozen_largest_to_smallest,
      target_met: best.ratio_frozen_largest_to_smallest <= 1.5 && largestOf(best) < 300,
    },
    summary,
    samples,
  };
}
