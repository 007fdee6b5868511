/**
 * Frozen time against resident memory: a service holding 16 MiB to 1 GiB
 * (a table it checksums on demand) moved by each migration mode over a
 * 1 Gbit/s underlay, with an independent probe connection on a third node.
 * After every move the service's checksum is compared with the one it had
 * before: a mode that loses or corrupts memory fails the bench.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/api/http-client.js';
import type { EndpointRecordWire } from '../src/api/schemas.js';
import { testbedDown } from '../src/testbed/down.js';
import { testbedUp } from '../src/testbed/up.js';
import { logOf, median, migrateOnce, probeState, r1, r2, until, workload } from './common.js';

export const MEMORY_MODES = ['stop-copy', 'streamed'] as const;

interface Sample {
  mode: string;
  size_mib: number;
  frozen_ms: number;
  probe_gap_ms: number;
  image_mib: number;
  dump_ms: number;
  transfer_ms: number;
  restore_ms: number;
}

function checksums(log: string): string[] {
  return [...log.matchAll(/sha256 ([0-9a-f]{16})/g)].map((m) => m[1]!);
}

export async function memoryBench(runs: number, sizesMib: number[]): Promise<Record<string, unknown>> {
  const name = 'bmem';
  await testbedDown(name, () => undefined);
  const tb = await testbedUp({ name, nodes: 3, underlayRate: '1gbit', say: () => undefined });
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const samples: Sample[] = [];
  try {
    for (const size of sizesMib) {
      const svc = `mem${size}`;
      const ep = await callJson<EndpointRecordWire>(api, 'POST', '/v1/endpoints', { name: svc, node: 'node1', command: [process.execPath, workload('echo-server.js'), '--port', '7001', '--hold-mb', String(size)] });
      await until(() => logOf(tb, 'node1', svc).includes('listening'), 120000, `${svc} to start`);
      const expected = checksums(logOf(tb, 'node1', svc))[0]!;
      let where = 'node1';
      for (let run = 0; run < runs; run++) {
        for (const mode of MEMORY_MODES) {
          await callJson(api, 'POST', '/v1/endpoints', { name: 'probe', node: 'node3', command: [process.execPath, workload('stream-check.js'), ep.ip, '7001', '--rate', '20000'] });
          await until(() => (logOf(tb, 'node3', 'probe').match(/"verified"/g) ?? []).length >= 3, 10000, 'the probe to flow');
          const to = where === 'node1' ? 'node2' : 'node1';
          const report = await migrateOnce(tb, svc, to, mode, 'full');
          if (report.result !== 'success') throw new Error(`bench: ${mode} migration of ${size} MiB failed: ${report.reason}`);
          where = to;
          const moved = (await callJson<EndpointRecordWire[]>(api, 'GET', '/v1/endpoints')).find((e) => e.name === svc)!;
          const seen = checksums(logOf(tb, to, svc)).length;
          process.kill(moved.pid!, 'SIGUSR2');
          await until(() => checksums(logOf(tb, to, svc)).length > seen, 60000, `${svc}'s checksum`);
          const after = checksums(logOf(tb, to, svc)).at(-1);
          if (after !== expected) throw new Error(`bench: ${svc} came back with different memory after a ${mode} move`);
          await sleep(1000);
          const probe = probeState(tb, 'node3', 'probe');
          await callJson(api, 'DELETE', '/v1/endpoints/probe');
          samples.push({
            mode, size_mib: size, frozen_ms: report.frozen_ms, probe_gap_ms: probe.maxGapMs, image_mib: r1(report.image_bytes / 1048576),
            dump_ms: report.phases.dump_ms, transfer_ms: report.phases.transfer_ms, restore_ms: report.phases.restore_ms,
          });
        }
      }
      await callJson(api, 'DELETE', `/v1/endpoints/${svc}`);
    }
  } finally {
    await testbedDown(name, () => undefined);
  }
  const summary = MEMORY_MODES.map((mode) => {
    const rows = sizesMib.map((size) => {
      const xs = samples.filter((s) => s.mode === mode && s.size_mib === size);
      const m = (f: (s: Sample) => number) => r1(median(xs.map(f)));
      return { size_mib: size, frozen_ms: m((s) => s.frozen_ms), probe_gap_ms: m((s) => s.probe_gap_ms), image_mib: m((s) => s.image_mib), dump_ms: m((s) => s.dump_ms), transfer_ms: m((s) => s.transfer_ms), restore_ms: m((s) => s.restore_ms) };
    });
    const smallest = rows[0]!;
    const largest = rows[rows.length - 1]!;
    return { mode, rows, ratio_frozen_largest_to_smallest: r2(largest.frozen_ms / smallest.frozen_ms) };
  });
  return {
    scenario: 'memory',
    what: 'frozen time, phases and an independent probe\'s longest gap against the memory the service holds, per migration mode, underlay 1 Gbit/s; memory verified by checksum after every move',
    target: 'best mode: frozen at the largest size <= 1.5x frozen at 16 MiB, and under 300 ms',
    runs_per_point: runs,
    summary,
    samples,
  };
}
