/**
 * Overlay benchmarks on the testbed:
 *  - throughput: iperf3 between endpoints on two nodes (VXLAN) vs the same
 *    kind of endpoints on one node's bridge (no VXLAN), interleaved, same run;
 *  - convergence: time until every node's FDB points an endpoint's MAC at the
 *    VTEP of the node it now lives on, for N nodes, as absolute time and as a
 *    ratio to N=3 measured in the same run.
 */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/http/client.js';
import type { EndpointRecord } from '../src/records/endpoint.js';
import { listFdb } from '../src/sys/netlink/fdb.js';
import { getLink } from '../src/sys/netlink/links.js';
import { RtnlSession } from '../src/sys/netlink/session.js';
import { nativePaths } from '../src/sys/native.js';
import { testbedDown } from '../src/testbed/down.js';
import { testbedUp } from '../src/testbed/up.js';
import type { TestbedState } from '../src/testbed/state.js';
import { median, quantile } from './common.js';

const p95 = (xs: number[]): number => quantile(xs, 0.95);

async function create(tb: TestbedState, node: string, name: string, command: string[], ip?: string): Promise<EndpointRecord> {
  return callJson<EndpointRecord>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/endpoints', { name, node, command, ...(ip ? { ip } : {}) });
}

async function stop(tb: TestbedState, name: string): Promise<void> {
  await callJson({ socketPath: tb.nodes[0]!.apiSocket }, 'DELETE', `/v1/endpoints/${name}`);
}

function iperf(clientNetns: string, serverIp: string, seconds: number): number {
  const out = execFileSync(nativePaths.nsexec, ['--net', clientNetns, '--', 'iperf3', '-c', serverIp, '-t', String(seconds), '-J', '--connect-timeout', '3000'], { encoding: 'utf8', timeout: (seconds + 15) * 1000 });
  const result = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return result.end.sum_received.bits_per_second;
}

export async function throughputBench(rounds: number, seconds: number): Promise<Record<string, unknown>> {
  const name = 'bthru';
  await testbedDown(name, () => undefined);
  const tb = await testbedUp({ name, nodes: 2, underlayRate: undefined, say: () => undefined });
  try {
    const srvRemote = await create(tb, 'node1', 'iperf-a', ['iperf3', '-s', '-p', '5201']);
    const srvLocal = await create(tb, 'node1', 'iperf-b', ['iperf3', '-s', '-p', '5201']);
    const clientRemote = await create(tb, 'node2', 'client-remote', ['sleep', '100000']);
    const clientLocal = await create(tb, 'node1', 'client-local', ['sleep', '100000']);
    await sleep(500);
    const overlay: number[] = [];
    const bridge: number[] = [];
    for (let i = 0; i < rounds; i++) {
      overlay.push(iperf(clientRemote.netns!, srvRemote.ip, seconds));
      bridge.push(iperf(clientLocal.netns!, srvLocal.ip, seconds));
    }
    const gbit = (xs: number[]) => xs.map((x) => Math.round(x / 1e7) / 100);
    return {
      scenario: 'overlay_throughput',
      what: 'iperf3 TCP, endpoint on node2 -> endpoint on node1 over VXLAN, vs endpoint -> endpoint on node1\'s bridge; interleaved rounds',
      rounds,
      seconds_per_round: seconds,
      overlay_gbit_s: gbit(overlay),
      bridge_gbit_s: gbit(bridge),
      overlay_median_gbit_s: Math.round(median(overlay) / 1e7) / 100,
      bridge_median_gbit_s: Math.round(median(bridge) / 1e7) / 100,
      ratio_overlay_to_bridge: Math.round((median(overlay) / median(bridge)) * 1000) / 1000,
    };
  } finally {
    await testbedDown(name, () => undefined);
  }
}

/** Waits until every node's VXLAN FDB (or its own bridge port, for the owner) places `mac` on `owner`. */
async function waitEverywhere(sessions: Map<string, RtnlSession>, mac: string, owner: string, ownerVtep: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  const pending = new Set(sessions.keys());
  while (pending.size > 0) {
    if (performance.now() - started > timeoutMs) throw new Error(`not converged after ${timeoutMs} ms: ${[...pending].join(', ')}`);
    for (const node of [...pending]) {
      const s = sessions.get(node)!;
      const vx = await getLink(s, 'roam-vx');
      const entries = (await listFdb(s)).filter((e) => e.mac === mac);
      const ok = node === owner
        ? entries.some((e) => e.table === 'master' && e.ifindex !== vx?.index) && !entries.some((e) => e.table === 'self')
        : entries.some((e) => e.table === 'self' && e.ifindex === vx?.index && e.dst === ownerVtep);
      if (ok) pending.delete(node);
    }
    if (pending.size > 0) await sleep(2);
  }
  return performance.now() - started;
}

export async function convergenceBench(sizes: number[], moves: number): Promise<Record<string, unknown>> {
  const results: { nodes: number; samples_ms: number[]; median_ms: number; p95_ms: number; after_create_returned_median_ms: number }[] = [];
  for (const n of sizes) {
    const name = `bconv${n}`;
    await testbedDown(name, () => undefined);
    const tb = await testbedUp({ name, nodes: n, underlayRate: undefined, say: () => undefined });
    const sessions = new Map(tb.nodes.map((x) => [x.name, RtnlSession.open(x.netns)]));
    try {
      const first = await create(tb, 'node1', 'mover', ['sleep', '100000']);
      await waitEverywhere(sessions, first.mac, 'node1', '172.31.0.1', 30000);
      const samples: number[] = [];
      const afterCreate: number[] = [];
      for (let i = 0; i < moves; i++) {
        // Until live migration exists, a "move" is stop here + start there with the same IP.
        const target = tb.nodes[1 + (i % (n - 1))]!;
        await stop(tb, 'mover');
        const t0 = performance.now();
        const ep = await create(tb, target.name, 'mover', ['sleep', '100000'], first.ip);
        const created = performance.now();
        await waitEverywhere(sessions, ep.mac, target.name, target.underlayIp, 30000);
        samples.push(Math.round((performance.now() - t0) * 10) / 10);
        afterCreate.push(Math.round((performance.now() - created) * 10) / 10);
        await stop(tb, 'mover');
        await create(tb, 'node1', 'mover', ['sleep', '100000'], first.ip);
        await waitEverywhere(sessions, first.mac, 'node1', '172.31.0.1', 30000);
      }
      results.push({ nodes: n, samples_ms: samples, median_ms: median(samples), p95_ms: p95(samples), after_create_returned_median_ms: median(afterCreate) });
    } finally {
      for (const s of sessions.values()) s.close();
      await testbedDown(name, () => undefined);
    }
  }
  const base = results.find((r) => r.nodes === sizes[0])!.median_ms;
  return {
    scenario: 'location_convergence',
    what: 'time from asking for an endpoint on a new node (same IP) until every node\'s FDB places its MAC there; after_create_returned: the part after the API answered',
    moves_per_size: moves,
    results: results.map((r) => ({ ...r, ratio_to_smallest: Math.round((r.median_ms / base) * 100) / 100 })),
  };
}
