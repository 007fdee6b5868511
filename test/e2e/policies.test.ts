/**
 * Policies on the testbed, with real agents, real counters and real moves:
 * a service follows its client when the client moves, and does not move
 * under clients spread evenly; a drained node empties with every client
 * stream intact; a decision the policy declines is recorded with its reason.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../../src/http/client.js';
import type { DecisionWire } from '../../src/records/decision.js';
import type { NodeStatus } from '../../src/api/schemas.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { inNs } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';
import { migrationStatus } from '../helpers/migrations.js';
import {
  cli, downClean, endpointLog, endpoints, migrate, run, serveEcho, stopAfter, streamAdvances, uniqueTestbedName, upTestbed, waitFor, workload,
} from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const node = process.execPath;

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3);
});

test.after.always(() => downClean(name));

const api = () => ({ socketPath: tb.nodes[0]!.apiSocket });
const decisions = (endpoint: string) => callJson<DecisionWire[]>(api(), 'GET', '/v1/decisions').then((all) => all.filter((d) => d.endpoint === endpoint));
const whereIs = async (endpoint: string) => (await endpoints(tb)).find((e) => e.name === endpoint)?.node;
const policy = async (endpoint: string, p: object) => {
  const r = await cli(['policy', '--testbed', name, endpoint, JSON.stringify(p)]);
  if (r.code !== 0) throw new Error(r.err);
};
/** The agents' metrics listen on their underlay address, inside the node's namespace. */
function metricsOf(nodeName: string): string {
  const n = tb.nodes.find((x) => x.name === nodeName)!;
  return inNs(n.netns, [node, '-e', "fetch(process.argv[1]).then((r) => r.text()).then((x) => process.stdout.write(x))", `http://${n.metrics}/metrics`]);
}
/** An echo server on `on`, listening before this returns. */
const serve = (on: string, endpoint: string, port: number) => serveEcho(tb, on, endpoint, { port });

// Whatever a test started goes when it ends, passed or failed (stopAfter), so that the next one starts clean. The
// service first: stopping its clients one by one would shift its traffic, and its policy would move it.

const FOLLOW = { followClient: { windowMs: 3000, sustainMs: 2000 }, minDwellMs: 0 };

test.serial('follow-the-client: the client moves from node3 to node1, the service follows exactly once with every stream intact; moved back at once, it is declined for its dwell time', async (t) => {
  stopAfter(t, name, 'svc', 'cli');
  const svc = await serve('node3', 'svc', 7101);
  await policy('svc', FOLLOW);
  await run(tb, 'node3', 'cli', [node, workload('stream-check.js'), svc.ip, '7101', '--connections', '20', '--rate', '4000']);
  await streamAdvances(tb, 'node3', 'cli', 50000);
  await sleep(4000); // a window in which nothing may move: its clients are where it is
  t.is(await whereIs('svc'), 'node3', 'the clients are here: nothing moves');
  t.deepEqual((await decisions('svc')).filter((d) => d.outcome === 'moved'), []);
  t.regex(metricsOf('node3'), /roam_endpoint_ingress_bytes\{endpoint="svc",via="local"\} [1-9]/, 'counted as entering at its own node');

  const moved = await migrate(name, 'cli', 'node1');
  t.is(moved.result, 'success', moved.reason);
  await waitFor('svc to follow its client to node1', async () => (await whereIs('svc')) === 'node1', 40000);
  await streamAdvances(tb, 'node1', 'cli', 100000, 15000);
  await sleep(5000); // a window in which it may not move again
  const ds = await decisions('svc');
  const moves = ds.filter((d) => d.outcome === 'moved');
  t.is(moves.length, 1, JSON.stringify(ds));
  t.like(moves[0], { node: 'node3', policy: 'follow-client', to: 'node1', code: 'client-moved' });
  t.true(ds.some((d) => d.outcome === 'prepared' && d.to === 'node1'), 'node1 was prepared before the move');
  const status = await migrationStatus(tb, { id: moves[0]!.migration!, from: 'node3' });
  t.true((status.report?.prepared_ahead_ms ?? 0) > 0, 'the move used the preparation');
  t.is(status.report?.result, 'success');
  t.is(await whereIs('svc'), 'node1');

  // The client goes back; the service has just arrived and must stay a while.
  await policy('svc', { ...FOLLOW, minDwellMs: 600000 });
  t.is((await migrate(name, 'cli', 'node3')).result, 'success');
  await waitFor('the dwell decline', async () => (await decisions('svc')).some((d) => d.outcome === 'declined'), 30000);
  const declined = (await decisions('svc')).filter((d) => d.outcome === 'declined');
  t.like(declined[0], { node: 'node1', policy: 'follow-client', code: 'dwell', to: 'node3' });
  t.regex(declined[0]!.reason, /of its traffic has entered at node3 .* but it arrived \d+ s ago \(minDwellMs 600000\)/);
  const metrics = metricsOf('node1');
  t.regex(metrics, /roam_policy_decisions_total\{policy="follow-client",outcome="declined",code="dwell"\} 1/);
  t.regex(metrics, /roam_endpoint_ingress_bytes\{endpoint="svc",via="node3"\} [1-9]/);
  t.regex(metrics, /roam_endpoint_client_rtt_seconds\{endpoint="svc"\} [0-9.e-]+/);
  await streamAdvances(tb, 'node3', 'cli', 50000, 15000);
  t.is(await whereIs('svc'), 'node1');
});

test.serial('follow-the-client does not move a service whose clients are spread evenly over two nodes', async (t) => {
  stopAfter(t, name, 'even', 'even-a', 'even-b');
  const svc = await serve('node3', 'even', 7102);
  await policy('even', FOLLOW);
  await run(tb, 'node1', 'even-a', [node, workload('stream-check.js'), svc.ip, '7102', '--connections', '5', '--rate', '8000']);
  await run(tb, 'node2', 'even-b', [node, workload('stream-check.js'), svc.ip, '7102', '--connections', '5', '--rate', '8000']);
  await streamAdvances(tb, 'node1', 'even-a', 50000);
  await sleep(12000); // a window in which it may not move
  t.is(await whereIs('even'), 'node3');
  t.deepEqual((await decisions('even')).filter((d) => d.outcome === 'moved'), []);
});

test.serial('follow-the-client does not move a service whose clients on two nodes take turns of 1 s, then of 2 s', async (t) => {
  stopAfter(t, name, 'turns', 'turns-a1000', 'turns-b1000', 'turns-a2000', 'turns-b2000');
  const svc = await serve('node3', 'turns', 7105);
  // The default thresholds (70% over 5 s, held 3 s): a turn is never most of a window, let alone for the hold.
  await policy('turns', { followClient: {}, minDwellMs: 0 });
  // Turns of 1 s, then 2 s: each node alone carries all the traffic for a while.
  for (const burst of ['1000', '2000']) {
    await run(tb, 'node1', `turns-a${burst}`, [node, workload('stream-check.js'), svc.ip, '7105', '--connections', '5', '--rate', '8000', '--burst-ms', burst, '--phase', '0']);
    await run(tb, 'node2', `turns-b${burst}`, [node, workload('stream-check.js'), svc.ip, '7105', '--connections', '5', '--rate', '8000', '--burst-ms', burst, '--phase', '1']);
    await streamAdvances(tb, 'node1', `turns-a${burst}`, 20000, 15000);
    await streamAdvances(tb, 'node2', `turns-b${burst}`, 20000, 15000);
    await sleep(12000); // a window in which it may not move
    t.is(await whereIs('turns'), 'node3', `turns of ${burst} ms`);
    // Both at once: one alone for a while would be a client that moved.
    await Promise.all([`turns-a${burst}`, `turns-b${burst}`].map((e) => cli(['stop', '--testbed', name, e])));
  }
  t.deepEqual((await decisions('turns')).filter((d) => d.outcome === 'moved'), []);
  // It did see the traffic, from both nodes: the service stayed because of the hysteresis, not for want of counts.
  const metrics = metricsOf('node3');
  for (const via of ['node1', 'node2']) t.regex(metrics, new RegExp(`roam_endpoint_ingress_bytes\\{endpoint="turns",via="${via}"\\} [1-9]`));
});

test.serial('a target prepared ahead takes no traffic: while the service is prepared on node1 and held back by its dwell time, new clients there reach it on node3', async (t) => {
  stopAfter(t, name, 'held', 'held-a', 'held-b');
  const svc = await serve('node3', 'held', 7106);
  await policy('held', { followClient: { windowMs: 3000, sustainMs: 1000 }, minDwellMs: 600000 });
  await run(tb, 'node1', 'held-a', [node, workload('stream-check.js'), svc.ip, '7106', '--connections', '5', '--rate', '8000']);
  await streamAdvances(tb, 'node1', 'held-a', 20000);
  await waitFor('node1 prepared, the move declined', async () => {
    const ds = await decisions('held');
    return ds.some((d) => d.outcome === 'prepared' && d.to === 'node1') && ds.some((d) => d.outcome === 'declined' && d.code === 'dwell');
  }, 30000);
  // A new client asks who has the service's address: the prepared namespace on node1 holds it too, and must not answer.
  await run(tb, 'node1', 'held-b', [node, workload('stream-check.js'), svc.ip, '7106', '--connections', '5', '--rate', '8000']);
  await streamAdvances(tb, 'node1', 'held-b', 20000, 15000);
  await streamAdvances(tb, 'node1', 'held-a', 20000, 15000);
  t.is(await whereIs('held'), 'node3');
  t.is((await decisions('held')).filter((d) => d.outcome === 'withdrawn').length, 0, 'still prepared all along');
});

test.serial('drain: every endpoint leaves the drained node, to where its clients are, with every client stream intact; the peers know it drains until it is lifted', async (t) => {
  stopAfter(t, name, 'da', 'db', 'da-cli', 'db-cli');
  t.teardown(() => cli(['drain', '--testbed', name, 'node2', '--off']).then(() => undefined));
  const a = await serve('node2', 'da', 7103);
  const b = await serve('node2', 'db', 7104);
  await run(tb, 'node1', 'da-cli', [node, workload('stream-check.js'), a.ip, '7103', '--connections', '10', '--rate', '4000']);
  await run(tb, 'node3', 'db-cli', [node, workload('stream-check.js'), b.ip, '7104', '--connections', '10', '--rate', '4000']);
  await streamAdvances(tb, 'node1', 'da-cli', 30000, 20000);
  await streamAdvances(tb, 'node3', 'db-cli', 30000, 20000).catch((err: unknown) => {
    throw new Error(`${String(err)}; its log: ${endpointLog(tb, 'node3', 'db-cli').slice(-600)}`);
  });
  await sleep(6000); // a full window of traffic, so the drain knows where the clients are
  const drained = await cli(['drain', '--testbed', name, 'node2']);
  t.is(drained.code, 0, drained.err);
  await waitFor('node2 to empty', async () => (await endpoints(tb)).every((e) => e.node !== 'node2'), 60000);
  t.is(await whereIs('da'), 'node1');
  t.is(await whereIs('db'), 'node3');
  await streamAdvances(tb, 'node1', 'da-cli', 50000, 15000);
  await streamAdvances(tb, 'node3', 'db-cli', 50000, 15000);
  const nodes = await callJson<NodeStatus[]>(api(), 'GET', '/v1/nodes');
  t.true(nodes.find((n) => n.node === 'node2')!.draining, 'the other agents know node2 is draining');
  t.like((await decisions('da'))[0], { node: 'node2', policy: 'drain', outcome: 'moved', code: 'node-draining', to: 'node1' });
  const wrong = await cli(['drain', '--api', tb.nodes[0]!.apiSocket, 'node2']);
  t.is(wrong.code, 1);
  t.regex(wrong.err, /this agent is node1; ask node2's own agent/);
  t.is((await cli(['drain', '--testbed', name, 'node2', '--off'])).code, 0);
  const after = await callJson<NodeStatus[]>(api(), 'GET', '/v1/nodes');
  t.false(after.find((n) => n.node === 'node2')!.draining);
});
