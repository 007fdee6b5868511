/**
 * `npm run demo`: a 3-node edge cluster on this machine, a stateful TCP
 * service on node1, a client on node3 talking to it across the VXLAN
 * overlay; then the service moves node1 -> node2 -> node3 while the client
 * keeps talking over the same connection; then the client moves to node1 and
 * the service follows it on its own (follow-the-client); and everything is
 * torn down.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { callJson, callRaw } from '../http/client.js';
import type { DecisionWire } from '../records/decision.js';
import type { EndpointRecord } from '../records/endpoint.js';
import { RoamError } from '../errors/roam-error.js';
import { testbedDown } from '../testbed/down.js';
import { testbedUp } from '../testbed/up.js';
import { formatTable } from './table.js';
import { followMigration } from './follow-migration.js';

const workload = (file: string) => fileURLToPath(new URL(`../workloads/${file}`, import.meta.url));

export async function runDemo(args: string[], out: (line: string) => void): Promise<number> {
  if (args.length > 0) throw new RoamError('INPUT_INVALID', `roam demo takes no arguments, got ${JSON.stringify(args[0])}`);
  const name = 'demo';
  const step = (text: string) => out(`\n== ${text}`);
  step('bringing up a 3-node edge cluster (nodes are network namespaces, agents are real `roam agent` processes)');
  await testbedDown(name, () => undefined);
  try {
    const tb = await testbedUp({ name, nodes: 3, underlayRate: undefined, say: (l) => out(`   ${l}`) });
    const api = { socketPath: tb.nodes[0]!.apiSocket };
    const readClientLog = () => callRaw(api, 'GET', '/v1/endpoints/client/logs');

    step('starting a stateful counter service on node1');
    const server = await callJson<EndpointRecord>(api, 'POST', '/v1/endpoints', { name: 'counter', node: 'node1', command: [process.execPath, workload('counter-server.js'), '--port', '7000'] });
    out(`   counter: ip ${server.ip}, mac ${server.mac} on ${server.node}`);

    step('starting a client on node3 that talks to the counter over the overlay');
    const client = await callJson<EndpointRecord>(api, 'POST', '/v1/endpoints', { name: 'client', node: 'node3', command: [process.execPath, workload('counter-client.js'), server.ip, '7000', '--interval-ms', '250'] });
    out(`   client: ip ${client.ip} on ${client.node}`);

    await sleep(2500);
    step('roam ps');
    const eps = await callJson<EndpointRecord[]>(api, 'GET', '/v1/endpoints');
    out(formatTable(['NAME', 'NODE', 'IP', 'MAC', 'PID', 'STATE'], eps.map((e) => [e.name, e.node, e.ip, e.mac, String(e.pid ?? '-'), e.state])).replace(/^/gm, '   '));

    step('traffic: the client\'s log (node3 -> VXLAN -> node1)');
    const clientLog = (await readClientLog()).trim().split('\n');
    for (const line of clientLog.slice(-6)) out(`   ${line}`);
    step("the server's log");
    for (const line of (await callRaw(api, 'GET', '/v1/endpoints/counter/logs')).trim().split('\n')) out(`   ${line}`);
    const replies = clientLog.filter((l) => l.startsWith('reply')).length;
    if (replies === 0) throw new RoamError('TESTBED', 'the client got no replies: the overlay is not carrying traffic');
    out(`\n   ${replies} round trips across the overlay so far, one connection.`);

    for (const to of ['node2', 'node3']) {
      step(`live migration of the counter to ${to}, while the client keeps talking`);
      const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'counter', to });
      const report = await followMigration(api, m, (l) => out(`   ${l}`));
      out(`   handover report: ${JSON.stringify(report)}`);
      if (report.result !== 'success') throw new RoamError('MIGRATION_FAILED', `migration to ${to}: ${report.reason ?? report.result}`);
      await sleep(1000);
    }

    step('the mobile client: the client moves from node3 to node1, and the counter follows it on its own');
    // Follow-the-client, with thresholds short enough to watch; the counter is light traffic (a request every 250 ms).
    await callJson(api, 'PUT', '/v1/endpoints/counter/policy', { policy: { followClient: { windowMs: 3000, sustainMs: 2000, minBytesPerSecond: 100 }, minDwellMs: 0 } });
    out('   counter policy: follow the client (move when over 70% of its traffic enters at one other node for 2 s)');
    const rttsOf = (text: string) => text.split('\n').map((l) => Number(/rtt ([\d.]+) ms/.exec(l)?.[1])).filter((x) => !Number.isNaN(x));
    await sleep(4000);
    // The client's log starts again on the node it moves to: what it logged on node3 is kept here.
    const logOnNode3 = await readClientLog();
    const moved = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: 'client', to: 'node1' });
    const clientReport = await followMigration(api, moved, () => undefined);
    if (clientReport.result !== 'success') throw new RoamError('MIGRATION_FAILED', `moving the client: ${clientReport.reason ?? clientReport.result}`);
    const clientMovedAt = performance.now();
    out(`   the client is now attached at node1 (frozen ${clientReport.frozen_ms} ms); its requests enter the overlay there`);
    let decisions: DecisionWire[] = [];
    while (!decisions.some((d) => d.outcome === 'moved')) {
      if (performance.now() - clientMovedAt > 60000) throw new RoamError('MIGRATION_FAILED', 'the counter did not follow its client within 60 s');
      await sleep(250);
      decisions = (await callJson<DecisionWire[]>(api, 'GET', '/v1/decisions')).filter((d) => d.endpoint === 'counter');
    }
    for (const d of decisions) out(`   decision on ${d.node}: ${d.outcome}${d.to ? ` ${d.to}` : ''}: ${d.reason}`);
    while ((await callJson<EndpointRecord[]>(api, 'GET', '/v1/endpoints')).find((e) => e.name === 'counter')?.node !== 'node1') {
      if (performance.now() - clientMovedAt > 90000) throw new RoamError('MIGRATION_FAILED', 'the counter did not arrive on node1');
      await sleep(100);
    }
    out(`   the counter arrived on node1 ${((performance.now() - clientMovedAt) / 1000).toFixed(1)} s after the client moved`);
    const acrossOverlay = rttsOf(await readClientLog());
    await sleep(4000);
    const rtts = rttsOf(await readClientLog());
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)] ?? NaN;
    out(`   client round trips, median: ${median(rttsOf(logOnNode3).slice(-12)).toFixed(2)} ms with both on node3; `
      + `${median(acrossOverlay.slice(2)).toFixed(2)} ms across the overlay while the counter was still on node3; `
      + `${median(rtts.slice(acrossOverlay.length + 2)).toFixed(2)} ms with both on node1 again`);
    out('   (the testbed\'s underlay adds no distance: the gap is VXLAN and the extra hop, not kilometres)');

    step('what the client saw');
    const countsOf = (text: string) => text.split('\n').filter((l) => l.startsWith('reply')).map((l) => Number(/count (\d+)/.exec(l)?.[1]));
    const before = countsOf(logOnNode3);
    const logOnNode1 = await readClientLog();
    const after = countsOf(logOnNode1);
    const log = `${logOnNode3}\n${logOnNode1}`.trim().split('\n');
    const answers = log.filter((l) => l.startsWith('reply'));
    const counts = [...before, ...after];
    // Each log counts on without a gap, and the one on node1 carries on from node3's (the counter's state moved too);
    // the answers between the copy of node3's log and the client's freeze are in neither.
    const consecutive = (xs: number[]) => xs.every((c, i) => i === 0 || c === xs[i - 1]! + 1);
    const unbroken = before[0] === 1 && consecutive(before) && consecutive(after) && after[0]! > before[before.length - 1]! && after[0]! <= before[before.length - 1]! + 20;
    const worst = Math.max(...answers.map((l) => Number(/rtt ([\d.]+)/.exec(l)?.[1] ?? 0)));
    const lost = log.filter((l) => l.startsWith('connection'));
    for (const line of log.filter((l) => l.startsWith('connected'))) out(`   ${line}`);
    out(`   ${answers.length} answers in its logs on node3 and node1, counting 1..${counts[counts.length - 1]}, one count after the other: ${unbroken ? 'yes' : 'NO'}`);
    out(`   longest wait for one answer: ${worst.toFixed(1)} ms`);
    out(`   connections lost or reconnected: ${lost.length === 0 ? 'none' : lost.join('; ')}`);
    if (!unbroken || lost.length > 0) throw new RoamError('MIGRATION_FAILED', 'the client noticed more than a stall');
  } finally {
    step('tearing down');
    await testbedDown(name, (l) => out(`   ${l}`));
  }
  return 0;
}
