/**
 * Migrations that fail before the switch roll back: the service resumes on
 * the source with its connections, and the target keeps nothing. The
 * underlay is rate-limited so that the transfer of a 48 MiB service lasts
 * long enough to break things from outside while it runs.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeNetns } from '../../src/sys/netns/netns.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { migrationEnded, migrationInPhase, migrationReaches, startMigration, type MigrationRef } from '../helpers/migrations.js';
import { requireRoot } from '../helpers/root.js';
import {
  agentGone, downClean, echoMemoryOf, echoWithClients, endpointLog, endpoints, fixture, run, stopAfter, streamAdvances, uniqueTestbedName, upTestbed, waitFor,
  type Report,
} from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const outsideUnixClient = fixture('outside_unix_client.py');

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3, '100mbit');
});

test.after.always(() => downClean(name));

/**
 * A 48 MiB echo service `service` on `on` and 4 client connections to it from node3 (`service`-cli), both
 * stopped when the test ends; returns once they stream, with the checksum of the table the service holds
 * (it never changes: every move must carry it).
 */
async function bigService(t: ExecutionContext, service: string, on = 'node1'): Promise<{ service: string; watch: string; sum: string }> {
  const { sum, clients } = await echoWithClients(t, tb, service, { on, holdMb: 48, clientsOn: 'node3', connections: 4, rate: 5000 });
  return { service, watch: clients, sum };
}

/** Whatever agent the test kills runs again when it ends, passed or failed (testbed up starts only those that are not running). */
function agentsBackAfter(t: ExecutionContext): void {
  t.teardown(async () => {
    tb = await upTestbed(name, 3);
  });
}

/** Starts a stop-copy migration of `service` from node1 to node2 and calls `breakIt` once its transfer is under way. */
async function migrateAndBreak(service: string, breakIt: () => void | Promise<void>): Promise<Report> {
  const m = await startMigration(tb, { endpoint: service, to: 'node2', mode: 'stop-copy' });
  await migrationInPhase(tb, m, 'transfer');
  await breakIt();
  return (await migrationEnded(tb, m)).report;
}

function nothingOf(t: ExecutionContext, nodeName: string, ep: string): void {
  const n = tb.nodes.find((x) => x.name === nodeName)!;
  t.false(existsSync(`${n.stateDir}/netns/${ep}`), `${nodeName}: no namespace of ${ep}`);
  t.false(existsSync(`${n.stateDir}/endpoints/${ep}`), `${nodeName}: no state of ${ep}`);
  t.deepEqual(existsSync(`${n.stateDir}/migrations`) ? readdirSync(`${n.stateDir}/migrations`) : [], [], `${nodeName}: no images`);
  // The alias ends its line: `roam:svc` must not match the port of `roam:svc-watch`.
  t.notRegex(execFileSync('ip', ['-n', `roam-${name}-${nodeName}`, '-o', 'link'], { encoding: 'utf8' }), new RegExp(`alias roam:${ep}(\\s|$)`, 'm'), `${nodeName}: no port of ${ep}`);
}

test.serial('a restore that fails on the target (its prepared namespace removed mid-way) resumes the service on the source, connections intact', async (t) => {
  const big = await bigService(t, 'restore-fails');
  const before = (await endpoints(tb)).find((e) => e.name === big.service)!;
  const report = await migrateAndBreak(big.service, () => removeNetns(`${tb.nodes[1]!.stateDir}/netns/${big.service}`));
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^restore: .*ENOENT.*restored on node1 with its connections/);
  // What the clients sent while it was frozen was kept here and delivered when it came back here.
  t.true((report.handover?.packets_held ?? 0) > 0, 'packets kept at the source');
  t.like(report.handover, { mechanism: 'full', packets_refused: 0, connections_kicked: 4, connections_fallback: 0 });
  t.is(report.handover?.packets_replayed, report.handover?.packets_held);
  const after = (await endpoints(tb)).find((e) => e.name === big.service)!;
  t.like(after, { node: 'node1', ip: before.ip, state: 'running' });
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  nothingOf(t, 'node2', big.service);
});

test.serial('the target agent killed during the transfer: the service resumes on the source; the restarted target keeps nothing', async (t) => {
  const big = await bigService(t, 'target-killed');
  agentsBackAfter(t);
  const target = tb.nodes[1]!;
  const report = await migrateAndBreak(big.service, () => {
    process.kill(target.agentPid, 'SIGKILL');
  });
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^(transfer|restore): /);
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  await agentGone(target);
  tb = await upTestbed(name, 3);
  nothingOf(t, 'node2', big.service);
  t.is((await endpoints(tb)).find((e) => e.name === big.service)?.node, 'node1');
  await streamAdvances(tb, 'node3', big.watch, 20000, 20000);
});

test.serial('the target agent killed during the restore: the service resumes on the source, connections intact; the restarted target ends its half-restored copy and keeps nothing', async (t) => {
  const big = await bigService(t, 'restore-killed');
  agentsBackAfter(t);
  const target = tb.nodes[1]!;
  const m = await startMigration(tb, { endpoint: big.service, to: 'node2', mode: 'stop-copy' });
  const restoreLog = `${target.stateDir}/migrations/${m.id}/images/restore.log`;
  const deadline = Date.now() + 60000;
  // Tight on purpose: CRIU's restore log appears when the restore starts, and the restore lasts only tens of milliseconds.
  while (!existsSync(restoreLog)) {
    if (Date.now() > deadline) throw new Error('the restore never started');
  }
  process.kill(target.agentPid, 'SIGKILL');
  const { report } = await migrationEnded(tb, m);
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^restore: /);
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  await agentGone(target);
  tb = await upTestbed(name, 3);
  await waitFor('the restarted target to end its half-restored copy', () => !existsSync(`${target.stateDir}/netns/${big.service}`), 20000);
  nothingOf(t, 'node2', big.service);
  t.like((await endpoints(tb)).find((e) => e.name === big.service), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', big.watch, 20000, 20000);
});

test.serial("the target's underlay link cut during the transfer: the migration rolls back on the source, connections intact; once the link is back the target keeps nothing", async (t) => {
  const big = await bigService(t, 'link-cut');
  const cut = (how: 'down' | 'up') => execFileSync('ip', ['-n', `roam-${name}-node2`, 'link', 'set', 'ul0', how]);
  t.teardown(() => cut('up'));
  const report = await migrateAndBreak(big.service, () => {
    cut('down');
  });
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^transfer: .*(timed out|ETIMEDOUT|ECONNRESET|not reachable)/);
  t.like((await endpoints(tb)).find((e) => e.name === big.service), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  cut('up');
  // The source keeps asking the target to drop its half; with the link back, it does.
  const migrations = `${tb.nodes[1]!.stateDir}/migrations`;
  await waitFor('node2 to drop the arrival', () => !existsSync(`${tb.nodes[1]!.stateDir}/netns/${big.service}`) && (!existsSync(migrations) || readdirSync(migrations).length === 0), 30000);
  nothingOf(t, 'node2', big.service);
});

test.serial('a workload CRIU refuses (a unix socket to outside its tree): the report names what CRIU refused, the service runs on untouched, the target keeps nothing', async (t) => {
  stopAfter(t, name, 'ext');
  const dir = mkdtempSync(join(tmpdir(), 'roam-ext-'));
  const path = join(dir, 'outside.sock');
  const outside = createServer((c) => c.on('error', () => undefined)).listen(path);
  t.teardown(() => {
    outside.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await run(tb, 'node1', 'ext', ['/usr/bin/python3', outsideUnixClient, path]);
  await waitFor('ext to connect', () => endpointLog(tb, 'node1', 'ext').includes('beat 2'));
  const m = await startMigration(tb, { endpoint: 'ext', to: 'node2', mode: 'stop-copy' });
  const { report } = await migrationEnded(tb, m);
  t.is(report.result, 'rolled_back');
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^dump: criu dump failed: .*unix: External socket is used/, report.reason);
  t.notRegex(report.reason ?? '', /RLIMIT_NOFILE/, 'what CRIU carries on from is not blamed');
  const beats = endpointLog(tb, 'node1', 'ext').length;
  await waitFor('ext to beat on', () => endpointLog(tb, 'node1', 'ext').length > beats + 20, 5000);
  t.like((await endpoints(tb)).find((e) => e.name === 'ext'), { node: 'node1', state: 'running' });
  nothingOf(t, 'node2', 'ext');
});

test.serial("the target's state directory full: the upload fails there naming the errno and file, the service is restored on the source with its connections, and the target keeps nothing", async (t) => {
  const big = await bigService(t, 'disk-full');
  const migrations = `${tb.nodes[1]!.stateDir}/migrations`;
  mkdirSync(migrations, { recursive: true });
  // 8 MiB for a 48 MiB service: the upload runs out of space part-way.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'roam-full', migrations]);
  t.teardown(() => execFileSync('umount', [migrations]));
  const m = await startMigration(tb, { endpoint: big.service, to: 'node2', mode: 'stop-copy' });
  const { report } = await migrationEnded(tb, m);
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  t.regex(report.reason ?? '', /^transfer: images\.write \S+\.img: ENOSPC; the service was restored on node1 with its connections/);
  t.like((await endpoints(tb)).find((e) => e.name === big.service), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  nothingOf(t, 'node2', big.service);
});

test.serial('both ends asked to move the same endpoint at once: exactly one migration runs, the other is refused with 409; the service ends on one node', async (t) => {
  const big = await bigService(t, 'both-ends');
  const ask = (via: number, to: string) => startMigration(tb, { endpoint: big.service, to, mode: 'stop-copy' }, via);
  const answers = await Promise.allSettled([ask(0, 'node2'), ask(1, 'node3')]);
  const accepted = answers.filter((a): a is PromiseFulfilledResult<MigrationRef> => a.status === 'fulfilled');
  const refused = answers.filter((a): a is PromiseRejectedResult => a.status === 'rejected');
  t.is(accepted.length, 1, 'one accepted');
  t.is(refused.length, 1, 'one refused');
  t.like(refused[0]!.reason, { code: 'CONFLICT' });
  t.regex(String(refused[0]!.reason.message), new RegExp(`endpoint ${big.service} is already moving \\(migration m-`));
  const { report } = await migrationEnded(tb, accepted[0]!.value);
  t.is(report.result, 'success', report.reason);
  const where = report.running_on;
  const seen = await Promise.all(tb.nodes.map(async (_, i) => (await endpoints(tb, i)).filter((e) => e.name === big.service && e.node === where).length));
  t.deepEqual(seen, [1, 1, 1], 'every node sees it in one place');
  for (const n of tb.nodes.filter((x) => x.name !== where)) nothingOf(t, n.name, big.service);
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
});

/** Starts a stop-copy migration of `service` from node1 to node2. */
function stopCopyStarted(service: string): Promise<MigrationRef> {
  return startMigration(tb, { endpoint: service, to: 'node2', mode: 'stop-copy' });
}

/** Starts a stop-copy move of `service` from node1 to node2 and SIGKILLs node1's agent the moment its journal says switched. */
async function sourceKilledRightAfterSwitch(service: string): Promise<MigrationRef> {
  const m = await stopCopyStarted(service);
  const journal = `${tb.nodes[0]!.stateDir}/migrations/${m.id}/journal.json`;
  const deadline = Date.now() + 60000;
  // Tight on purpose: between the switch and the unlock there are only milliseconds.
  while (!(existsSync(journal) && (JSON.parse(readFileSync(journal, 'utf8') || '{}') as { switched?: boolean }).switched)) {
    if (Date.now() > deadline) throw new Error('the migration never switched');
  }
  const source = tb.nodes[0]!;
  process.kill(source.agentPid, 'SIGKILL');
  await agentGone(source);
  return m;
}

/** SIGKILLs node1's agent, waits until it is gone, starts it again; returns the report of the migration it recovered. */
async function restartSourceAndRecover(m: MigrationRef): Promise<Report> {
  const source = tb.nodes[0]!;
  process.kill(source.agentPid, 'SIGKILL');
  await agentGone(source);
  return recoverAfterRestart(m);
}

async function recoverAfterRestart(m: MigrationRef): Promise<Report> {
  tb = await upTestbed(name, 3);
  // Through the testbed's new agent on node1: it answers for the migration it recovered.
  return (await migrationEnded(tb, m, 60000, 'the restarted source to recover the migration')).report;
}

/** After a rollback by a restarted source: running on node1 with its connections; nothing of it on node2, no journal left. */
async function backOnNode1Alone(t: ExecutionContext, big: { service: string; watch: string }): Promise<void> {
  t.like((await endpoints(tb)).find((e) => e.name === big.service), { node: 'node1', state: 'running' });
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  nothingOf(t, 'node2', big.service);
  t.deepEqual(readdirSync(`${tb.nodes[0]!.stateDir}/migrations`), [], 'node1: the journal and images went');
}

/**
 * A stop-copy move of a fresh service `service` from node1, its source agent killed in `phase` and restarted:
 * the restart rolls the move back, and the service runs on node1 alone (backOnNode1Alone). Returns the report.
 */
async function sourceKilledIn(t: ExecutionContext, service: string, phase: string): Promise<Report> {
  const big = await bigService(t, service);
  agentsBackAfter(t);
  const m = await stopCopyStarted(big.service);
  await migrationInPhase(tb, m, phase);
  const report = await restartSourceAndRecover(m);
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, 'node1');
  await backOnNode1Alone(t, big);
  return report;
}

test.serial('the source agent killed during the dump: its restart brings the service back on the source, connections intact, and the target keeps nothing', async (t) => {
  const report = await sourceKilledIn(t, 'dump-killed', 'dump');
  t.regex(report.reason ?? '', /after node1's agent restarted/);
});

test.serial('the source agent killed during the transfer: its restart restores the service on the source from its images, connections intact; the target keeps nothing', async (t) => {
  const report = await sourceKilledIn(t, 'transfer-killed', 'transfer');
  t.regex(report.reason ?? '', /restored on node1 from its images with its connections after node1's agent restarted/);
});

test.serial('the source agent killed right after the switch: the target lifts the lock on its own, the restarted source finishes the migration; the service is on the target only', async (t) => {
  const big = await bigService(t, 'switch-killed');
  agentsBackAfter(t);
  const m = await sourceKilledRightAfterSwitch(big.service);
  // With the source gone, the target's watchdog brings the service back.
  await streamAdvances(tb, 'node3', big.watch, 50000, 30000);
  const report = await recoverAfterRestart(m);
  t.is(report.result, 'success', report.reason);
  t.is(report.running_on, 'node2');
  t.like((await endpoints(tb)).find((e) => e.name === big.service), { node: 'node2', state: 'running' });
  nothingOf(t, 'node1', big.service);
  t.deepEqual(readdirSync(`${tb.nodes[1]!.stateDir}/migrations`), [], 'node2: nothing of the arrival left');
  await streamAdvances(tb, 'node3', big.watch, 20000, 20000);
  // And it moves on as any endpoint does.
  const back = await startMigration(tb, { endpoint: big.service, to: 'node1', mode: 'stop-copy' });
  const { report: moved } = await migrationEnded(tb, back, 60000, 'the move back');
  t.is(moved.result, 'success', moved.reason);
});

test.serial('the source agent killed right after the switch, the endpoint moved on to a third node meanwhile: the restarted source does not bring it back; it runs on exactly one node', async (t) => {
  const big = await bigService(t, 'moved-on');
  agentsBackAfter(t);
  const m = await sourceKilledRightAfterSwitch(big.service);
  await streamAdvances(tb, 'node3', big.watch, 50000, 30000);
  // While node1's agent is down, the endpoint moves on from node2 to node3: node2 then has no record of it.
  const onward = await startMigration(tb, { endpoint: big.service, to: 'node3', mode: 'stop-copy' }, 1);
  const { report: movedOn } = await migrationEnded(tb, onward, 60000, 'the move on to node3', 1);
  t.is(movedOn.result, 'success', movedOn.reason);
  const report = await recoverAfterRestart(m);
  t.is(report.result, 'success', report.reason);
  t.is(report.running_on, 'node2', 'the recovered migration ended with node2 taking over');
  const seen = await Promise.all(tb.nodes.map(async (_, i) => (await endpoints(tb, i)).filter((e) => e.name === big.service).map((e) => e.node)));
  t.deepEqual(seen, [['node3'], ['node3'], ['node3']], 'every node sees it on node3 alone');
  nothingOf(t, 'node1', big.service);
  nothingOf(t, 'node2', big.service);
  await streamAdvances(tb, 'node3', big.watch, 20000, 20000);
});

/**
 * Starts a post-copy migration of `service` from node `from` (its index) and waits until its memory is
 * being pulled (the source follows the pull once the service runs on the target); returns how to follow it.
 */
async function postCopyUnderWay(service: string, from: number, to: string) {
  const m = await startMigration(tb, { endpoint: service, to, mode: 'post-copy' }, from);
  await migrationReaches(tb, m, 'a pull under way', (s) => s.pull !== undefined, 30000);
  const record = JSON.parse(readFileSync(`${tb.nodes[from]!.stateDir}/migrations/${m.id}/journal.json`, 'utf8')) as { root: { pid: number }; criu: { pid: number } };
  return { m, record };
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
  const big = await bigService(t, 'pull-killed');
  agentsBackAfter(t);
  const source = tb.nodes[0]!;
  const pull = await postCopyUnderWay(big.service, 0, 'node2');
  process.kill(source.agentPid, 'SIGKILL');
  // The source's CRIU serves on without the agent; the target's daemon pulls everything.
  await waitFor('the pull to end', () => criuLeft() === '', 60000);
  t.true(isProcessAlive(pull.record.root.pid), 'the source tree is kept (stopped) until an agent knows the pull ended');
  const moved = (await endpoints(tb, 1)).find((e) => e.name === big.service)!;
  const agentSaid = () => readFileSync(tb.nodes[1]!.logPath, 'utf8').split('\n').filter((l) => l.includes('pull')).join('\n');
  t.like(moved, { node: 'node2', state: 'running' }, agentSaid());
  t.like(await echoMemoryOf(tb, 'node2', big.service, moved.pid!), { sum: big.sum, connections: 4 }, 'every page arrived, and the connections with them');
  await streamAdvances(tb, 'node3', big.watch, 50000, 20000);
  await agentGone(source);
  tb = await upTestbed(name, 3);
  // It ends the tree, releases what is left of the endpoint here, then removes the migration's folder.
  await waitFor('the restarted source to end its stopped tree and finish', () => !isProcessAlive(pull.record.root.pid) && readdirSync(`${tb.nodes[0]!.stateDir}/migrations`).length === 0, 20000);
  nothingOf(t, 'node1', big.service);
  t.deepEqual(readdirSync(`${tb.nodes[1]!.stateDir}/migrations`), [], 'node2: the images went when the pull ended');
  await streamAdvances(tb, 'node3', big.watch, 20000, 20000);
});

test.serial("post-copy with the source's page server killed mid-pull: the target ends its copy rather than run on missing memory, and the report says so", async (t) => {
  const big = await bigService(t, 'pager-killed', 'node2');
  const pull = await postCopyUnderWay(big.service, 1, 'node3');
  process.kill(pull.record.criu.pid, 'SIGKILL');
  const { report } = await migrationEnded(tb, pull.m);
  t.is(report.result, 'failed');
  t.is(report.pull?.result, 'incomplete');
  t.log(JSON.stringify(report.pull), report.reason);
  t.true(report.pull!.pulled_bytes < report.pull!.lazy_bytes, `${report.pull!.pulled_bytes} of ${report.pull!.lazy_bytes} bytes`);
  t.regex(report.pull?.reason ?? '', /lazy-pages (exited with [1-9]|was killed by SIG)/, 'the pull says why, in CRIU\'s words');
  t.regex(report.reason ?? '', /pull/);
  const there = async () => (await endpoints(tb, 2)).find((e) => e.name === big.service)!;
  t.like(await there(), { node: 'node3' });
  await waitFor('the copy with missing pages to be ended', async () => (await there()).state === 'exited', 5000);
  t.false(isProcessAlive(pull.record.root.pid), 'the source tree is gone too: the target ran on from the switch');
  t.is(criuLeft(), '', 'no CRIU process left');
  nothingOf(t, 'node2', big.service);
  t.deepEqual(readdirSync(`${tb.nodes[2]!.stateDir}/migrations`), [], 'node3: no images left');
});
