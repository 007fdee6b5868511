/**
 * Migration benchmark: frozen time, per-phase times and the longest gap an
 * independent client probe observes (a small request every 10 ms over one
 * persistent connection, from a third node), for a small service and one
 * holding ~100 MiB, moved by roam (stop-copy) and by the baseline in the
 * same run (cold: plain CRIU stop-and-copy in the research-prototype
 * sequence, nothing prepared ahead, one transfer stream, no handover). The underlay is
 * limited to 1 Gbit/s, an edge link.
 */
import { callJson } from '../src/http/client.js';
import { median, moveWithProbe, onBenchTestbed, r1, startEchoService } from './common.js';

interface Sample {
  mode: string;
  size_mib: number;
  frozen_ms: number;
  probe_gap_ms: number;
  image_mib: number;
  phases: Record<string, number>;
}

export async function migrationBench(runs: number, sizesMib: number[]): Promise<Record<string, unknown>> {
  const samples: Sample[] = [];
  await onBenchTestbed('bmig', async (b) => {
    for (const size of sizesMib) {
      const svc = `svc${size}`;
      const ep = await startEchoService(b, svc, size, 60000);
      let where = 'node1';
      for (let run = 0; run < runs; run++) {
        for (const mode of ['stop-copy', 'cold']) {
          // The baseline is the research-prototype sequence throughout: no handover either.
          const { report, to, probeGapMs } = await moveWithProbe(b, { name: svc, ip: ep.ip }, where, mode, mode === 'cold' ? 'off' : 'full');
          where = to;
          samples.push({ mode, size_mib: size, frozen_ms: report.frozen_ms, probe_gap_ms: probeGapMs, image_mib: r1(report.image_bytes / 1048576), phases: report.phases });
        }
      }
      await callJson(b.api, 'DELETE', `/v1/endpoints/${svc}`);
    }
  });
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
