/**
 * The handover against the real kernel, without CRIU: a server is stopped
 * and its namespace locked (as at a freeze) while a client keeps streaming;
 * what the lock drops is kept by roam-hold, then delivered to the server's
 * socket and every connection kicked. The kernel's own counters say what
 * happened to each packet; the client verifies every byte.
 */
import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { resumeService } from '../../src/handover/resume.js';
import { HOLD_GROUP, LOCK_TABLE, isNetnsLocked, lockNetns, nftRun, unlockNetns } from '../../src/sys/nft.js';
import { listTcpConnections } from '../../src/sys/netlink/sock-diag.js';
import { PacketHold, type HeldPackets } from '../../src/sys/packet-hold.js';
import { processTree } from '../../src/sys/proc.js';
import { checkHeldPacket } from '../../src/handover/packets.js';
import { inNs } from '../helpers/netns.js';
import { echoWithClient, nodeWithManager } from '../helpers/node.js';
import { requireRoot } from '../helpers/root.js';
import { waitFor } from '../helpers/wait.js';
import { streamVerifies } from '../helpers/workloads.js';

test.before(() => requireRoot());

function kernelCounters(netns: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of inNs(netns, ['nstat', '-az']).split('\n')) {
    const [name, value] = line.trim().split(/\s+/);
    if (name && value && /^\d+$/.test(value)) out[name] = Number(value);
  }
  return out;
}

async function streamingPair(t: ExecutionContext, prefix: string, connections: number) {
  const { manager: m } = await nodeWithManager(t, prefix);
  return { m, ...(await echoWithClient(m, connections)) };
}

function freeze(pid: number): void {
  for (const p of processTree(pid)) process.kill(p, 'SIGSTOP');
}

/** A hold on the server's namespace (closed when the test ends), then the server frozen and its namespace locked, as at a migration's freeze. */
async function frozenWithHold(t: ExecutionContext, srv: { pid?: number; netns?: string }): Promise<PacketHold> {
  const hold = await PacketHold.start(srv.netns!, HOLD_GROUP, 1 << 20);
  t.teardown(() => hold.close());
  freeze(srv.pid!);
  lockNetns(srv.netns!);
  return hold;
}

test('what the lock drops during a freeze is kept, delivered to the restored sockets and every connection kicked; the streams stay exact', async (t) => {
  const { srv, log } = await streamingPair(t, 'ho', 4);
  const conns = await listTcpConnections(srv.netns!);
  t.is(conns.length, 4);
  t.true(conns.every((c) => c.timestamps && c.sack), 'timestamps and SACK negotiated');
  const hold = await frozenWithHold(t, srv);
  const before = kernelCounters(srv.netns!);
  await sleep(400); // the freeze: the clients send into the lock meanwhile
  const held = await hold.drain();
  t.true(held.packets.length >= 4, `${held.packets.length} packets kept`);
  t.is(held.stats.kept, held.packets.length);
  t.is(held.stats.lost + held.stats.overBudget + held.stats.overruns, 0);
  t.true(held.packets.every((p) => checkHeldPacket(Buffer.from(p), new Uint8Array(srv.ip.split('.').map(Number))).ok), 'every kept packet is an exact TCP packet for the server');
  t.is(kernelCounters(srv.netns!).TcpInSegs, before.TcpInSegs, 'nothing reached the server while locked');

  const counts = await resumeService({ netns: srv.netns!, ip: srv.ip, mechanism: 'full', held: [held], hold, connections: 4, pid: srv.pid!, stopped: true });
  t.false(isNetnsLocked(srv.netns!));
  t.like(counts, { mechanism: 'full', packets_refused: 0, packets_not_held: 0, connections_kicked: 4, connections_fallback: 0 });
  t.true(counts.packets_held >= held.packets.length, 'what was drained, and what reached the lock after that');
  t.is(counts.packets_replayed, counts.packets_held);
  t.true(counts.connections_replayed >= 1 && counts.connections_replayed <= 4);
  const after = kernelCounters(srv.netns!);
  t.true(after.TcpInSegs! - before.TcpInSegs! >= held.packets.length + 4, 'the kernel received every delivered packet and every probe');
  t.is(after.TcpExtTCPSYNChallenge! - (before.TcpExtTCPSYNChallenge ?? 0), 4, 'each kick answered with a challenge ACK');
  t.is((after.TcpInCsumErrors ?? 0) - (before.TcpInCsumErrors ?? 0), 0);
  t.is((after.TcpExtPAWSEstab ?? 0) - (before.TcpExtPAWSEstab ?? 0), 0, 'no delivered packet was older than what the socket had seen');

  await t.notThrowsAsync(streamVerifies('cli', log, 20000, 20000), 'the client keeps getting its echo, every byte exact');
});

test('with the handover off the lock only drops: nothing is kept, delivered or kicked, and retransmission carries the streams', async (t) => {
  const { srv, log } = await streamingPair(t, 'hoff', 2);
  freeze(srv.pid!);
  lockNetns(srv.netns!);
  lockNetns(srv.netns!);
  t.is((nftRun(srv.netns!, 'test.list', `list table inet ${LOCK_TABLE}`).match(/log group/g) ?? []).length, 1, 'locking twice writes the lock once');
  const before = kernelCounters(srv.netns!);
  await sleep(300); // the freeze
  const counts = await resumeService({ netns: srv.netns!, ip: srv.ip, mechanism: 'off', held: [], connections: 2, pid: srv.pid!, stopped: true });
  t.like(counts, { packets_held: 0, packets_replayed: 0, connections_kicked: 0, connections_fallback: 2 });
  t.false(isNetnsLocked(srv.netns!));
  t.notThrows(() => unlockNetns(srv.netns!), 'lifting a lifted lock is no error');
  t.false(isNetnsLocked(srv.netns!), 'and leaves no table behind');
  t.is((kernelCounters(srv.netns!).TcpExtTCPSYNChallenge ?? 0) - (before.TcpExtTCPSYNChallenge ?? 0), 0);
  await t.notThrowsAsync(streamVerifies('cli', log, 20000, 20000), 'retransmission carries the streams, every byte exact');
});

test('a hold keeps going after a drain: each drain gives what arrived since the last one, and closing it ends roam-hold', async (t) => {
  const { srv } = await streamingPair(t, 'hdrain', 1);
  const hold = await frozenWithHold(t, srv);
  await sleep(300); // the freeze
  const first = await hold.drain();
  // The client's next packet is a retransmission whose timer backs off
  // (200 ms, 400 ms, ...), so a fixed window can fall between two of them:
  // drain until one arrives.
  const later: HeldPackets[] = [];
  await waitFor('a retransmission in the hold', async () => {
    later.push(await hold.drain());
    return later.some((d) => d.packets.length > 0);
  }, 20000).catch(() => undefined);
  const laterPackets = later.flatMap((d) => d.packets);
  t.true(first.packets.length > 0 && laterPackets.length > 0, `${first.packets.length} then ${laterPackets.length} in ${later.length} drains`);
  t.is(first.stats.kept, first.packets.length);
  t.true(later.every((d) => d.stats.kept === d.packets.length), 'counters are per drain');
  t.false(laterPackets.some((p) => first.packets.some((q) => q.equals(p))), 'nothing drained twice');
  const counts = await resumeService({ netns: srv.netns!, ip: srv.ip, mechanism: 'full', held: [first, ...later], connections: 1, pid: srv.pid!, stopped: true });
  t.is(counts.packets_replayed, first.packets.length + laterPackets.length);
  hold.close();
  await t.throwsAsync(waitFor('a drain to fail', async () => {
    await hold.drain();
    return false;
  }, 5000), { message: /has ended|did not answer/ });
});
