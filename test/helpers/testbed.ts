/**
 * A testbed per test file, with a unique name, torn down even on failure,
 * and a check that nothing of it is left: namespaces, state, processes.
 */
import { randomBytes } from 'node:crypto';
import type { HandoverReport } from '../../src/migration/report.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { callJson } from '../../src/api/http-client.js';
import type { EndpointRecordWire } from '../../src/api/schemas.js';
import { runCli } from '../../src/cli/roam.js';
import { mountsBelow, testbedDown } from '../../src/testbed/down.js';
import { NETNS_DIR, TESTBED_ROOT } from '../../src/testbed/layout.js';
import { testbedUp } from '../../src/testbed/up.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { waitFor } from './wait.js';

export { waitFor };

export const workload = (file: string): string => fileURLToPath(new URL(`../../src/workloads/${file}`, import.meta.url));

export function uniqueTestbedName(): string {
  return `t${randomBytes(3).toString('hex')}`;
}

export async function upTestbed(name: string, nodes = 3, underlayRate?: string): Promise<TestbedState> {
  return testbedUp({ name, nodes, underlayRate, syncIntervalMs: 500, say: () => undefined });
}

/** Tears down and returns what is left of it (empty when clean). */
export async function downAndCheck(name: string): Promise<string[]> {
  await testbedDown(name, () => undefined);
  const left: string[] = [];
  if (existsSync(NETNS_DIR)) left.push(...readdirSync(NETNS_DIR).filter((f) => f.startsWith(`roam-${name}-`)).map((f) => `netns ${f}`));
  if (existsSync(`${TESTBED_ROOT}/${name}`)) left.push(`state dir ${TESTBED_ROOT}/${name}`);
  left.push(...mountsBelow(`${TESTBED_ROOT}/${name}`).map((m) => `mount ${m}`));
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(`${TESTBED_ROOT}/${name}/`)) left.push(`process ${pid}: ${cmd.slice(0, 120)}`);
    } catch {
      // gone meanwhile
    }
  }
  return left;
}

/** Takes the testbed down and fails if anything of it is left (namespaces, state, processes). */
export async function downClean(name: string): Promise<void> {
  const left = await downAndCheck(name);
  if (left.length > 0) throw new Error(`testbed ${name} left things behind: ${left.join('; ')}`);
}

export async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, (l) => out.push(l), (l) => err.push(l));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

export async function run(tb: TestbedState, node: string, name: string, command: string[], ip?: string): Promise<EndpointRecordWire> {
  return callJson<EndpointRecordWire>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/endpoints', { name, node, command, ...(ip ? { ip } : {}) });
}

export async function endpoints(tb: TestbedState, node = 0): Promise<EndpointRecordWire[]> {
  return callJson<EndpointRecordWire[]>({ socketPath: tb.nodes[node]!.apiSocket }, 'GET', '/v1/endpoints');
}

/** The endpoint's log straight from the node's state dir (works while its agent is down). */
export function endpointLog(tb: TestbedState, node: string, name: string): string {
  const n = tb.nodes.find((x) => x.name === node)!;
  try {
    return readFileSync(`${n.stateDir}/endpoints/${name}/log`, 'utf8');
  } catch {
    return '';
  }
}

export interface StreamProgress {
  sent: number;
  verified: number;
  maxGapMs: number;
  open?: number;
}

/** The last progress line of a stream-check endpoint, and whether it ever failed. */
export function streamProgress(log: string): { last: StreamProgress | undefined; failed: string | undefined } {
  const lines = log.trim().split('\n');
  const failed = lines.find((l) => l.startsWith('MISMATCH') || l.startsWith('DISCONNECTED'));
  const progress = lines.filter((l) => l.startsWith('{"sent"'));
  const last = progress.length ? (JSON.parse(progress[progress.length - 1]!) as StreamProgress) : undefined;
  return { last, failed };
}

/** What `roam migrate --json` prints. */
export type Report = HandoverReport;

export async function migrate(tbName: string, name: string, to: string, extra: string[] = []): Promise<Report> {
  const r = await cli(['migrate', '--testbed', tbName, name, '--to', to, '--json', ...extra]);
  if (!r.out) throw new Error(`roam migrate printed nothing: ${r.err}`);
  return JSON.parse(r.out) as Report;
}

/** Waits until a stream-check endpoint has verified `beyond` more bytes than now, failing on any error line. */
export async function streamAdvances(tb: TestbedState, node: string, name: string, beyond: number, timeoutMs = 10000): Promise<StreamProgress> {
  const start = streamProgress(endpointLog(tb, node, name)).last?.verified ?? 0;
  let last: StreamProgress | undefined;
  await waitFor(`${name} to verify ${beyond} more bytes`, () => {
    const p = streamProgress(endpointLog(tb, node, name));
    if (p.failed) throw new Error(`${name}: ${p.failed}`);
    last = p.last;
    return (p.last?.verified ?? 0) > start + beyond;
  }, timeoutMs);
  return last!;
}
