/** The handover's packet checks: exact packets pass, offloaded checksums are completed, anything else is refused. */
import test from 'ava';
import { checkHeldPacket, parseTcpPacket, synProbe, TCP_SYN } from '../../src/handover/packets.js';
import { parseHoldOutput, serializeHeld } from '../../src/sys/packet-hold.js';

const server = { ip: '10.244.1.1', port: 7001 };
const client = { ip: '10.244.3.1', port: 40000 };

/** One's-complement check over IPv4 pseudo-header + TCP segment, independent of the code under test. */
function tcpChecksumValid(p: Buffer): boolean {
  const ihl = (p[0]! & 15) * 4;
  const total = p.readUInt16BE(2);
  const seg = p.subarray(ihl, total);
  const pseudo = Buffer.concat([p.subarray(12, 20), Buffer.from([0, 6, seg.length >> 8, seg.length & 255])]);
  const all = Buffer.concat([pseudo, seg, seg.length % 2 ? Buffer.from([0]) : Buffer.alloc(0)]);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += all.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

/** A data segment from the client, built from a probe: ACK|PSH, `payload`, checksum complete. */
function dataSegment(payload: string): Buffer {
  const probe = synProbe(client, server);
  const p = Buffer.concat([probe, Buffer.from(payload)]);
  p.writeUInt16BE(p.length, 2);
  p.writeUInt8(0x18, 33);
  p.writeUInt32BE(123456, 24);
  return completeForTest(p);
}

function completeForTest(p: Buffer): Buffer {
  // Set the IP header checksum and a full TCP checksum the slow way.
  p.writeUInt16BE(0, 10);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += p.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p.writeUInt16BE(~s & 0xffff, 10);
  p.writeUInt16BE(0, 36);
  for (let c = 0; c <= 0xffff; c++) {
    p.writeUInt16BE(c, 36);
    if (tcpChecksumValid(p)) return p;
  }
  throw new Error('no checksum');
}

test('a bare SYN probe from the peer to the restored socket: valid checksums, no options, no data', (t) => {
  const p = synProbe(client, server);
  t.is(p.length, 40);
  t.true(tcpChecksumValid(p));
  t.like(parseTcpPacket(p), { src: client.ip, dst: server.ip, sport: client.port, dport: server.port, flags: TCP_SYN, payloadLength: 0 });
  const c = checkHeldPacket(Buffer.from(p));
  t.true(c.ok && !c.completed);
});

test('an exact packet passes untouched; one for another address is refused', (t) => {
  const p = dataSegment('hello, world');
  const copy = Buffer.from(p);
  const c = checkHeldPacket(p, new Uint8Array([10, 244, 1, 1]));
  t.true(c.ok);
  if (c.ok) t.deepEqual(c.packet, copy);
  t.deepEqual(checkHeldPacket(Buffer.from(p), new Uint8Array([10, 244, 1, 2])), { ok: false, reason: 'not-for-endpoint' });
});

test('an offloaded packet (pseudo-header sum in the checksum field) gets its checksum completed over the same bytes', (t) => {
  const p = dataSegment('offloaded payload!');
  const payload = Buffer.from(p.subarray(40));
  // What a sender with checksum offload hands the stack: the folded pseudo-header sum.
  let s = p.readUInt16BE(12) + p.readUInt16BE(14) + p.readUInt16BE(16) + p.readUInt16BE(18) + 6 + (p.length - 20);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p.writeUInt16BE(s, 36);
  t.false(tcpChecksumValid(p));
  const c = checkHeldPacket(p);
  t.true(c.ok && c.completed);
  if (c.ok) {
    t.true(tcpChecksumValid(c.packet));
    t.deepEqual(c.packet.subarray(40), payload, 'payload unchanged');
  }
});

test('a damaged packet, a truncated one, a fragment and a non-TCP one are refused', (t) => {
  const p = dataSegment('some bytes here');
  p[45] ^= 0x01;
  t.deepEqual(checkHeldPacket(p), { ok: false, reason: 'bad-checksum' });
  const q = dataSegment('some bytes here');
  t.deepEqual(checkHeldPacket(q.subarray(0, q.length - 3)), { ok: false, reason: 'truncated' });
  const f = dataSegment('fragment');
  f.writeUInt16BE(0x2000, 6);
  t.deepEqual(checkHeldPacket(f), { ok: false, reason: 'fragment' });
  const u = dataSegment('udp');
  u[9] = 17;
  t.deepEqual(checkHeldPacket(u), { ok: false, reason: 'not-ipv4-tcp' });
  t.deepEqual(checkHeldPacket(Buffer.alloc(10)), { ok: false, reason: 'not-ipv4-tcp' });
});

test("held packets travel between agents in roam-hold's own format, and a cut-off message is refused", (t) => {
  const held = { packets: [dataSegment('a'), dataSegment('bb')], stats: { kept: 2, bytes: 83, overBudget: 1, lost: 2, overruns: 0 } };
  const wire = serializeHeld(held);
  const back = parseHoldOutput(wire);
  t.deepEqual(back.stats, held.stats);
  t.deepEqual(back.packets.map((p) => Buffer.from(p)), held.packets);
  t.throws(() => parseHoldOutput(wire.subarray(0, wire.length - 5)), { message: /counters/ });
  t.throws(() => parseHoldOutput(wire.subarray(0, 30)), { message: /inside a packet/ });
  t.throws(() => parseHoldOutput(Buffer.alloc(2)), { message: /terminator/ });
});
