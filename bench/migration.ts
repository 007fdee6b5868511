/**
 * Migration benchmark: frozen time, per-phase times and the longest gap an
 * independent client probe observes (a small request every 10 ms over one
 * persistent connection, from a third node), for a small service and one
 * holding ~100 MiB, moved by roam (stop-copy) and by the baseline in the
 * same run (cold: plain CRIU stop-and-copy in the research-prototype
 * sequence, nothing prepared ahead, one transfer stream, no handover). The underlay is
 * limited to 1 Gbit/s, an edge link.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/api/http-client.js';
import type { EndpointRecordWire } from '../src/api/schemas.js';
import { testbedDown } from '../src/testbed/down.js';
import { testbedUp } from '../src/testbed/up.js';
import { logOf, median, migrateOnce, probeState, r1, until, workload } from './common.js';

interface Sample {
  mode: string;
  size_mib: number;
  frozen_ms: number;
  probe_gap_ms: number;
  image_mib: number;
  phases: Record<string, number>;
}

export async function migrationBench(runs: number, sizesMib: number[]): Promise<Record<string, unknown>> {
  const name = 'bmig';
  await testbedDown(name, () => undefined);
  const tb = await testbedUp({ name, nodes: 3, underlayRate: '1gbit', say: () => undefined });
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const samples: Sample[] = [];
  try {
    for (const size of sizesMib) {
      const svc = `svc${size}`;
      const ep = await callJson<EndpointRecordWire>(api, 'POST', '/v1/endpoints', { name: svc, node: 'node1', command: [process.execPath, workload('echo-server.js'), '--port', '7001', '--hold-mb', String(size)] });
      await until(() => logOf(tb, 'node1', svc).includes('listening'), 60000, `${svc} to start`);
      let where = 'node1';
      for (let run = 0; run < runs; run++) {
        for (const mode of ['stop-copy', 'cold']) {
          await callJson(api, 'POST', '/v1/endpoints', { name: 'probe', node: 'node3', command: [process.execPath, workload('stream-check.js'), ep.ip, '7001', '--rate', '20000'] });
          await until(() => (logOf(tb, 'node3', 'probe').match(/"verified"/g) ?? []).length >= 3, 10000, 'the probe to flow');
          const to = where === 'node1' ? 'node2' : 'node1';
          // The baseline is the research-prototype sequence throughout: no handover either.
          const report = await migrateOnce(tb, svc, to, mode, mode === 'cold' ? 'off' : 'full');
          if (report.result !== 'success') throw new Error(`bench: migration failed: ${report.reason}`);
          where = to;
          await sleep(1500);
          const last = probeState(tb, 'node3', 'probe');
          await callJson(api, 'DELETE', '/v1/endpoints/probe');
          samples.push({ mode, size_mib: size, frozen_ms: report.frozen_ms, probe_gap_ms: last.maxGapMs, image_mib: r1(report.image_bytes / 1048576), phases: report.phases });
        }
      }
      await callJson(api, 'DELETE', `/v1/endpoints/${svc}`);
    }
  } finally {
    await testbedDown(name, () => undefined);
  }
  const summary = sizesMib.map((size) => {
    const of = (mode: string) => samples.filter((s) => s.size_mib === size && s.mode === mode);
    const sum = (mode: string) => {
      const xs = of(mode);
      const phaseNames = Object.keys(xs[0]!.phases);
      return {
        frozen_ms: r1(median(xs.map((s) => s.frozen_ms))),
        probe_gap_ms: r1(median(xs.map((s) => s.probe_gap_ms))),
        gap_over_frozen: r1(median(xs.map((s) => s.probe_gap_ms / s.frozen_ms)) * 100) / 100,
        image_mib: median(xs.map((s) => s.image_mib)),
        phases_ms: Object.fromEntries(phaseNames.map((p) => [p, r1(median(xs.map((s) => s.phases[p]!)))])),
      };
    };
    const roam = sum('stop-copy');
    const base = sum('cold');
    return {
      size_mib: size,
      roam_stop_copy: roam,
      baseline_cold: base,
      ratio_frozen_roam_to_baseline: Math.round((roam.frozen_ms / base.frozen_ms) * 100) / 100,
      ratio_gap_roam_to_baseline: Math.round((roam.probe_gap_ms / base.probe_gap_ms) * 100) / 100,
    };
  });
  return {
    scenario: 'migration',
    what: 'frozen time, phases and the longest gap a probe on a third node observes (request every 10 ms, one connection); roam stop-copy vs the cold baseline, interleaved, underlay 1 Gbit/s',
    runs_per_mode: runs,
    summary,
    samples,
  };
}
