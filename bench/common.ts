/** What the testbed benches share: polling, a migration through the API, logs, medians. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/http/client.js';
import type { HandoverReport } from '../src/records/migration-report.js';
import type { EndpointRecord } from '../src/records/endpoint.js';
import { makeRootfs } from '../src/testbed/container-rootfs.js';
import { testbedDown } from '../src/testbed/down.js';
import { testbedUp } from '../src/testbed/up.js';
import type { TestbedState } from '../src/testbed/state.js';
import { migrated, migrationEnded } from '../test/helpers/migrations.js';
import { endpointLog, streamProgress, waitFor, workload } from '../test/helpers/testbed.js';

// The tests' helpers: the workloads' paths, an endpoint's log, polling.
export { endpointLog, waitFor, workload };

/** A bench does not give up on a migration lightly: it fails only if one hangs. */
const MIGRATION_TIMEOUT_MS = 600000;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

export const r1 = (x: number): number => Math.round(x * 10) / 10;
export const r2 = (x: number): number => Math.round(x * 100) / 100;

/** Moves endpoint `name` through the API and returns the migration's report (handover: the agents' default if not said). */
export function migrateOnce(tb: TestbedState, name: string, to: string, mode: string, handover?: string, more: { presync?: boolean } = {}): Promise<HandoverReport> {
  return migrated(tb, { endpoint: name, to, mode, handover, ...more }, MIGRATION_TIMEOUT_MS);
}

/** The report of migration `id`, driven by node `from`, once it has one. */
export async function reportOf(tb: TestbedState, id: string, from: string): Promise<HandoverReport> {
  return (await migrationEnded(tb, { id, from }, MIGRATION_TIMEOUT_MS)).report;
}

/** The last progress line of a stream-check endpoint; throws if its stream broke. */
export function probeState(tb: TestbedState, node: string, name: string): { maxGapMs: number; verified: number } {
  const p = streamProgress(endpointLog(tb, node, name));
  if (p.failed) throw new Error(`bench: ${name} saw a broken stream`);
  return p.last ?? { maxGapMs: 0, verified: 0 };
}

export interface BenchTestbed {
  tb: TestbedState;
  api: { socketPath: string };
}

/** Runs `work` on a fresh three-node testbed with a 1 Gbit/s underlay, and takes it down afterwards. */
export async function onBenchTestbed<T>(name: string, work: (b: BenchTestbed) => Promise<T>): Promise<T> {
  await testbedDown(name, () => undefined);
  const tb = await testbedUp({ name, nodes: 3, underlayRate: '1gbit', say: () => undefined });
  try {
    return await work({ tb, api: { socketPath: tb.nodes[0]!.apiSocket } });
  } finally {
    await testbedDown(name, () => undefined);
  }
}

/**
 * Runs `work` on a fresh bench testbed where an OCI container `box` runs on node1 (`command`, serving echo on
 * port 7001), with a volume of `volumeMib` MiB of random files at /data; the root filesystem goes afterwards.
 */
export async function onContainerTestbed<T>(
  name: string, o: { volumeMib: number; command: string[] }, work: (b: BenchTestbed, box: EndpointRecord) => Promise<T>,
): Promise<T> {
  const rootfs = makeRootfs();
  try {
    const volume = join(rootfs.dir, 'volume');
    mkdirSync(volume);
    for (let i = 0; i < o.volumeMib; i++) writeFileSync(join(volume, `part-${i}`), randomBytes(1048576));
    return await onBenchTestbed(name, async (b) => {
      const box = await callJson<EndpointRecord>(b.api, 'POST', '/v1/endpoints', {
        name: 'box', node: 'node1', command: o.command, container: { rootfs: rootfs.rootfs, volumes: [{ source: volume, destination: '/data' }] },
      });
      await waitFor('the container to listen', () => endpointLog(b.tb, 'node1', 'box').includes('listening 7001'), 10000);
      return work(b, box);
    });
  } finally {
    rootfs.remove();
  }
}

/** An echo service on node1 holding `holdMib` of data; resolves once it listens. */
export async function startEchoService(b: BenchTestbed, name: string, holdMib: number, timeoutMs: number): Promise<EndpointRecord> {
  const ep = await callJson<EndpointRecord>(b.api, 'POST', '/v1/endpoints', { name, node: 'node1', command: [process.execPath, workload('echo-server.js'), '--port', '7001', '--hold-mb', String(holdMib)] });
  await waitFor(`${name} to start`, () => endpointLog(b.tb, 'node1', name).includes('listening'), timeoutMs);
  return ep;
}

/**
 * Moves `service` from `from` to the other of node1 and node2 while an
 * independent probe streams to it from node3; `afterMove` runs before the
 * probe is read. Returns the report and the probe's longest echo gap.
 */
export async function moveWithProbe(
  b: BenchTestbed,
  service: { name: string; ip: string },
  from: string,
  mode: string,
  handover: string,
  afterMove?: (to: string) => Promise<void>,
  more: { presync?: boolean } = {},
): Promise<{ report: HandoverReport; to: string; probeGapMs: number }> {
  await callJson(b.api, 'POST', '/v1/endpoints', { name: 'probe', node: 'node3', command: [process.execPath, workload('stream-check.js'), service.ip, '7001', '--rate', '20000'] });
  await waitFor('the probe to flow', () => (endpointLog(b.tb, 'node3', 'probe').match(/"verified"/g) ?? []).length >= 3, 10000);
  const to = from === 'node1' ? 'node2' : 'node1';
  const report = await migrateOnce(b.tb, service.name, to, mode, handover, more);
  if (report.result !== 'success') throw new Error(`bench: ${mode} migration of ${service.name} failed: ${report.reason}`);
  await afterMove?.(to);
  await sleep(1500);
  const probe = probeState(b.tb, 'node3', 'probe');
  await callJson(b.api, 'DELETE', '/v1/endpoints/probe');
  return { report, to, probeGapMs: probe.maxGapMs };
}
