/**
 * Migrations that fail before the switch roll back: the service resumes on
 * the source with its connections, and the target keeps nothing. The
 * underlay is rate-limited so that the transfer of a 48 MiB service lasts
 * long enough to break things from outside while it runs.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callJson } from '../../src/api/http-client.js';
import type { MigrationStatus } from '../../src/migration/report.js';
import { removeNetns } from '../../src/sys/netns/netns.js';
import { isAgentRunning } from '../../src/testbed/agent-process.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, endpointLog, endpoints, run, streamAdvances, uniqueTestbedName, upTestbed, waitFor, workload, type Report } from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
let sumAtStart = '';
const node = process.execPath;
const outsideUnixClient = fileURLToPath(new URL('../../../test/fixtures/outside_unix_client.py', import.meta.url));

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3, '100mbit');
  const srv = await run(tb, 'node1', 'big', [node, workload('echo-server.js'), '--port', '7001', '--hold-mb', '48']);
  await waitFor('big to listen', () => endpointLog(tb, 'node1', 'big').includes('listening'), 20000);
  // The table it holds never changes: every move must carry this checksum.
  sumAtStart = /sha256 ([0-9a-f]+)/.exec(endpointLog(tb, 'node1', 'big'))![1]!;
  await run(tb, 'node3', 'watch', [node, workload('stream-check.js'), srv.ip, '7001', '--connections', '4', '--rate', '5000']);
  await waitFor('connections', () => endpointLog(tb, 'node3', 'watch').includes('"connected":4'));
});

test.after.always(() => downClean(name));

/** A migration's status, through node1's agent (whichever runs now). */
function statusOf(m: { id: string; from: string }): Promise<MigrationStatus> {
  return callJson<MigrationStatus>({ socketPath: tb.nodes[0]!.apiSocket }, 'GET', `/v1/migrations/${m.id}?from=${m.from}`);
}

/** Polls a migration's status until it has ended; returns its last status. */
async function ended(what: string, status: () => Promise<MigrationStatus>, timeoutMs: number): Promise<MigrationStatus> {
  let last: MigrationStatus | undefined;
  await waitFor(what, async () => {
    last = await status();
    return last.state !== 'running';
  }, timeoutMs);
  return last!;
}

/** Starts a stop-copy migration of `big` from node1 to node2 and calls `breakIt` once its transfer is under way. */
async function migrateAndBreak(breakIt: () => void | Promise<void>): Promise<Report> {
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node2', mode: 'stop-copy' });
  const status = () => statusOf(m);
  await waitFor('the transfer phase', async () => (await status()).phase === 'transfer', 20000);
  await breakIt();
  const final = await ended('the migration to end', () => status(), 60000);
  return final.report as Report;
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

test.serial('the target agent killed during the restore: the service resumes on the source, connections intact; the restarted target ends its half-restored copy and keeps nothing', async (t) => {
  const target = tb.nodes[1]!;
  const m = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node2', mode: 'stop-copy' });
  const restoreLog = `${target.stateDir}/migrations/${m.id}/images/restore.log`;
  const deadline = Date.now() + 60000;
  // Tight on purpose: CRIU's restore log appears when the restore starts, and the restore lasts only tens of milliseconds.
  while (!existsSync(restoreLog)) {
    if (Date.now() > deadline) throw new Error('the restore never started');
  }
  process.kill(target.agentPid, 'SIGKILL');
  const final = await ended('the migration to end', () => statusOf(m), 60000);
  const report = final.report!;
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^restore: /);
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  while (isAgentRunning(target.agentPid)) await new Promise((r) => setTimeout(r, 20));
  tb = await upTestbed(name, 3);
  await waitFor('the restarted target to end its half-restored copy', () => !existsSync(`${target.stateDir}/netns/big`), 20000);
  nothingOf(t, 'node2', 'big');
  t.like((await endpoints(tb)).find((e) => e.name === 'big'), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', 'watch', 20000, 20000);
});

test.serial("the target's underlay link cut during the transfer: the migration rolls back on the source, connections intact; once the link is back the target keeps nothing", async (t) => {
  const cut = (how: 'down' | 'up') => execFileSync('ip', ['-n', `roam-${name}-node2`, 'link', 'set', 'ul0', how]);
  t.teardown(() => cut('up'));
  const report = await migrateAndBreak(() => {
    cut('down');
  });
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^transfer: .*(timed out|ETIMEDOUT|ECONNRESET|not reachable)/);
  t.like((await endpoints(tb)).find((e) => e.name === 'big'), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  cut('up');
  // The source keeps asking the target to drop its half; with the link back, it does.
  const migrations = `${tb.nodes[1]!.stateDir}/migrations`;
  await waitFor('node2 to drop the arrival', () => !existsSync(`${tb.nodes[1]!.stateDir}/netns/big`) && (!existsSync(migrations) || readdirSync(migrations).length === 0), 30000);
  nothingOf(t, 'node2', 'big');
});

test.serial('a workload CRIU refuses (a unix socket to outside its tree): the report names what CRIU refused, the service runs on untouched, the target keeps nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'roam-ext-'));
  const path = join(dir, 'outside.sock');
  const outside = createServer((c) => c.on('error', () => undefined)).listen(path);
  t.teardown(() => {
    outside.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await run(tb, 'node1', 'ext', ['/usr/bin/python3', outsideUnixClient, path]);
  await waitFor('ext to connect', () => endpointLog(tb, 'node1', 'ext').includes('beat 2'));
  const m = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'ext', to: 'node2', mode: 'stop-copy' });
  const final = await ended('the migration to end', () => statusOf(m), 60000);
  const report = final.report!;
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^dump: criu dump failed: .*unix: External socket is used/, report.reason);
  t.notRegex(report.reason ?? '', /RLIMIT_NOFILE/, 'what CRIU carries on from is not blamed');
  const beats = endpointLog(tb, 'node1', 'ext').length;
  await waitFor('ext to beat on', () => endpointLog(tb, 'node1', 'ext').length > beats + 20, 5000);
  t.like((await endpoints(tb)).find((e) => e.name === 'ext'), { node: 'node1', state: 'running' });
  nothingOf(t, 'node2', 'ext');
  await callJson({ socketPath: tb.nodes[0]!.apiSocket }, 'DELETE', '/v1/endpoints/ext');
});

test.serial("the target's state directory full: the upload fails there naming the errno and file, the service is restored on the source with its connections, and the target keeps nothing", async (t) => {
  const migrations = `${tb.nodes[1]!.stateDir}/migrations`;
  mkdirSync(migrations, { recursive: true });
  // 8 MiB for a 48 MiB service: the upload runs out of space part-way.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'roam-full', migrations]);
  t.teardown(() => execFileSync('umount', [migrations]));
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node2', mode: 'stop-copy' });
  const final = await ended('the migration to end', () => statusOf(m), 60000);
  const report = final.report!;
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^transfer: images\.write \S+\.img: ENOSPC; the service was restored on node1 with its connections/);
  t.like((await endpoints(tb)).find((e) => e.name === 'big'), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  nothingOf(t, 'node2', 'big');
});

test.serial('both ends asked to move the same endpoint at once: exactly one migration runs, the other is refused with 409; the service ends on one node', async (t) => {
  const ask = (via: number, to: string) => callJson<{ id: string; from: string }>({ socketPath: tb.nodes[via]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'big', to, mode: 'stop-copy' });
  const answers = await Promise.allSettled([ask(0, 'node2'), ask(1, 'node3')]);
  const accepted = answers.filter((a): a is PromiseFulfilledResult<{ id: string; from: string }> => a.status === 'fulfilled');
  const refused = answers.filter((a): a is PromiseRejectedResult => a.status === 'rejected');
  t.is(accepted.length, 1, 'one accepted');
  t.is(refused.length, 1, 'one refused');
  t.like(refused[0]!.reason, { code: 'CONFLICT' });
  t.regex(String(refused[0]!.reason.message), /endpoint big is already moving \(migration m-/);
  const m = accepted[0]!.value;
  const final = await ended('the migration to end', () => statusOf(m), 60000);
  t.is(final.report!.result, 'success', final.report!.reason);
  const where = final.report!.running_on;
  const seen = await Promise.all(tb.nodes.map(async (_, i) => (await endpoints(tb, i)).filter((e) => e.name === 'big' && e.node === where).length));
  t.deepEqual(seen, [1, 1, 1], 'every node sees it in one place');
  for (const n of tb.nodes.filter((x) => x.name !== where)) nothingOf(t, n.name, 'big');
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  // Back to node1 for what follows.
  if (where !== 'node1') {
    const back = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node1', mode: 'stop-copy' });
    await waitFor('the move back', async () => (await statusOf(back)).state === 'success', 60000);
  }
});

/** Starts a stop-copy migration of `big` from node1 to node2; returns how to follow it on node1. */
async function stopCopyStarted() {
  const m = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node2', mode: 'stop-copy' });
  // Through the testbed's current agents: after a restart, the new one answers for the recovered migration.
  const status = () => statusOf(m);
  return { id: m.id, status };
}

/** SIGKILLs node1's agent, waits until it is gone, starts it again; returns the report of the migration it recovered. */
async function restartSourceAndRecover(m: Awaited<ReturnType<typeof stopCopyStarted>>): Promise<Report> {
  const source = tb.nodes[0]!;
  process.kill(source.agentPid, 'SIGKILL');
  while (isAgentRunning(source.agentPid)) await new Promise((r) => setTimeout(r, 20));
  return recoverAfterRestart(m);
}

async function recoverAfterRestart(m: Awaited<ReturnType<typeof stopCopyStarted>>): Promise<Report> {
  tb = await upTestbed(name, 3);
  const final = await ended('the restarted source to recover the migration', () => m.status(), 60000);
  return final.report as Report;
}

/** After a rollback by a restarted source: running on node1 with its connections; nothing of it on node2, no journal left. */
async function backOnNode1Alone(t: import('ava').ExecutionContext): Promise<void> {
  t.like((await endpoints(tb)).find((e) => e.name === 'big'), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  nothingOf(t, 'node2', 'big');
  t.deepEqual(readdirSync(`${tb.nodes[0]!.stateDir}/migrations`), [], 'node1: the journal and images went');
}

test.serial('the source agent killed during the dump: its restart brings the service back on the source, connections intact, and the target keeps nothing', async (t) => {
  const m = await stopCopyStarted();
  await waitFor('the dump phase', async () => (await m.status()).phase === 'dump', 20000);
  const report = await restartSourceAndRecover(m);
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /after node1's agent restarted/);
  await backOnNode1Alone(t);
});

test.serial('the source agent killed during the transfer: its restart restores the service on the source from its images, connections intact; the target keeps nothing', async (t) => {
  const m = await stopCopyStarted();
  await waitFor('the transfer phase', async () => (await m.status()).phase === 'transfer', 20000);
  const report = await restartSourceAndRecover(m);
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /restored on node1 from its images with its connections after node1's agent restarted/);
  await backOnNode1Alone(t);
});

test.serial('the source agent killed right after the switch: the target lifts the lock on its own, the restarted source finishes the migration; the service is on the target only', async (t) => {
  const m = await stopCopyStarted();
  const journal = `${tb.nodes[0]!.stateDir}/migrations/${m.id}/journal.json`;
  const deadline = Date.now() + 60000;
  // Tight on purpose: between the switch and the unlock there are only milliseconds.
  while (!(existsSync(journal) && (JSON.parse(readFileSync(journal, 'utf8') || '{}') as { switched?: boolean }).switched)) {
    if (Date.now() > deadline) throw new Error('the migration never switched');
  }
  const source = tb.nodes[0]!;
  process.kill(source.agentPid, 'SIGKILL');
  while (isAgentRunning(source.agentPid)) await new Promise((r) => setTimeout(r, 20));
  // With the source gone, the target's watchdog brings the service back.
  await streamAdvances(tb, 'node3', 'watch', 50000, 30000);
  const report = await recoverAfterRestart(m);
  t.is(report.result, 'success', report.reason);
  t.is(report.running_on, 'node2');
  t.like((await endpoints(tb)).find((e) => e.name === 'big'), { node: 'node2', state: 'running' });
  nothingOf(t, 'node1', 'big');
  t.deepEqual(readdirSync(`${tb.nodes[1]!.stateDir}/migrations`), [], 'node2: nothing of the arrival left');
  await streamAdvances(tb, 'node3', 'watch', 20000, 20000);
  // And it moves on as any endpoint does: back to node1 for what follows.
  const back = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'big', to: 'node1', mode: 'stop-copy' });
  const final = await ended('the move back', () => statusOf(back), 60000);
  t.is(final.report!.result, 'success', final.report!.reason);
});

/** Starts a post-copy migration of `big` and waits until its memory is being pulled; returns how to follow it. */
async function postCopyUnderWay(from: number, to: string) {
  const api = { socketPath: tb.nodes[from]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'big', to, mode: 'post-copy' });
  const status = () => statusOf(m);
  await waitFor('a pull under way', async () => ((await status()).pull?.pulled_bytes ?? 0) > 1048576, 30000);
  const record = JSON.parse(readFileSync(`${tb.nodes[from]!.stateDir}/migrations/${m.id}/journal.json`, 'utf8')) as { root: { pid: number }; criu: { pid: number } };
  return { id: m.id, status, record };
}

/** Alive and not a zombie. */
function isProcessAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function criuLeft(): string {
  return spawnSync('pgrep', ['-ax', 'criu'], { encoding: 'utf8' }).stdout.trim();
}

test.serial('post-copy with the source agent killed mid-pull: the pull completes without it, the service runs on the target with every page; the restarted source ends its stopped tree and keeps nothing', async (t) => {
  const sumBefore = sumAtStart;
  const source = tb.nodes[0]!;
  const pull = await postCopyUnderWay(0, 'node2');
  process.kill(source.agentPid, 'SIGKILL');
  // The source's CRIU serves on without the agent; the target's daemon pulls everything.
  await waitFor('the pull to end', () => criuLeft() === '', 60000);
  t.true(isProcessAlive(pull.record.root.pid), 'the source tree is kept (stopped) until an agent knows the pull ended');
  const moved = (await endpoints(tb, 1)).find((e) => e.name === 'big')!;
  const agentSaid = () => readFileSync(tb.nodes[1]!.logPath, 'utf8').split('\n').filter((l) => l.includes('pull')).join('\n');
  t.like(moved, { node: 'node2', state: 'running' }, agentSaid());
  const from = endpointLog(tb, 'node2', 'big').length;
  process.kill(moved.pid!, 'SIGUSR2');
  await waitFor('checksum line', () => endpointLog(tb, 'node2', 'big').slice(from).includes('memory sha256'));
  t.regex(endpointLog(tb, 'node2', 'big').slice(from), new RegExp(`memory sha256 ${sumBefore}, 4 connections`), 'every page arrived, and the connections with them');
  await streamAdvances(tb, 'node3', 'watch', 50000, 20000);
  while (isAgentRunning(source.agentPid)) await new Promise((r) => setTimeout(r, 20));
  tb = await upTestbed(name, 3);
  // It ends the tree, releases what is left of the endpoint here, then removes the migration's folder.
  await waitFor('the restarted source to end its stopped tree and finish', () => !isProcessAlive(pull.record.root.pid) && readdirSync(`${tb.nodes[0]!.stateDir}/migrations`).length === 0, 20000);
  nothingOf(t, 'node1', 'big');
  t.deepEqual(readdirSync(`${tb.nodes[1]!.stateDir}/migrations`), [], 'node2: the images went when the pull ended');
  await streamAdvances(tb, 'node3', 'watch', 20000, 20000);
});

test.serial("post-copy with the source's page server killed mid-pull: the target ends its copy rather than run on missing memory, and the report says so", async (t) => {
  const pull = await postCopyUnderWay(1, 'node3');
  process.kill(pull.record.criu.pid, 'SIGKILL');
  const final = await ended('the migration to end', () => pull.status(), 60000);
  const report = final.report as Report;
  t.is(report.result, 'failed');
  t.is(report.pull?.result, 'incomplete');
  t.log(JSON.stringify(report.pull), report.reason);
  t.true(report.pull!.pulled_bytes < report.pull!.lazy_bytes, `${report.pull!.pulled_bytes} of ${report.pull!.lazy_bytes} bytes`);
  t.regex(report.pull?.reason ?? '', /lazy-pages (exited with [1-9]|was killed by SIG)/, 'the pull says why, in CRIU\'s words');
  t.regex(report.reason ?? '', /pull/);
  const there = async () => (await endpoints(tb, 2)).find((e) => e.name === 'big')!;
  t.like(await there(), { node: 'node3' });
  await waitFor('the copy with missing pages to be ended', async () => (await there()).state === 'exited', 5000);
  t.false(isProcessAlive(pull.record.root.pid), 'the source tree is gone too: the target ran on from the switch');
  t.is(criuLeft(), '', 'no CRIU process left');
  nothingOf(t, 'node2', 'big');
  t.deepEqual(readdirSync(`${tb.nodes[2]!.stateDir}/migrations`), [], 'node3: no images left');
});
