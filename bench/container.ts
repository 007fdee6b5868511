/**
 * Container benchmark: an OCI container (runc) serving echo, with a 100 MiB
 * data volume it keeps appending to, moved node1 <-> node2 with its files
 * copied while it runs and only the changes sent in the freeze (proactive
 * sync, the default), against the same moves with every file sent in the
 * freeze; interleaved, in the same run. Reported: frozen time, the longest
 * gap a probe client on node3 saw, and the file bytes sent before and
 * inside the freeze. Underlay 1 Gbit/s.
 */
import { median, moveWithProbe, onContainerTestbed, r1, r2 } from './common.js';

interface Sample {
  presync: boolean;
  frozen_ms: number;
  probe_gap_ms: number;
  client_p95_ms: number;
  presync_mib: number;
  frozen_file_mib: number;
  image_mib: number;
  phases: Record<string, number>;
}

const VOLUME_MIB = 100;

export async function containerBench(runs: number): Promise<Record<string, unknown>> {
  const samples: Sample[] = [];
  const command = ['/bin/sh', '-c', 'i=0; (while :; do i=$((i+1)); echo $i >> /data/seq; usleep 20000; done) & exec /bin/echo-server 7001'];
  await onContainerTestbed('bctr', { volumeMib: VOLUME_MIB, command }, async (b, ep) => {
    let where = 'node1';
    for (let run = 0; run < runs; run++) {
      for (const presync of [true, false]) {
        const { report, to, probeGapMs } = await moveWithProbe(b, { name: 'box', ip: ep.ip }, where, 'stop-copy', 'full', undefined, { presync });
        where = to;
        samples.push({
          presync, frozen_ms: report.frozen_ms, probe_gap_ms: probeGapMs, client_p95_ms: report.client_stall?.p95_ms ?? 0,
          presync_mib: r2((report.files?.presync_bytes ?? 0) / 1048576), frozen_file_mib: r2((report.files?.frozen_bytes ?? 0) / 1048576),
          image_mib: r2(report.image_bytes / 1048576), phases: report.phases,
        });
      }
    }
  });
  const sum = (presync: boolean) => {
    const xs = samples.filter((s) => s.presync === presync);
    const m = (f: (s: Sample) => number) => r1(median(xs.map(f)));
    return {
      frozen_ms: m((s) => s.frozen_ms), probe_gap_ms: m((s) => s.probe_gap_ms), client_p95_ms: m((s) => s.client_p95_ms),
      presync_mib: m((s) => s.presync_mib), frozen_file_mib: m((s) => s.frozen_file_mib), image_mib: m((s) => s.image_mib),
      phases_ms: Object.fromEntries(Object.keys(xs[0]!.phases).map((p) => [p, m((s) => s.phases[p]!)])),
    };
  };
  const on = sum(true);
  const off = sum(false);
  return {
    scenario: 'container',
    what: `an OCI container (runc) with a ${VOLUME_MIB} MiB volume it appends to, moved node1 <-> node2 (stop-copy) with a probe client on node3: files copied while it runs and only changes in the freeze (presync on) vs all files in the freeze (off), interleaved; underlay 1 Gbit/s`,
    runs_per_setting: runs,
    presync_on: on,
    presync_off: off,
    ratio_frozen_on_to_off: r2(on.frozen_ms / off.frozen_ms),
    ratio_gap_on_to_off: r2(on.probe_gap_ms / off.probe_gap_ms),
    samples,
  };
}
