/** What the testbed benches share: polling, a migration through the API, logs, medians. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/api/http-client.js';
import type { HandoverReport, MigrationStatus } from '../src/migration/report.js';
import type { EndpointRecordWire } from '../src/api/schemas.js';
import { makeRootfs } from '../src/testbed/container-rootfs.js';
import { testbedDown } from '../src/testbed/down.js';
import { testbedUp } from '../src/testbed/up.js';
import type { TestbedState } from '../src/testbed/state.js';

export const workload = (f: string): string => fileURLToPath(new URL(`../src/workloads/${f}`, import.meta.url));

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

export function logOf(tb: TestbedState, node: string, name: string): string {
  try {
    return readFileSync(`${tb.nodes.find((n) => n.name === node)!.stateDir}/endpoints/${name}/log`, 'utf8');
  } catch {
    return '';
  }
}

export async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function migrateOnce(tb: TestbedState, name: string, to: string, mode: string, handover: string, more: { presync?: boolean } = {}): Promise<HandoverReport> {
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: name, to, mode, handover, ...more });
  return reportOf(tb, m.id, m.from);
}

/** The report of migration `id`, driven by node `from`, once it has one. */
export async function reportOf(tb: TestbedState, id: string, from: string): Promise<HandoverReport> {
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  for (;;) {
    const s = await callJson<MigrationStatus>(api, 'GET', `/v1/migrations/${id}?from=${from}`);
    if (s.report) return s.report;
    await sleep(20);
  }
}

/** The last progress line of a stream-check endpoint; throws if its stream broke. */
export function probeState(tb: TestbedState, node: string, name: string): { maxGapMs: number; verified: number } {
  const log = logOf(tb, node, name);
  if (/MISMATCH|DISCONNECTED/.test(log)) throw new Error(`bench: ${name} saw a broken stream`);
  const lines = log.trim().split('\n').filter((l) => l.startsWith('{"sent"'));
  return JSON.parse(lines[lines.length - 1] ?? '{"maxGapMs":0,"verified":0}') as { maxGapMs: number; verified: number };
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
  name: string, o: { volumeMib: number; command: string[] }, work: (b: BenchTestbed, box: EndpointRecordWire) => Promise<T>,
): Promise<T> {
  const rootfs = makeRootfs();
  try {
    const volume = join(rootfs.dir, 'volume');
    mkdirSync(volume);
    for (let i = 0; i < o.volumeMib; i++) writeFileSync(join(volume, `part-${i}`), randomBytes(1048576));
    return await onBenchTestbed(name, async (b) => {
      const box = await callJson<EndpointRecordWire>(b.api, 'POST', '/v1/endpoints', {
        name: 'box', node: 'node1', command: o.command, container: { rootfs: rootfs.rootfs, volumes: [{ source: volume, destination: '/data' }] },
      });
      await until(() => logOf(b.tb, 'node1', 'box').includes('listening 7001'), 10000, 'the container to listen');
      return work(b, box);
    });
  } finally {
    rootfs.remove();
  }
}

/** An echo service on node1 holding `holdMib` of data; resolves once it listens. */
export async function startEchoService(b: BenchTestbed, name: string, holdMib: number, timeoutMs: number): Promise<EndpointRecordWire> {
  const ep = await callJson<EndpointRecordWire>(b.api, 'POST', '/v1/endpoints', { name, node: 'node1', command: [process.execPath, workload('echo-server.js'), '--port', '7001', '--hold-mb', String(holdMib)] });
  await until(() => logOf(b.tb, 'node1', name).includes('listening'), timeoutMs, `${name} to start`);
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
  await until(() => (logOf(b.tb, 'node3', 'probe').match(/"verified"/g) ?? []).length >= 3, 10000, 'the probe to flow');
  const to = from === 'node1' ? 'node2' : 'node1';
  const report = await migrateOnce(b.tb, service.name, to, mode, handover, more);
  if (report.result !== 'success') throw new Error(`bench: ${mode} migration of ${service.name} failed: ${report.reason}`);
  await afterMove?.(to);
  await sleep(1500);
  const probe = probeState(b.tb, 'node3', 'probe');
  await callJson(b.api, 'DELETE', '/v1/endpoints/probe');
  return { report, to, probeGapMs: probe.maxGapMs };
}
