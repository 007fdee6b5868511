/**
 * Migrations that fail before the switch roll back: the service resumes on
 * the source with its connections, and the target keeps nothing. The
 * underlay is rate-limited so that the transfer of a 48 MiB service lasts
 * long enough to break things from outside while it runs.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { callJson } from '../../src/api/http-client.js';
import type { MigrationStatus } from '../../src/migration/report.js';
import { removeNetns } from '../../src/sys/netns/netns.js';
import { isAgentRunning } from '../../src/testbed/agent-process.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { downAndCheck, endpointLog, endpoints, run, streamAdvances, uniqueTestbedName, upTestbed, waitFor, workload, type Report } from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const node = process.execPath;

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3, '100mbit');
  const srv = await run(tb, 'node1', 'big', [node, workload('echo-server.js'), '--port', '7001', '--hold-mb', '48']);
  await waitFor('big to listen', () => endpointLog(tb, 'node1', 'big').includes('listening'), 20000);
  await run(tb, 'node3', 'watch', [node, workload('stream-check.js'), srv.ip, '7001', '--connections', '4', '--rate', '5000']);
  await waitFor('connections', () => endpointLog(tb, 'node3', 'watch').includes('"connected":4'));
});

test.after.always(async () => {
  const left = await downAndCheck(name);
  if (left.length > 0) throw new Error(`testbed ${name} left things behind: ${left.join('; ')}`);
});

/** Starts a migration of `big` to node2 and calls `breakIt` once its transfer is under way. */
async function migrateAndBreak(breakIt: () => void | Promise<void>): Promise<Report> {
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node2' });
  const status = () => callJson<MigrationStatus>(api, 'GET', `/v1/migrations/${m.id}?from=${m.from}`);
  await waitFor('the transfer phase', async () => (await status()).phase === 'transfer', 20000);
  await breakIt();
  let final: MigrationStatus | undefined;
  await waitFor('the migration to end', async () => {
    final = await status();
    return final.state !== 'running';
  }, 60000);
  return final!.report as Report;
}

function nothingOf(t: import('ava').ExecutionContext, nodeName: string, ep: string): void {
  const n = tb.nodes.find((x) => x.name === nodeName)!;
  t.false(existsSync(`${n.stateDir}/netns/${ep}`), `${nodeName}: no namespace of ${ep}`);
  t.false(existsSync(`${n.stateDir}/endpoints/${ep}`), `${nodeName}: no state of ${ep}`);
  t.deepEqual(existsSync(`${n.stateDir}/migrations`) ? readdirSync(`${n.stateDir}/migrations`) : [], [], `${nodeName}: no images`);
  t.false(execFileSync('ip', ['-n', `roam-${name}-${nodeName}`, '-o', 'link'], { encoding: 'utf8' }).includes(`roam:${ep}`), `${nodeName}: no port of ${ep}`);
}

test.serial('a restore that fails on the target (its prepared namespace removed mid-way) resumes the service on the source, connections intact', async (t) => {
  const before = (await endpoints(tb)).find((e) => e.name === 'big')!;
  const report = await migrateAndBreak(() => removeNetns(`${tb.nodes[1]!.stateDir}/netns/big`));
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^restore: .*ENOENT.*restored on node1 with its connections/);
  // What the clients sent while it was frozen was kept here and delivered when it came back here.
  t.true((report.handover?.packets_held ?? 0) > 0, 'packets kept at the source');
  t.like(report.handover, { mechanism: 'full', packets_refused: 0, connections_kicked: 4, connections_fallback: 0 });
  t.is(report.handover?.packets_replayed, report.handover?.packets_held);
  const after = (await endpoints(tb)).find((e) => e.name === 'big')!;
  t.like(after, { node: 'node1', ip: before.ip, state: 'running' });
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  nothingOf(t, 'node2', 'big');
});

test.serial('the target agent killed during the transfer: the service resumes on the source; the restarted target keeps nothing', async (t) => {
  const target = tb.nodes[1]!;
  const report = await migrateAndBreak(() => {
    process.kill(target.agentPid, 'SIGKILL');
  });
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^(transfer|restore): /);
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  while (isAgentRunning(target.agentPid)) await new Promise((r) => setTimeout(r, 20));
  tb = await upTestbed(name, 3);
  nothingOf(t, 'node2', 'big');
  t.is((await endpoints(tb)).find((e) => e.name === 'big')?.node, 'node1');
  await streamAdvances(tb, 'node3', 'watch', 20000, 20000);
});
