/**
 * Live migration on the testbed with unmodified programs: many connections,
 * a forking server, a Node.js server with state; every stream checked byte
 * for byte across each move; a long ping-pong leaves nothing behind.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { listTables } from '../../src/sys/nft.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { migrationEnded, migrationStatus, startMigration } from '../helpers/migrations.js';
import { requireRoot } from '../helpers/root.js';
import {
  cli, downClean, echoMemoryOf, echoWithClients, endpointLog, endpoints, fixture, migrate, run, stopAfter, streamAdvances, streamClient, uniqueTestbedName, upTestbed,
  waitFor, workload,
} from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const node = process.execPath;
const forkingEcho = fixture('forking_echo.py');

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3);
});

test.after.always(() => downClean(name));

function fdbOf(nodeName: string): string {
  return execFileSync('bridge', ['-n', `roam-${name}-${nodeName}`, 'fdb', 'show', 'dev', 'roam-vx'], { encoding: 'utf8' });
}

function nodeOf(n: string) {
  return tb.nodes.find((x) => x.name === n)!;
}

/** A 16 MiB echo server `service` on `on` and 110 client connections to it from `clientsOn` (`service`-cli), both stopped when the test ends. */
function echo16WithClients(t: ExecutionContext, service: string, on: string, clientsOn = 'node3') {
  return echoWithClients(t, tb, service, { on, holdMb: 16, clientsOn, connections: 110, rate: 2000, verified: 50000 });
}

/** The counter server `service` on `on` and its client (`service`-cli, a request every 20 ms) on `clientOn`, both stopped when the test ends; returns once ten replies came. */
async function counterWithClient(t: ExecutionContext, service: string, on: string, clientOn: string): Promise<string> {
  const client = `${service}-cli`;
  stopAfter(t, name, service, client);
  const srv = await run(tb, on, service, [node, workload('counter-server.js'), '--port', '7000']);
  await waitFor(`${service} to listen`, () => endpointLog(tb, on, service).includes('listening'));
  await run(tb, clientOn, client, [node, workload('counter-client.js'), srv.ip, '7000', '--interval-ms', '20']);
  await waitFor('replies', () => endpointLog(tb, clientOn, client).includes('reply 10:'));
  return client;
}

function replies(log: string): string[] {
  return log.trim().split('\n').filter((l) => l.startsWith('reply'));
}

test.serial('a single-process server holding 110 connections and 16 MiB moves with every byte intact in both directions', async (t) => {
  const { srv, sum: sumBefore, clients } = await echo16WithClients(t, 'echo', 'node1');
  const report = await migrate(name, 'echo', 'node2', ['--mode', 'stop-copy']);
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, 'stop-copy');
  t.is(report.running_on, 'node2');
  t.true(report.tcp_connections >= 110, `${report.tcp_connections} connections carried`);
  t.true(report.image_bytes > 16 * 1048576);
  t.true(report.frozen_ms > 0);
  for (const p of ['prepare_ms', 'dump_ms', 'transfer_ms', 'restore_ms', 'switch_ms', 'unlock_ms'] as const) t.true(report.phases[p]! > 0, p);
  const after = await streamAdvances(tb, 'node3', clients, 200000, 15000);
  t.is(after.open, 110);
  t.true(after.verified <= after.sent);
  const moved = (await endpoints(tb)).find((e) => e.name === 'echo')!;
  t.like(moved, { node: 'node2', ip: srv.ip, mac: srv.mac, state: 'running' });
  t.like(await echoMemoryOf(tb, 'node2', 'echo', moved.pid!), { sum: sumBefore, connections: 110 }, 'memory and connections survived');
  t.false(existsSync(`${nodeOf('node1').stateDir}/netns/echo`), 'nothing of it left on node1');
});

test.serial('streamed: the memory goes to a page server on the target while it is dumped; contents and connections intact, nothing left running', async (t) => {
  const { sum: sumBefore, clients } = await echo16WithClients(t, 'streamed', 'node2');
  const report = await migrate(name, 'streamed', 'node1', ['--mode', 'streamed']);
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, 'streamed');
  t.true(report.image_bytes > 16 * 1048576, 'the pages sent to the page server are counted');
  t.true(report.tcp_connections >= 110);
  const moved = (await endpoints(tb)).find((e) => e.name === 'streamed')!;
  t.like(moved, { node: 'node1', state: 'running' });
  t.like(await echoMemoryOf(tb, 'node1', 'streamed', moved.pid!), { sum: sumBefore, connections: 110 }, 'memory and connections survived');
  const after = await streamAdvances(tb, 'node3', clients, 100000, 15000);
  t.is(after.open, 110);
  t.is(spawnSync('pgrep', ['-f', 'criu: page-server']).status, 1, 'no page server left running');
});

test.serial('post-copy: the service resumes on the target before its memory, which is pulled after; contents and connections intact, the source tree ended only then', async (t) => {
  const { sum: sumBefore, clients } = await echo16WithClients(t, 'postcopy', 'node1');
  const report = await migrate(name, 'postcopy', 'node2', ['--mode', 'post-copy']);
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, 'post-copy');
  t.truthy(report.pull, 'the report has the pull');
  t.is(report.pull!.result, 'complete');
  t.true(report.pull!.lazy_bytes >= 16 * 1048576, `the held table was kept back (${report.pull!.lazy_bytes} bytes)`);
  // Ranges the service unmapped meanwhile are dropped, not fetched: copied can be below total.
  t.true(report.pull!.pages_copied > 0 && report.pull!.pages_copied <= report.pull!.pages_total, `${report.pull!.pages_copied} of ${report.pull!.pages_total} pages`);
  t.true(report.pull!.pulled_bytes >= 16 * 1048576, 'the target acknowledged at least the table');
  t.true(report.image_bytes < report.pull!.lazy_bytes, 'less travelled inside the frozen window than after it');
  const moved = (await endpoints(tb)).find((e) => e.name === 'postcopy')!;
  t.like(moved, { node: 'node2', state: 'running' });
  t.like(await echoMemoryOf(tb, 'node2', 'postcopy', moved.pid!), { sum: sumBefore, connections: 110 }, 'memory and connections survived');
  const after = await streamAdvances(tb, 'node3', clients, 100000, 15000);
  t.is(after.open, 110);
  await waitFor('the lazy-pages daemon to end', () => spawnSync('pgrep', ['-x', 'criu']).status === 1, 5000).catch(() => undefined);
  t.is(spawnSync('pgrep', ['-x', 'criu']).status, 1, `no CRIU process left (page server, lazy-pages daemon): ${spawnSync('pgrep', ['-ax', 'criu'], { encoding: 'utf8' }).stdout}`);
});

test.serial('a forking server (a process per connection) moves with its connections', async (t) => {
  stopAfter(t, name, 'forking', 'forked-client');
  const srv = await run(tb, 'node2', 'forking', ['/usr/bin/python3', forkingEcho, '7002']);
  await waitFor('forking server', () => endpointLog(tb, 'node2', 'forking').includes('listening'));
  await streamClient(tb, 'node1', 'forked-client', srv.ip, { port: 7002, connections: 5, rate: 20000, verified: 50000 });
  const children = execFileSync('ps', ['--ppid', String((await endpoints(tb)).find((e) => e.name === 'forking')!.pid), '-o', 'pid='], { encoding: 'utf8' }).trim().split('\n');
  t.is(children.length, 5, 'one process per connection');
  const report = await migrate(name, 'forking', 'node3');
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, report.mode_choice!.chosen, 'by default the mode is chosen, and the report says which and why');
  t.is(report.tcp_connections, 5);
  await streamAdvances(tb, 'node1', 'forked-client', 100000, 15000);
});

test.serial("a Node.js server's in-memory state survives and its client never reconnects", async (t) => {
  const client = await counterWithClient(t, 'counter', 'node3', 'node1');
  const report = await migrate(name, 'counter', 'node1');
  t.is(report.result, 'success', report.reason);
  t.is(report.mode, 'stop-copy', 'a few MiB move inside the budget: no pull after the switch');
  t.like(report.mode_choice, { chosen: 'stop-copy', underlay_mbit: 1000, post_copy_available: true });
  t.regex(report.mode_choice!.reasons.join('; '), /MiB of memory moves in about \d+ ms at 1000 Mbit\/s \(assumed\); within the 100 ms budget/);
  t.true(report.mode_choice!.memory_bytes > 1048576 && report.mode_choice!.memory_bytes < 32 * 1048576, `${report.mode_choice!.memory_bytes} bytes`);
  const atMove = replies(endpointLog(tb, 'node1', client)).length;
  await waitFor('the client to count on after the move', () => replies(endpointLog(tb, 'node1', client)).length > atMove + 25, 15000);
  replies(endpointLog(tb, 'node1', client)).forEach((l, i) => t.regex(l, new RegExp(`^reply ${i + 1}: count ${i + 1} `), 'every answer continues the count'));
  t.false(endpointLog(tb, 'node1', client).includes('connection'), 'no lost or closed connection');
});

test.serial('a second migration of an endpoint already moving is refused with 409; bad requests name what is wrong', async (t) => {
  const { clients } = await echo16WithClients(t, 'busy', 'node2');
  const first = await startMigration(tb, { endpoint: 'busy', to: 'node3' });
  const second = await cli(['migrate', '--testbed', name, 'busy', '--to', 'node1']);
  t.is(second.code, 1);
  t.regex(second.err, /endpoint busy is already moving \(migration m-/);
  await migrationEnded(tb, first, 20000, 'first migration');
  const cases: [string[], RegExp][] = [
    [['migrate', '--testbed', name, 'ghost', '--to', 'node1'], /endpoint ghost does not exist/],
    [['migrate', '--testbed', name, 'busy', '--to', 'node9'], /to: unknown node node9/],
    [['migrate', '--testbed', name, 'busy', '--to', 'node3'], /to: endpoint busy is already on node3/],
    [['migrate', '--testbed', name, 'busy', '--to', 'node1', '--mode', 'teleport'], /mode: "teleport" is not one of auto, stop-copy, streamed, post-copy, cold/],
    [['migrate', '--testbed', name, 'busy'], /--to NODE is required/],
  ];
  for (const [args, message] of cases) t.regex((await cli(args)).err, message, args.join(' '));
  await streamAdvances(tb, 'node3', clients, 100000, 15000);
});

test.serial('two migrations from one node at once: the second waits its turn (its status says queued, its report for how long), then both succeed', async (t) => {
  const { clients } = await echo16WithClients(t, 'first', 'node3', 'node3');
  stopAfter(t, name, 'second', 'second-cli');
  const srv = await run(tb, 'node3', 'second', ['/usr/bin/python3', forkingEcho, '7002']);
  await waitFor('forking server', () => endpointLog(tb, 'node3', 'second').includes('listening'));
  await streamClient(tb, 'node1', 'second-cli', srv.ip, { port: 7002, connections: 5, rate: 20000, verified: 50000 });
  const first = await startMigration(tb, { endpoint: 'first', to: 'node1', mode: 'stop-copy' });
  const second = await startMigration(tb, { endpoint: 'second', to: 'node2', mode: 'stop-copy' });
  t.is((await migrationStatus(tb, second)).phase, 'queued', 'node3 drives one migration at a time');
  const [{ report: a }, { report: b }] = await Promise.all([migrationEnded(tb, first), migrationEnded(tb, second)]);
  t.is(a.result, 'success', a.reason);
  t.is(b.result, 'success', b.reason);
  t.is(a.queued_ms, undefined, 'the first did not wait');
  t.true((b.queued_ms ?? 0) > 50, `the second waited ${b.queued_ms} ms`);
  await streamAdvances(tb, 'node3', clients, 100000, 15000);
  await streamAdvances(tb, 'node1', 'second-cli', 50000, 15000);
});

test.serial('ping-pong node1 -> node2 -> node3 -> node1, ten times, leaves no namespace, lock, FDB entry, image or process behind', async (t) => {
  const client = await counterWithClient(t, 'pingpong', 'node1', 'node1');
  const order = ['node2', 'node3', 'node1'];
  const frozen: number[] = [];
  for (let round = 0; round < 10; round++) {
    for (const to of order) {
      const r = await migrate(name, 'pingpong', to);
      t.is(r.result, 'success', `round ${round} to ${to}: ${r.reason ?? ''}`);
      frozen.push(r.frozen_ms);
    }
  }
  t.log(`frozen ms: median ${frozen.sort((a, b) => a - b)[15]}, max ${frozen[frozen.length - 1]}`);
  const eps = await endpoints(tb);
  const counter = eps.find((e) => e.name === 'pingpong')!;
  // The last move settles within a sync round: the client is answered again, every other node tunnels to the owner.
  const atEnd = replies(endpointLog(tb, 'node1', client)).length;
  await waitFor('the client to count on after the last move', () => replies(endpointLog(tb, 'node1', client)).length > atEnd + 25, 15000);
  const tunnels = (n: string) => fdbOf(n).split('\n').filter((l) => l.startsWith(counter.mac) && l.includes(' self')).map((l) => /dst (\S+)/.exec(l)![1]);
  const owner = nodeOf(counter.node).underlayIp;
  await waitFor('every other node to tunnel to the owner', () => tb.nodes.every((n) => tunnels(n.name).join() === (n.name === counter.node ? '' : owner)), 10000).catch(() => undefined);
  const counting = endpointLog(tb, 'node1', client);
  t.false(counting.includes('connection'), 'the client never lost its connection');
  for (const n of tb.nodes) {
    const local = eps.filter((e) => e.node === n.name).map((e) => e.name).sort();
    t.deepEqual(readdirSync(`${n.stateDir}/netns`).sort(), local, `${n.name}: only live endpoints have namespaces`);
    t.deepEqual(readdirSync(`${n.stateDir}/endpoints`).sort(), local, `${n.name}: only live endpoints have state`);
    t.deepEqual(existsSync(`${n.stateDir}/migrations`) ? readdirSync(`${n.stateDir}/migrations`) : [], [], `${n.name}: no images left`);
    for (const ep of local) t.deepEqual(listTables(`${n.stateDir}/netns/${ep}`), [], `${n.name}/${ep}: no lock left`);
  }
  for (const n of tb.nodes) {
    const entries = fdbOf(n.name).split('\n').filter((l) => l.startsWith(counter.mac));
    if (n.name === counter.node) t.false(entries.some((l) => l.includes(' self')), `${n.name} owns it: no tunnel entry`);
    else t.deepEqual(entries.filter((l) => l.includes(' self')).map((l) => /dst (\S+)/.exec(l)![1]), [owner], `${n.name}: one tunnel entry, to the owner`);
  }
  const shims = execFileSync('pgrep', ['-f', `roam-shim .*${name}/`], { encoding: 'utf8' }).trim().split('\n');
  t.is(shims.length, eps.length, 'one shim per endpoint, no strays');
});
