/**
 * A testbed per test file, with a unique name, torn down even on failure,
 * and a check that nothing of it is left: namespaces, state, processes.
 */
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import type { HandoverReport } from '../../src/records/migration-report.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { callJson } from '../../src/http/client.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { runCli } from '../../src/cli/roam.js';
import { mountsBelow, testbedDown } from '../../src/testbed/down.js';
import { NETNS_DIR, TESTBED_ROOT } from '../../src/testbed/layout.js';
import { testbedUp, type UpOptions } from '../../src/testbed/up.js';
import { isAgentRunning } from '../../src/testbed/agent-process.js';
import { readTestbedState, type TestbedNodeState, type TestbedState } from '../../src/testbed/state.js';
import { netnsInode, processesInNetns } from '../../src/sys/proc.js';
import { waitFor } from './wait.js';
import { echoMemory, streamVerifies, workload, type StreamProgress } from './workloads.js';

export { waitFor, workload };
export { fixture, streamProgress, type StreamProgress } from './workloads.js';

export function uniqueTestbedName(): string {
  return `t${randomBytes(3).toString('hex')}`;
}

export async function upTestbed(name: string, nodes = 3, underlayRate?: string, limits?: UpOptions['limits']): Promise<TestbedState> {
  return testbedUp({ name, nodes, underlayRate, syncIntervalMs: 500, say: () => undefined, ...(limits ? { limits } : {}) });
}

/** Tears down and returns what is left of it (empty when clean). */
export async function downAndCheck(name: string): Promise<string[]> {
  // The namespaces' identities before down removes their files: a process still in one afterwards is a leak.
  const namespaces = new Set([
    ...(existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR).filter((f) => f.startsWith(`roam-${name}-`)).map((f) => `${NETNS_DIR}/${f}`) : []),
    ...readTestbedStateOf(name).flatMap((stateDir) => (existsSync(`${stateDir}/netns`) ? readdirSync(`${stateDir}/netns`).map((f) => `${stateDir}/netns/${f}`) : [])),
  ].map(netnsInode).filter((i): i is number => i !== undefined));
  await testbedDown(name, () => undefined);
  const left: string[] = [];
  for (const pid of processesInNetns(namespaces)) {
    try {
      left.push(`process ${pid} in a testbed namespace: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 120)}`);
    } catch {
      // it ended meanwhile
    }
  }
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

export async function run(tb: TestbedState, node: string, name: string, command: string[], ip?: string): Promise<EndpointRecord> {
  return callJson<EndpointRecord>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/endpoints', { name, node, command, ...(ip ? { ip } : {}) });
}

export async function endpoints(tb: TestbedState, node = 0): Promise<EndpointRecord[]> {
  return callJson<EndpointRecord[]>({ socketPath: tb.nodes[node]!.apiSocket }, 'GET', '/v1/endpoints');
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

/** What `roam migrate --json` prints. */
export type Report = HandoverReport;

export async function migrate(tbName: string, name: string, to: string, extra: string[] = []): Promise<Report> {
  const r = await cli(['migrate', '--testbed', tbName, name, '--to', to, '--json', ...extra]);
  if (!r.out) throw new Error(`roam migrate printed nothing: ${r.err}`);
  return JSON.parse(r.out) as Report;
}

/** Waits until a stream-check endpoint has verified `beyond` more bytes than now, failing on any error line. */
export function streamAdvances(tb: TestbedState, node: string, name: string, beyond: number, timeoutMs = 10000): Promise<StreamProgress> {
  return streamVerifies(name, () => endpointLog(tb, node, name), beyond, timeoutMs);
}

/** An echo server (src/workloads/echo-server) as endpoint `name` on `node`, listening when this returns. */
export async function serveEcho(tb: TestbedState, node: string, name: string, o: { port?: number; holdMb?: number } = {}): Promise<EndpointRecord> {
  const ep = await run(tb, node, name, [process.execPath, workload('echo-server.js'), '--port', String(o.port ?? 7001), ...(o.holdMb ? ['--hold-mb', String(o.holdMb)] : [])]);
  await waitFor(`${name} to listen`, () => endpointLog(tb, node, name).includes('listening'), 20000);
  return ep;
}

/**
 * A stream-check client of `ip` as endpoint `name` on `node`, checking every byte it gets back; when this
 * returns, all its connections are open and it has verified `verified` bytes (by default: any).
 */
export async function streamClient(
  tb: TestbedState, node: string, name: string, ip: string, o: { port?: number; connections?: number; rate: number; verified?: number },
): Promise<EndpointRecord> {
  const connections = o.connections ?? 1;
  const ep = await run(tb, node, name, [process.execPath, workload('stream-check.js'), ip, String(o.port ?? 7001), '--connections', String(connections), '--rate', String(o.rate)]);
  await waitFor(`${name}'s ${connections} connections`, () => endpointLog(tb, node, name).includes(`"connected":${connections}`), 20000);
  await streamAdvances(tb, node, name, o.verified ?? 0, 20000);
  return ep;
}

/**
 * An echo server `service` on `on` (holding `holdMb` MiB) and a stream-check client of it, `service`-cli, on
 * `clientsOn`; both stopped when the test ends. Returns once the client streams (see streamClient), with the
 * checksum of the server's memory.
 */
export async function echoWithClients(
  t: ExecutionContext, tb: TestbedState, service: string,
  o: { on: string; holdMb?: number; clientsOn: string; connections: number; rate: number; verified?: number },
): Promise<{ srv: EndpointRecord; sum: string; clients: string }> {
  const clients = `${service}-cli`;
  stopAfter(t, tb.name, service, clients);
  const srv = await serveEcho(tb, o.on, service, { holdMb: o.holdMb });
  // 'none' when it holds no memory.
  const sum = /sha256 ([0-9a-f]+|none)\)/.exec(endpointLog(tb, o.on, service))![1]!;
  await streamClient(tb, o.clientsOn, clients, srv.ip, o);
  return { srv, sum, clients };
}

/** Asks an echo server endpoint for the checksum of its memory: see echoMemory. */
export function echoMemoryOf(tb: TestbedState, node: string, name: string, pid: number): Promise<{ sum: string; connections: number }> {
  return echoMemory(pid, () => endpointLog(tb, node, name));
}

/** Waits until a testbed node's agent, killed, is gone. */
export function agentGone(n: TestbedNodeState, timeoutMs = 20000): Promise<void> {
  return waitFor(`${n.name}'s agent (pid ${n.agentPid}) to be gone`, () => !isAgentRunning(n.agentPid), timeoutMs);
}

/**
 * Stops endpoints of testbed `tbName` when the test ends, passed or failed, one after the other in the order
 * given, so that the next test starts clean; one that is moving is stopped once its move is over.
 */
export function stopAfter(t: ExecutionContext, tbName: string, ...names: string[]): void {
  t.teardown(async () => {
    for (const e of names) await stopEndpoint(tbName, e);
  });
}

/** Stops an endpoint wherever it runs (none of that name: nothing to do), waiting out a move it is in. */
export async function stopEndpoint(tbName: string, name: string, timeoutMs = 120000): Promise<void> {
  let refused = '';
  await waitFor(`${name} to stop`, async () => {
    const r = await cli(['stop', '--testbed', tbName, name]);
    if (r.code === 0 || /does not exist/.test(r.err)) return true;
    refused = r.err;
    // Moving, or just moved and the cluster's view not there yet: again in a moment.
    if (/is moving|owner is unknown|is not on node/.test(r.err)) return false;
    throw new Error(`stopping ${name}: ${r.err}`);
  }, timeoutMs).catch((err: unknown) => {
    throw refused ? new Error(`stopping ${name}: ${refused}`) : err;
  });
}

/** The state folders of testbed `name`'s nodes, as its state file names them. */
function readTestbedStateOf(name: string): string[] {
  return (readTestbedState(name)?.nodes ?? []).map((n) => n.stateDir);
}
