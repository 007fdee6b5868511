/**
 * OCI containers on the testbed: run by runc from a root filesystem with a
 * data volume, migrated around all three nodes and back with 50 client
 * connections checked byte for byte; the files the container wrote, its
 * volume and a write just before each freeze arrive; runc on each node
 * knows the container exactly where it runs.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { defaultSpec, listContainers } from '../../src/sys/runc.js';
import { removeNetns } from '../../src/sys/netns/netns.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { makeRootfs } from '../../src/testbed/container-rootfs.js';
import { migrationEnded, migrationInPhase, startMigration } from '../helpers/migrations.js';
import { requireRoot } from '../helpers/root.js';
import {
  agentGone, cli, downClean, endpointLog, endpoints, migrate, stopAfter, streamAdvances, streamClient, uniqueTestbedName, upTestbed, waitFor,
} from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
let image: ReturnType<typeof makeRootfs>;
let volume: string;
const BLOB_BYTES = 4 * 1048576;

/** Writes a numbered line to the volume every 20 ms, counting in its own memory, and serves echo on 7000. */
const SERVICE = ['/bin/sh', '-c', 'echo made-before > /tmp/made; i=0; (while :; do i=$((i+1)); echo $i >> /data/seq; usleep 20000; done) & exec /bin/echo-server 7000'];

test.before(async () => {
  requireRoot();
  image = makeRootfs();
  volume = join(image.dir, 'volume');
  mkdirSync(join(volume, 'nested'), { recursive: true });
  writeFileSync(join(volume, 'blob'), randomBytes(BLOB_BYTES));
  writeFileSync(join(volume, 'nested', 'note'), 'kept\n');
  tb = await upTestbed(name, 3);
});

test.after.always(async () => {
  await downClean(name);
  image?.remove();
});

function nodeOf(n: string) {
  return tb.nodes.find((x) => x.name === n)!;
}

async function runContainer(node: string, ep: string, command: string[], volumes: string[]): Promise<EndpointRecord> {
  const r = await cli(['run', '--testbed', name, '--node', node, '--name', ep, '--rootfs', image.rootfs, ...volumes.flatMap((v) => ['--volume', v]), '--json', '--', ...command]);
  if (r.code !== 0) throw new Error(`roam run failed: ${r.err}`);
  return JSON.parse(r.out) as EndpointRecord;
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A node's roam_migration_file_bytes_total, read from its /metrics over the underlay. */
function fileBytesSent(node: string): { presync: number; frozen: number } {
  const text = execFileSync('nsenter', [`--net=${tb.switchNetns}`, 'curl', '-sS', '--max-time', '5', `http://${nodeOf(node).metrics}/metrics`], { encoding: 'utf8' });
  const of = (when: string) => Number(new RegExp(`^roam_migration_file_bytes_total\\{when="${when}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { presync: of('presync'), frozen: of('frozen') };
}

/** The volume as the container sees it, through its own mount namespace. */
function inContainer(pid: number, path: string): string {
  return join(`/proc/${pid}/root`, path);
}

/** The sequence the container wrote: every number from 1 on, none missing or repeated. */
function sequence(pid: number): { count: number; contiguous: boolean } {
  const v = readFileSync(inContainer(pid, '/data/seq'), 'utf8').trim().split('\n').map(Number);
  return { count: v.length, contiguous: v.every((x, i) => x === i + 1) };
}

/** A copy of the volume for container `ep` alone: its writer's sequence starts at 1 in it. */
function volumeFor(ep: string): string {
  const dir = join(image.dir, `${ep}-volume`);
  mkdirSync(join(dir, 'nested'), { recursive: true });
  copyFileSync(join(volume, 'blob'), join(dir, 'blob'));
  copyFileSync(join(volume, 'nested', 'note'), join(dir, 'nested', 'note'));
  return dir;
}

/**
 * The writing echo service (SERVICE) as container `ep` on `on`, with a volume of its own at /data, and 50
 * client connections to it from node3 (`ep`-cli); both stopped when the test ends. Returns once the clients stream.
 */
async function boxWithClients(t: ExecutionContext, ep: string, on: string): Promise<{ srv: EndpointRecord; clients: string }> {
  const clients = `${ep}-cli`;
  stopAfter(t, name, ep, clients);
  const srv = await runContainer(on, ep, SERVICE, [`${volumeFor(ep)}:/data`]);
  await waitFor(`${ep}'s echo server to listen`, () => endpointLog(tb, on, ep).includes('listening 7000'));
  await streamClient(tb, 'node3', clients, srv.ip, { port: 7000, connections: 50, rate: 4000, verified: 50000 });
  return { srv, clients };
}

/**
 * After a move or a rollback: the container's writer (now `pid`) goes on from where it was, no line of the
 * volume's sequence lost or repeated, and its 50 clients still stream, every byte checked.
 */
async function carriesOn(t: ExecutionContext, pid: number, seqBefore: number, clients: string, across: string): Promise<void> {
  await waitFor('the writer to go on', () => sequence(pid).count > seqBefore + 10);
  const seq = sequence(pid);
  t.true(seq.contiguous, `no line of the volume's sequence lost or repeated ${across} (${seq.count} lines)`);
  const after = await streamAdvances(tb, 'node3', clients, 100000, 20000);
  t.is(after.open, 50, 'every client connection is still open, every byte checked');
}

/** Whatever agent the test kills runs again when it ends, passed or failed (testbed up starts only those that are not running). */
function agentsBackAfter(t: ExecutionContext): void {
  t.teardown(async () => {
    tb = await upTestbed(name, 3);
  });
}

test.serial('a container with 50 connections, its files and its volume moves around all three nodes and back', async (t) => {
  const { srv, clients } = await boxWithClients(t, 'box', 'node1');
  const runcOn = async (n: string) => (await listContainers(join(nodeOf(n).stateDir, 'runc'))).map((c) => `${c.id}:${c.status}`);
  t.deepEqual(await runcOn('node1'), ['box:running'], 'runc on node1 runs it');
  let from = 'node1';
  for (const to of ['node2', 'node3', 'node1']) {
    const before = (await endpoints(tb)).find((e) => e.name === 'box')!;
    const seqBefore = sequence(before.pid!).count;
    const report = await migrate(name, 'box', to, ['--mode', 'stop-copy']);
    t.is(report.result, 'success', `${from} -> ${to}: ${report.reason}`);
    t.true(report.tcp_connections >= 50, `${report.tcp_connections} connections carried`);
    t.true((report.files?.presync_bytes ?? 0) >= BLOB_BYTES, `the volume was copied while the container ran (${report.files?.presync_bytes} bytes)`);
    t.true((report.files?.frozen_bytes ?? Infinity) < BLOB_BYTES, `only changes went in the freeze (${report.files?.frozen_bytes} bytes)`);
    t.deepEqual(await runcOn(to), ['box:running'], `runc on ${to} runs it`);
    t.deepEqual(await runcOn(from), [], `runc on ${from} has forgotten it`);
    const moved = (await endpoints(tb)).find((e) => e.name === 'box')!;
    t.like(moved, { node: to, ip: srv.ip, mac: srv.mac, state: 'running' });
    t.is(readFileSync(inContainer(moved.pid!, '/tmp/made'), 'utf8'), 'made-before\n', 'a file written into its root filesystem came along');
    t.is(sha(inContainer(moved.pid!, '/data/blob')), sha(join(volume, 'blob')), 'the volume is bit for bit the same');
    t.is(readFileSync(inContainer(moved.pid!, '/data/nested/note'), 'utf8'), 'kept\n');
    // The writer counts in memory: a line written just before the freeze and lost would leave a gap.
    await carriesOn(t, moved.pid!, seqBefore, clients, `across ${from} -> ${to}`);
    from = to;
  }
  t.false(existsSync(join(nodeOf('node2').stateDir, 'endpoints', 'box')), 'node2 kept nothing of it');
  t.is(readdirSync(join(nodeOf('node2').stateDir, 'runc')).length, 0, "node2's runc state is empty");
});

test.serial('without the proactive copy the whole volume goes in the freeze; with it only what changed', async (t) => {
  stopAfter(t, name, 'vault');
  const srv = await runContainer('node2', 'vault', SERVICE, [`${volumeFor('vault')}:/data`]);
  await waitFor('vault to listen', () => endpointLog(tb, 'node2', 'vault').includes('listening 7000'));
  const off = await migrate(name, 'vault', 'node1', ['--mode', 'stop-copy', '--presync', 'off']);
  t.is(off.result, 'success', off.reason);
  t.is(off.files?.presync_bytes, 0);
  t.true((off.files?.frozen_bytes ?? 0) >= BLOB_BYTES, `all of it in the freeze (${off.files?.frozen_bytes} bytes)`);
  const on = await migrate(name, 'vault', 'node2', ['--mode', 'stop-copy']);
  t.is(on.result, 'success', on.reason);
  t.true((on.files?.frozen_bytes ?? Infinity) < 65536, `a few lines in the freeze (${on.files?.frozen_bytes} bytes)`);
  const moved = (await endpoints(tb)).find((e) => e.name === 'vault')!;
  t.is(moved.ip, srv.ip);
  t.is(sha(inContainer(moved.pid!, '/data/blob')), sha(join(volume, 'blob')));
  t.true(sequence(moved.pid!).contiguous);
  // The source counts what it sent: node2 the whole volume in a freeze (without the copy), node1 the whole volume ahead (with it).
  const frozen = fileBytesSent('node2').frozen;
  t.true(frozen >= BLOB_BYTES, `node2: roam_migration_file_bytes_total{when="frozen"} ${frozen}`);
  const presync = fileBytesSent('node1').presync;
  t.true(presync >= BLOB_BYTES, `node1: roam_migration_file_bytes_total{when="presync"} ${presync}`);
  t.is((await cli(['stop', '--testbed', name, 'vault'])).code, 0);
});

test.serial('bad container input is refused naming what is wrong, and leaves nothing', async (t) => {
  stopAfter(t, name, 'nope', 'still');
  const missing = await cli(['run', '--testbed', name, '--node', 'node1', '--name', 'nope', '--rootfs', image.rootfs, '--volume', '/no/such/dir:/data', '--', '/bin/sh']);
  t.is(missing.code, 2);
  t.regex(missing.err, /volume: \/no\/such\/dir is not a folder/);
  const notRoot = await cli(['run', '--testbed', name, '--node', 'node1', '--name', 'nope', '--rootfs', volume, '--', '/bin/sh']);
  t.regex(notRoot.err, /not a root filesystem/);
  const badVolume = await cli(['run', '--testbed', name, '--node', 'node1', '--name', 'nope', '--rootfs', image.rootfs, '--volume', 'data', '--', '/bin/sh']);
  t.regex(badVolume.err, /HOST_DIR:CONTAINER_DIR/);
  const noProgram = await cli(['run', '--testbed', name, '--node', 'node1', '--name', 'nope', '--rootfs', image.rootfs, '--', '/bin/not-there']);
  t.is(noProgram.code, 1);
  t.regex(noProgram.err, /runc run nope/);
  t.false((await endpoints(tb)).some((e) => e.name === 'nope'));
  t.false(existsSync(join(nodeOf('node1').stateDir, 'endpoints', 'nope')), 'no folder left');
  t.false(existsSync(join(nodeOf('node1').stateDir, 'netns', 'nope')), 'no namespace left');
  t.false((await listContainers(join(nodeOf('node1').stateDir, 'runc'))).some((c) => c.id === 'nope'), 'runc knows nothing of it');
  await runContainer('node1', 'still', ['/bin/echo-server', '7000'], []);
  const postCopy = await startMigration(tb, { endpoint: 'still', to: 'node2', mode: 'post-copy' }).catch((e: Error) => e);
  t.regex(String(postCopy), /post-copy is not available for containers/);
  t.is((await cli(['stop', '--testbed', name, 'still'])).code, 0);
  t.false((await listContainers(join(nodeOf('node1').stateDir, 'runc'))).some((c) => c.id === 'still'), 'roam stop removed it from runc');
});

test.serial('a container whose restore fails on the target is restored by runc on the source, with its connections, files and volume', async (t) => {
  const { clients } = await boxWithClients(t, 'unrestored', 'node1');
  const before = (await endpoints(tb)).find((e) => e.name === 'unrestored')!;
  const seqBefore = sequence(before.pid!).count;
  const m = await startMigration(tb, { endpoint: 'unrestored', to: 'node2', mode: 'stop-copy' });
  // The arrival's namespace goes while the source dumps: runc on the target cannot restore into it.
  await migrationInPhase(tb, m, 'dump');
  removeNetns(`${nodeOf('node2').stateDir}/netns/unrestored`);
  const { report } = await migrationEnded(tb, m);
  t.is(report.result, 'rolled_back', report.reason);
  t.regex(report.reason ?? '', /^restore: .*restored on node1 with its connections/);
  const back = (await endpoints(tb)).find((e) => e.name === 'unrestored')!;
  t.like(back, { node: 'node1', ip: before.ip, state: 'running' });
  t.deepEqual((await listContainers(join(nodeOf('node1').stateDir, 'runc'))).filter((c) => c.id === 'unrestored').map((c) => c.status), ['running'], 'runc on node1 knows it again');
  t.is(readFileSync(inContainer(back.pid!, '/tmp/made'), 'utf8'), 'made-before\n');
  await carriesOn(t, back.pid!, seqBefore, clients, 'across the rollback');
  t.false(existsSync(join(nodeOf('node2').stateDir, 'endpoints', 'unrestored')), 'node2 kept nothing of it');
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(`${nodeOf('node2').stateDir}/endpoints/unrestored`), 'no mount left on node2');
});

test.serial("an OCI bundle runs with its own configuration's program", async (t) => {
  stopAfter(t, name, 'bundled');
  const bundle = join(image.dir, 'bundle');
  mkdirSync(bundle);
  const spec = await defaultSpec();
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ...spec, root: { path: image.rootfs, readonly: true }, process: { ...(spec.process as object), args: ['/bin/echo-server', '7100'] } }));
  const r = await cli(['run', '--testbed', name, '--node', 'node2', '--name', 'bundled', '--bundle', bundle, '--json']);
  t.is(r.code, 0, r.err);
  await waitFor('the bundle program to listen', () => endpointLog(tb, 'node2', 'bundled').includes('listening 7100'));
  t.deepEqual((await listContainers(join(nodeOf('node2').stateDir, 'runc'))).filter((c) => c.id === 'bundled').map((c) => c.status), ['running']);
  t.is((await cli(['stop', '--testbed', name, 'bundled'])).code, 0);
});

test.serial('a container moves in streamed mode too: its memory goes to the target page server while runc dumps it', async (t) => {
  const { clients } = await boxWithClients(t, 'streamed', 'node1');
  const before = (await endpoints(tb)).find((e) => e.name === 'streamed')!;
  const to = 'node2';
  const seqBefore = sequence(before.pid!).count;
  const report = await migrate(name, 'streamed', to, ['--mode', 'streamed']);
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, 'streamed');
  t.true(report.tcp_connections >= 50);
  const moved = (await endpoints(tb)).find((e) => e.name === 'streamed')!;
  t.like(moved, { node: to, ip: before.ip, state: 'running' });
  t.deepEqual((await listContainers(join(nodeOf(to).stateDir, 'runc'))).filter((c) => c.id === 'streamed').map((c) => c.status), ['running']);
  await carriesOn(t, moved.pid!, seqBefore, clients, 'across the streamed move');
});

test.serial("the source agent killed during a container's dump: its restart brings the container back there through runc, with its connections and every volume write", async (t) => {
  // On node2, moving to node1: the API this test asks (node1's) stays up while node2's agent is killed.
  const { clients } = await boxWithClients(t, 'recovered', 'node2');
  agentsBackAfter(t);
  const before = (await endpoints(tb)).find((e) => e.name === 'recovered')!;
  const source = nodeOf(before.node);
  const to = 'node1';
  const seqBefore = sequence(before.pid!).count;
  const m = await startMigration(tb, { endpoint: 'recovered', to, mode: 'stop-copy', presync: false });
  await migrationInPhase(tb, m, 'dump');
  process.kill(source.agentPid, 'SIGKILL');
  await agentGone(source);
  tb = await upTestbed(name, 3);
  const { report } = await migrationEnded(tb, m, 60000, 'the restarted source to recover the migration');
  t.is(report.result, 'rolled_back', report.reason);
  t.is(report.running_on, before.node);
  const back = (await endpoints(tb)).find((e) => e.name === 'recovered')!;
  t.like(back, { node: before.node, ip: before.ip, state: 'running' });
  t.deepEqual((await listContainers(join(source.stateDir, 'runc'))).filter((c) => c.id === 'recovered').map((c) => c.status), ['running'], `runc on ${before.node} knows it`);
  await carriesOn(t, back.pid!, seqBefore, clients, 'across the recovery');
  t.false(existsSync(join(nodeOf(to).stateDir, 'endpoints', 'recovered')), `${to} kept nothing of it`);
  t.deepEqual(readdirSync(join(source.stateDir, 'migrations')), [], 'the journal and images went');
});
