import test from 'ava';
import { PolicyEngine, RETRY_AFTER_MS, type Action, type EvaluationInput, type NodeChoice } from '../../src/policy/engine.js';
import { Value } from '@sinclair/typebox/value';
import { EndpointPolicy } from '../../src/records/policy.js';
import { TrafficWindow } from '../../src/policy/traffic-window.js';
import { ingressScript, parseIngressCounters } from '../../src/sys/ingress-counters.js';

/** A service on node3 whose clients' bytes enter where `entry(t)` says, one reading a second. */
function simulate(opts: {
  seconds: number; entry: (s: number) => Partial<Record<string, number>>; policy?: object; draining?: (s: number) => boolean; peers?: NodeChoice[]; rtt?: (s: number) => number | undefined;
  hereSince?: number;
  /** moves are refused (the endpoint never starts moving) */
  movesFail?: boolean;
}): { actions: (Action & { second: number })[] } {
  const engine = new PolicyEngine();
  const window = new TrafficWindow();
  const totals: Record<string, number> = {};
  const actions: (Action & { second: number })[] = [];
  // As the API gives it to the agent: the schema's defaults filled in.
  const policy = Value.Default(EndpointPolicy, opts.policy ?? { followClient: {}, minDwellMs: 0 }) as EndpointPolicy;
  let moving = false;
  for (let s = 0; s <= opts.seconds; s++) {
    const now = s * 1000;
    for (const [via, bytes] of Object.entries(opts.entry(s))) totals[via] = (totals[via] ?? 0) + (bytes ?? 0);
    window.record(now, Object.entries(totals).map(([via, bytes]) => ({ endpoint: 'svc', via, bytes })));
    const input: EvaluationInput = {
      now, self: 'node3', selfDraining: opts.draining?.(s) ?? false,
      endpoints: [{ name: 'svc', policy, hereSince: opts.hereSince ?? 0, moving, rttMs: opts.rtt?.(s) }],
      peers: opts.peers ?? [{ node: 'node1', reachable: true, draining: false, endpoints: 3 }, { node: 'node2', reachable: true, draining: false, endpoints: 1 }],
      rates: (name, w) => window.rates(name, now, w),
    };
    for (const a of engine.evaluate(input)) {
      actions.push({ ...a, second: s });
      if (a.kind === 'move' && !opts.movesFail) moving = true;
    }
  }
  return { actions };
}

test('follow-client: the client moves from node3 to node1, the service is prepared for it, then moves exactly once', (t) => {
  const { actions } = simulate({ seconds: 40, entry: (s) => (s < 10 ? { local: 50000 } : { node1: 50000 }) });
  const moves = actions.filter((a) => a.kind === 'move');
  t.is(moves.length, 1);
  t.like(moves[0], { to: 'node1', decision: { policy: 'follow-client', outcome: 'moved', code: 'client-moved' } });
  const prepared = actions.find((a) => a.kind === 'prepare');
  t.truthy(prepared, 'prepared before the move');
  t.true(prepared!.second < moves[0]!.second, `prepared at ${prepared!.second} s, moved at ${moves[0]!.second} s`);
  // 5 s window: node1's share passes 70% after ~3.5 s; it must then hold 3 s
  t.true(moves[0]!.second >= 15 && moves[0]!.second <= 18, `moved at ${moves[0]!.second} s`);
});

test('follow-client: clients alternating between two nodes never move the service (periods up to the 5 s window)', (t) => {
  for (const period of [1, 2, 3, 5]) {
    const { actions } = simulate({ seconds: 120, entry: (s) => (Math.floor(s / period) % 2 === 0 ? { node1: 40000 } : { node2: 40000 }) });
    t.deepEqual(actions.filter((a) => a.kind === 'move'), [], `period ${period} s`);
  }
  // Half here, half at node1: no node has most of it.
  t.deepEqual(simulate({ seconds: 60, entry: () => ({ local: 30000, node1: 30000 }) }).actions.filter((a) => a.kind !== 'decline'), []);
});

test('follow-client: traffic too thin to say where the clients are moves nothing', (t) => {
  t.deepEqual(simulate({ seconds: 30, entry: () => ({ node1: 200 }) }).actions, []);
});

test('a move the dwell time forbids is declined once, with its reason, then taken when the dwell time is over', (t) => {
  const { actions } = simulate({ seconds: 40, hereSince: 0, policy: { followClient: {}, minDwellMs: 25000 }, entry: () => ({ node1: 50000 }) });
  const declines = actions.filter((a) => a.kind === 'decline');
  t.is(declines.length, 1, 'recorded once, not once per second');
  t.like(declines[0]!.decision, { policy: 'follow-client', outcome: 'declined', code: 'dwell', to: 'node1' });
  t.regex(declines[0]!.decision.reason, /arrived \d+ s ago \(minDwellMs 25000\)/);
  const move = actions.find((a) => a.kind === 'move');
  t.is(move?.second, 25);
});

test('follow-client never sends a service to a draining or unreachable node, and says so', (t) => {
  const peers = [{ node: 'node1', reachable: true, draining: true, endpoints: 0 }, { node: 'node2', reachable: false, draining: false, endpoints: 0 }];
  const a = simulate({ seconds: 20, peers, entry: () => ({ node1: 50000 }) }).actions;
  t.deepEqual(a.map((x) => `${x.kind} ${x.decision.code}`), ['decline target-draining']);
  const b = simulate({ seconds: 20, peers, entry: () => ({ node2: 50000 }) }).actions;
  t.deepEqual(b.map((x) => `${x.kind} ${x.decision.code}`), ['decline target-unreachable']);
});

test('drain: every endpoint leaves at once, to where its clients are if it can, else the emptiest open node', (t) => {
  const toClients = simulate({ seconds: 3, draining: (s) => s >= 2, policy: { minDwellMs: 600000 }, entry: () => ({ node1: 50000 }) }).actions;
  t.deepEqual(toClients.map((a) => `${a.second} ${a.kind} ${a.decision.to ?? ''} ${a.decision.code}`), ['2 move node1 node-draining']);
  const emptiest = simulate({ seconds: 3, draining: () => true, policy: {}, entry: () => ({}) }).actions;
  t.like(emptiest[0], { kind: 'move', to: 'node2', decision: { policy: 'drain' } });
  const nowhere = simulate({ seconds: 3, draining: () => true, peers: [{ node: 'node1', reachable: true, draining: true, endpoints: 0 }], entry: () => ({}) }).actions;
  t.deepEqual(nowhere.map((a) => `${a.kind} ${a.decision.code}`), ['decline no-node']);
  const kept = simulate({ seconds: 3, draining: () => true, policy: { drain: false }, entry: () => ({}) }).actions;
  t.deepEqual(kept.map((a) => `${a.kind} ${a.decision.code}`), ['decline policy-keeps']);
});

test('latency: a target missed for sustainMs moves the service to where its clients are; missed with its clients here, it is declined', (t) => {
  const slow = simulate({ seconds: 20, policy: { latency: { targetMs: 5, sustainMs: 4000 }, minDwellMs: 0 }, rtt: () => 12, entry: () => ({ node2: 50000 }) }).actions;
  t.deepEqual(slow.map((a) => `${a.second} ${a.kind} ${a.decision.to ?? ''} ${a.decision.code}`), ['4 move node2 latency-above-target']);
  const here = simulate({ seconds: 20, policy: { latency: { targetMs: 5, sustainMs: 2000 } }, rtt: () => 12, entry: () => ({ local: 50000 }) }).actions;
  t.is(here.length, 1);
  t.like(here[0]!.decision, { policy: 'latency', outcome: 'declined', code: 'no-better-node' });
  t.regex(here[0]!.decision.reason, /above 5 ms.*most of its traffic enters here already/);
  const fine = simulate({ seconds: 20, policy: { latency: { targetMs: 20 } }, rtt: () => 12, entry: () => ({ node2: 50000 }) }).actions;
  t.deepEqual(fine, []);
});

test('a prediction that fades is withdrawn, and nothing moves', (t) => {
  const { actions } = simulate({ seconds: 30, policy: { followClient: { share: 0.9, prepareShare: 0.55 }, minDwellMs: 0 }, entry: (s) => (s < 8 ? { node1: 60000, local: 40000 } : { local: 50000 }) });
  t.deepEqual(actions.map((a) => `${a.kind} ${a.decision.code}`), ['prepare predicted', 'withdraw prediction-faded']);
});

test('a move that did not happen (refused, rolled back) is asked for again only after the retry wait, which is said once each time', (t) => {
  const { actions } = simulate({ seconds: 40, movesFail: true, entry: () => ({ node1: 50000 }) });
  const seen = JSON.stringify(actions.map((a) => `${a.second} ${a.kind} ${a.decision.code}`));
  const moves = actions.filter((a) => a.kind === 'move').map((a) => a.second);
  // Once the wait is over, the target is prepared again (one round), then the move is asked for.
  const retry = RETRY_AFTER_MS / 1000 + 1;
  t.deepEqual(moves, [8, 8 + retry, 8 + 2 * retry], seen);
  t.deepEqual(actions.filter((a) => a.kind === 'prepare').map((a) => a.second), [5, 8 + retry - 1, 8 + 2 * retry - 1], seen);
  // After each move asked for, the share holds again for sustainMs (3 s), then waits: said once per wait.
  t.deepEqual(actions.filter((a) => a.kind === 'decline').map((a) => `${a.second} ${a.decision.code}`), [`${moves[0]! + 4} retry-wait`, `${moves[1]! + 4} retry-wait`], seen);
});

test('the traffic window: rates over the window, a counter reset counted from zero, endpoints that go are forgotten', (t) => {
  const w = new TrafficWindow();
  w.record(0, [{ endpoint: 'a', via: 'node1', bytes: 1000 }]);
  w.record(1000, [{ endpoint: 'a', via: 'node1', bytes: 3000 }, { endpoint: 'a', via: 'local', bytes: 1000 }]);
  w.record(2000, [{ endpoint: 'a', via: 'node1', bytes: 500 }, { endpoint: 'a', via: 'local', bytes: 2000 }]);
  const r = w.rates('a', 2000, 5000);
  t.is(r.byVia.get('node1'), (2000 + 500) / 2);
  t.is(r.byVia.get('local'), 2000 / 2);
  t.is(r.top, 'node1');
  t.is(Math.round(r.topShare * 100), 56);
  t.deepEqual([...w.totalsOf('a')], [['node1', 3500], ['local', 2000]]);
  w.rebase();
  w.record(3000, [{ endpoint: 'a', via: 'node1', bytes: 100 }, { endpoint: 'a', via: 'local', bytes: 0 }]);
  t.is(w.totalsOf('a').get('node1'), 3600);
  w.record(4000, []);
  t.deepEqual(w.endpoints(), []);
});

test('the traffic window: a late reading that straddles the window\'s start counts only for its part inside', (t) => {
  const w = new TrafficWindow();
  w.record(0, [{ endpoint: 'a', via: 'node1', bytes: 0 }, { endpoint: 'a', via: 'node2', bytes: 0 }]);
  // The next reading comes 2 s late, after 2 s of node1's turn; then 1 s of node2's.
  w.record(2000, [{ endpoint: 'a', via: 'node1', bytes: 2000 }, { endpoint: 'a', via: 'node2', bytes: 0 }]);
  w.record(3000, [{ endpoint: 'a', via: 'node1', bytes: 2000 }, { endpoint: 'a', via: 'node2', bytes: 1000 }]);
  const r = w.rates('a', 3000, 2000);
  t.is(r.byVia.get('node1'), 1000 / 2, 'half of the 2 s reading is inside the last 2 s');
  t.is(r.byVia.get('node2'), 1000 / 2);
  t.is(r.topShare, 0.5);
});

test('the ingress rules count per endpoint and entry node, and their listing reads back', (t) => {
  const script = ingressScript({ vxlanPort: 4789, vxlanDevice: 'roam-vx', endpoints: [{ name: 'svc', ip: '10.244.1.5', mac: '02:72:0a:f4:01:05' }], peers: [{ node: 'node2', address: '172.31.0.2' }] });
  t.regex(script, /udp dport 4789 @th,224,16 0x0800 @th,368,32 0x0af40105 jump ep0/);
  t.regex(script, /ip saddr 172\.31\.0\.2 counter comment "svc node2"/);
  t.regex(script, /ether daddr 02:72:0a:f4:01:05 counter comment "svc local"/);
  t.deepEqual(parseIngressCounters('\t\tip saddr 172.31.0.2 counter packets 7 bytes 910 comment "svc node2"\n'), [{ endpoint: 'svc', via: 'node2', packets: 7, bytes: 910 }]);
});
