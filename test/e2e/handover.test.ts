/**
 * Zero-wait handover on the testbed: 110 clients streaming both ways through
 * every move, each byte checked; what the locks kept is delivered, every
 * connection is kicked, and each mechanism (full, replay, kick, off) does
 * what it says. The clients' node sends through a busy 20 Mbit/s link
 * (a bulk client keeps it busy), so their acknowledgements queue: the service
 * always has unacknowledged data on its way to them when it freezes, as
 * clients always have data on the way to it. How long clients wait is
 * measured by `npm run bench`, not asserted here.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { listTcpConnections } from '../../src/sys/netlink/sock-diag.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { cli, downClean, endpointLog, endpoints, migrate, run, streamAdvances, uniqueTestbedName, upTestbed, waitFor, workload } from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const CONNECTIONS = 110;
const ALL = CONNECTIONS + 2;

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3, '1gbit');
  const srv = await run(tb, 'node1', 'svc', [process.execPath, workload('echo-server.js'), '--port', '7001', '--hold-mb', '8']);
  await waitFor('svc to listen', () => endpointLog(tb, 'node1', 'svc').includes('listening'));
  execFileSync('tc', ['-n', `roam-${name}-node3`, 'qdisc', 'replace', 'dev', 'ul0', 'root', 'tbf', 'rate', '20mbit', 'burst', '32kb', 'latency', '50ms']);
  await run(tb, 'node3', 'clients', [process.execPath, workload('stream-check.js'), srv.ip, '7001', '--connections', String(CONNECTIONS), '--rate', '2000']);
  await run(tb, 'node3', 'bulk', [process.execPath, workload('stream-check.js'), srv.ip, '7001', '--connections', '2', '--rate', '150000']);
  await waitFor('all connections', () => endpointLog(tb, 'node3', 'clients').includes(`"connected":${CONNECTIONS}`));
  await streamAdvances(tb, 'node3', 'clients', 20000);
});

test.after.always(() => downClean(name));

// The service and its clients are the file's one fixture, deliberately (110 connections through a busy link
// take a while to build): each test moves the service from wherever it is, between node1 and node2.

/** The node the service runs on now. */
async function whereIs(): Promise<string> {
  return (await endpoints(tb)).find((e) => e.name === 'svc')!.node;
}

const otherThan = (node: string) => (node === 'node1' ? 'node2' : 'node1');

async function move(handover: string) {
  return migrate(name, 'svc', otherThan(await whereIs()), ['--handover', handover]);
}

function netnsOf(nodeName: string): string {
  return `${tb.nodes.find((n) => n.name === nodeName)!.stateDir}/netns/svc`;
}

test.serial('full: data in flight both ways at the freeze (every client to the service, the service to many clients) all arrives; every connection is kicked; every byte is exact', async (t) => {
  // Whether the service has unacknowledged data out at the instant it freezes is up to timing: move until a
  // freeze catches some (every move is checked in full on the way), at most five times.
  let caughtInFlight = false;
  for (let attempt = 0; attempt < 5 && !caughtInFlight; attempt++) {
    const report = await move('full');
    t.is(report.result, 'success', report.reason);
    t.is(report.tcp_connections, ALL);
    const h = report.handover!;
    t.is(h.mechanism, 'full');
    t.true(h.packets_held >= CONNECTIONS, `${h.packets_held} packets kept by the locks`);
    t.is(h.packets_replayed, h.packets_held, 'every kept packet delivered');
    t.like(h, { packets_refused: 0, packets_not_held: 0, connections_fallback: 0 });
    t.is(h.connections_replayed, ALL, 'every client had sent data the frozen service had not received');
    t.is(h.connections_kicked, report.tcp_connections);
    t.log(`move ${attempt + 1}: in flight at the freeze ${JSON.stringify(report.tcp_in_flight)}; handover ${JSON.stringify(h)}`);
    caughtInFlight = (report.tcp_in_flight?.unacked_to_client ?? 0) > 0;
    t.like(report.tcp_in_flight, { timestamps: report.tcp_connections, sack: report.tcp_connections }, 'timestamps and SACK on every connection');
    t.is((report.client_stall?.connections ?? 0) + (report.client_stall?.idle ?? 0), ALL, 'every client measured (or seen idle)');
    t.true((report.client_stall?.connections ?? 0) >= CONNECTIONS / 2);
    const restored = await listTcpConnections(netnsOf(report.running_on));
    t.true(restored.length === ALL && restored.every((c) => c.timestamps && c.sack), 'the restored sockets kept timestamps and SACK');
    const after = await streamAdvances(tb, 'node3', 'clients', 40000, 20000);
    t.is(after.open, CONNECTIONS);
    await streamAdvances(tb, 'node3', 'bulk', 200000, 20000);
  }
  t.true(caughtInFlight, 'a freeze caught the service with data its clients had not acknowledged yet');
});

test.serial('replay alone delivers but kicks nothing; kick alone kicks but keeps nothing; off does neither; the streams survive each', async (t) => {
  const replay = await move('replay');
  t.is(replay.result, 'success', replay.reason);
  t.like(replay.handover, { mechanism: 'replay', packets_refused: 0, connections_kicked: 0, connections_fallback: replay.tcp_connections });
  t.true(replay.handover!.packets_replayed >= CONNECTIONS);
  await streamAdvances(tb, 'node3', 'clients', 20000, 20000);

  const kick = await move('kick');
  t.is(kick.result, 'success', kick.reason);
  t.like(kick.handover, { mechanism: 'kick', packets_held: 0, packets_replayed: 0, connections_kicked: kick.tcp_connections, connections_fallback: 0 });
  await streamAdvances(tb, 'node3', 'clients', 20000, 20000);

  const off = await move('off');
  t.is(off.result, 'success', off.reason);
  t.like(off.handover, { mechanism: 'off', packets_held: 0, packets_replayed: 0, connections_kicked: 0, connections_fallback: off.tcp_connections });
  const after = await streamAdvances(tb, 'node3', 'clients', 20000, 20000);
  t.is(after.open, CONNECTIONS);
  t.is(await whereIs(), off.running_on);
});

test.serial('an unknown mechanism is refused before anything moves', async (t) => {
  const where = await whereIs();
  const r = await cli(['migrate', '--testbed', name, 'svc', '--to', otherThan(where), '--handover', 'teleport']);
  t.not(r.code, 0);
  t.regex(r.err, /handover/);
  t.is(await whereIs(), where);
});
