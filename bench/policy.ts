/**
 * Follow-the-client benchmark: an OCI container with a 100 MiB volume on
 * node1, its client (20 streams) beside it; the client is moved to the
 * other of node1/node2 and the container follows it on its own. Measured
 * from the client's arrival to the container's: with proactive preparation
 * (the predicted target's namespace, image and volume made ready while the
 * traffic shifts) against without (all of it in the move), interleaved in
 * the same run; and the container's frozen time in both.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/http/client.js';
import type { DecisionWire } from '../src/records/decision.js';
import type { EndpointRecord } from '../src/records/endpoint.js';
import { median, migrateOnce, onContainerTestbed, r1, r2, reportOf, workload } from './common.js';

interface Sample {
  prepare: boolean;
  arrival_ms: number;
  decided_ms: number;
  frozen_ms: number;
  prepare_phase_ms: number;
  prepared_ahead_ms: number;
  total_ms: number;
  /** the frozen window's parts */
  dump_ms: number;
  transfer_ms: number;
  restore_ms: number;
  frozen_file_bytes: number;
}

const VOLUME_MIB = 100;

export async function policyBench(runs: number): Promise<Record<string, unknown>> {
  const samples: Sample[] = [];
  await onContainerTestbed('bpol', { volumeMib: VOLUME_MIB, command: ['/bin/echo-server', '7001'] }, async (b, ep) => {
    await callJson(b.api, 'POST', '/v1/endpoints', { name: 'roamer', node: 'node1', command: [process.execPath, workload('stream-check.js'), ep.ip, '7001', '--connections', '20', '--rate', '10000'] });
    let where = 'node1';
    const seen = new Set<string>();
    for (let run = 0; run < runs; run++) {
      for (const prepare of [true, false]) {
        await callJson(b.api, 'PUT', '/v1/endpoints/box/policy', { policy: { followClient: { windowMs: 3000, sustainMs: 2000 }, minDwellMs: 0, prepare } });
        await sleep(4000); // a full window of the clients where they are now
        const to = where === 'node1' ? 'node2' : 'node1';
        const client = await migrateOnce(b.tb, 'roamer', to, 'auto', 'full');
        if (client.result !== 'success') throw new Error(`bench: moving the client failed: ${client.reason}`);
        const clientArrived = performance.now();
        let decision: DecisionWire | undefined;
        while (!decision) {
          if (performance.now() - clientArrived > 60000) throw new Error('bench: the container did not follow its client within 60 s');
          await sleep(50);
          decision = (await callJson<DecisionWire[]>(b.api, 'GET', '/v1/decisions'))
            .find((d) => d.endpoint === 'box' && d.outcome === 'moved' && d.to === to && d.migration !== undefined && !seen.has(d.migration));
        }
        seen.add(decision.migration!);
        const decidedMs = performance.now() - clientArrived;
        const report = await reportOf(b.tb, decision.migration!, where);
        if (report.result !== 'success') throw new Error(`bench: the container's move failed: ${report.reason}`);
        while ((await callJson<EndpointRecord[]>(b.api, 'GET', '/v1/endpoints')).find((e) => e.name === 'box')?.node !== to) await sleep(20);
        samples.push({
          prepare, arrival_ms: r1(performance.now() - clientArrived), decided_ms: r1(decidedMs), frozen_ms: report.frozen_ms, prepare_phase_ms: report.phases.prepare_ms,
          prepared_ahead_ms: report.prepared_ahead_ms ?? 0, total_ms: r1(Object.values(report.phases).reduce((x, y) => x + y, 0) - report.phases.pull_ms),
          dump_ms: report.phases.dump_ms, transfer_ms: report.phases.transfer_ms, restore_ms: report.phases.restore_ms, frozen_file_bytes: report.files?.frozen_bytes ?? 0,
        });
        where = to;
      }
    }
  });
  const sum = (prepare: boolean) => {
    const xs = samples.filter((s) => s.prepare === prepare);
    const m = (f: (s: Sample) => number) => r1(median(xs.map(f)));
    return {
      arrival_ms: m((s) => s.arrival_ms), decided_ms: m((s) => s.decided_ms), frozen_ms: m((s) => s.frozen_ms),
      prepare_phase_ms: m((s) => s.prepare_phase_ms), prepared_ahead_ms: m((s) => s.prepared_ahead_ms), migration_ms: m((s) => s.total_ms),
      dump_ms: m((s) => s.dump_ms), transfer_ms: m((s) => s.transfer_ms), restore_ms: m((s) => s.restore_ms), frozen_file_bytes: m((s) => s.frozen_file_bytes),
    };
  };
  const on = sum(true);
  const off = sum(false);
  return {
    scenario: 'policy_follow_client',
    what: `an OCI container with a ${VOLUME_MIB} MiB volume follows its client (20 streams) between node1 and node2 on its own (follow-the-client: window 3 s, held 2 s): with the predicted target prepared ahead vs everything prepared in the move, interleaved; underlay 1 Gbit/s`,
    runs_per_setting: runs,
    prepare_on: on,
    prepare_off: off,
    ratio_arrival_on_to_off: r2(on.arrival_ms / off.arrival_ms),
    ratio_after_decision_on_to_off: r2((on.arrival_ms - on.decided_ms) / (off.arrival_ms - off.decided_ms)),
    ratio_frozen_on_to_off: r2(on.frozen_ms / off.frozen_ms),
    samples,
  };
}
