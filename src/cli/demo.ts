/**
 * `npm run demo`: a 3-node edge cluster on this machine, a stateful TCP
 * service on node1, a client on node3 talking to it across the VXLAN
 * overlay; then the service moves node1 -> node2 -> node3 while the client
 * keeps talking over the same connection, and everything is torn down.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { callJson, callRaw } from '../api/http-client.js';
import type { EndpointRecordWire } from '../api/schemas.js';
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

    step('starting a stateful counter service on node1');
    const server = await callJson<EndpointRecordWire>(api, 'POST', '/v1/endpoints', { name: 'counter', node: 'node1', command: [process.execPath, workload('counter-server.js'), '--port', '7000'] });
    out(`   counter: ip ${server.ip}, mac ${server.mac} on ${server.node}`);

    step('starting a client on node3 that talks to the counter over the overlay');
    const client = await callJson<EndpointRecordWire>(api, 'POST', '/v1/endpoints', { name: 'client', node: 'node3', command: [process.execPath, workload('counter-client.js'), server.ip, '7000', '--interval-ms', '250'] });
    out(`   client: ip ${client.ip} on ${client.node}`);

    await sleep(2500);
    step('roam ps');
    const eps = await callJson<EndpointRecordWire[]>(api, 'GET', '/v1/endpoints');
    out(formatTable(['NAME', 'NODE', 'IP', 'MAC', 'PID', 'STATE'], eps.map((e) => [e.name, e.node, e.ip, e.mac, String(e.pid ?? '-'), e.state])).replace(/^/gm, '   '));

    step('traffic: the client\'s log (node3 -> VXLAN -> node1)');
    const clientLog = (await callRaw(api, 'GET', '/v1/endpoints/client/logs')).trim().split('\n');
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

    step('what the client saw');
    const log = (await callRaw(api, 'GET', '/v1/endpoints/client/logs')).trim().split('\n');
    const answers = log.filter((l) => l.startsWith('reply'));
    const counts = answers.map((l) => Number(/count (\d+)/.exec(l)?.[1]));
    const unbroken = counts.every((c, i) => c === i + 1);
    const worst = Math.max(...answers.map((l) => Number(/rtt ([\d.]+)/.exec(l)?.[1] ?? 0)));
    const lost = log.filter((l) => l.startsWith('connection'));
    for (const line of log.filter((l) => l.startsWith('connected'))) out(`   ${line}`);
    out(`   ${answers.length} answers, counting 1..${counts[counts.length - 1]} without a gap: ${unbroken ? 'yes' : 'NO'}`);
    out(`   longest wait for one answer: ${worst.toFixed(1)} ms`);
    out(`   connections lost or reconnected: ${lost.length === 0 ? 'none' : lost.join('; ')}`);
    if (!unbroken || lost.length > 0) throw new RoamError('MIGRATION_FAILED', 'the client noticed more than a stall');
  } finally {
    step('tearing down');
    await testbedDown(name, (l) => out(`   ${l}`));
  }
  return 0;
}
