/**
 * IPv4/TCP packets as the handover sees them: the ones a lock held (checked
 * before they are delivered again) and the one probe it builds itself.
 *
 * A held packet is delivered only if it is exactly what its sender sent.
 * Packets that left a local sender with checksum offload carry only the
 * pseudo-header sum in their TCP checksum field (and GRO-merged ones too);
 * their checksum is completed over the bytes as they are. Any other packet
 * whose checksum does not verify is refused: it was damaged, and the
 * sender's own retransmission will repair it.
 */
import { formatIp, parseIp } from '../net/ip.js';

const IPPROTO_TCP = 6;
export const TCP_SYN = 0x02;

export interface TcpPacket {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  seq: number;
  payloadLength: number;
}

export type Checked =
  | { ok: true; packet: Buffer; completed: boolean; /** "src:sport>dst:dport", addresses as numbers */ flow: string }
  | { ok: false; reason: 'not-ipv4-tcp' | 'truncated' | 'fragment' | 'bad-checksum' | 'not-for-endpoint' };

/** One's-complement sum of 16-bit big-endian words, folded (not inverted). */
function sum16(buf: Buffer, start: number, end: number, initial = 0): number {
  let s = initial;
  let i = start;
  // Fold every 64 Ki words so the sum stays a small integer (fast path in V8).
  while (i + 1 < end) {
    const stop = Math.min(end - 1, i + 65536);
    for (; i < stop; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
    s = (s & 0xffff) + (s >>> 16);
  }
  if (i < end) s += buf[i]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function pseudoHeaderSum(ip: Buffer, tcpLength: number): number {
  let s = sum16(ip, 12, 20) + IPPROTO_TCP + tcpLength;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function ipHeaderChecksum(ip: Buffer, headerLength: number): number {
  const saved = ip.readUInt16BE(10);
  ip.writeUInt16BE(0, 10);
  const c = ~sum16(ip, 0, headerLength) & 0xffff;
  ip.writeUInt16BE(saved, 10);
  return c;
}

function tcpFields(p: Buffer, ihl: number, total: number): TcpPacket {
  const dataOffset = (p[ihl + 12]! >> 4) * 4;
  return {
    src: formatIp(p.subarray(12, 16)),
    dst: formatIp(p.subarray(16, 20)),
    sport: p.readUInt16BE(ihl),
    dport: p.readUInt16BE(ihl + 2),
    seq: p.readUInt32BE(ihl + 4),
    flags: p[ihl + 13]!,
    payloadLength: total - ihl - dataOffset,
  };
}

/**
 * Checks a packet copied off the lock, and completes its checksums in place;
 * returns it ready to deliver, or why it must not be delivered. With `to`,
 * only packets addressed to that IPv4 address pass.
 */
export function checkHeldPacket(raw: Buffer, to?: Uint8Array): Checked {
  if (raw.length < 20 || raw[0]! >> 4 !== 4 || raw[9] !== IPPROTO_TCP) return { ok: false, reason: 'not-ipv4-tcp' };
  const ihl = (raw[0]! & 0x0f) * 4;
  const total = raw.readUInt16BE(2);
  if (ihl < 20 || total < ihl + 20 || raw.length < total) return { ok: false, reason: 'truncated' };
  const fragment = raw.readUInt16BE(6) & 0x3fff;
  if (fragment !== 0) return { ok: false, reason: 'fragment' };
  if (to && (raw[16] !== to[0] || raw[17] !== to[1] || raw[18] !== to[2] || raw[19] !== to[3])) return { ok: false, reason: 'not-for-endpoint' };
  const p = raw.subarray(0, total);
  const dataOffset = (p[ihl + 12]! >> 4) * 4;
  if (dataOffset < 20 || ihl + dataOffset > total) return { ok: false, reason: 'truncated' };
  const tcpLength = total - ihl;
  const pseudo = pseudoHeaderSum(p, tcpLength);
  let completed = false;
  if (sum16(p, ihl, total, pseudo) !== 0xffff) {
    // Offloaded: the field holds the pseudo-header sum, the rest is the sender's to fill.
    if (p.readUInt16BE(ihl + 16) !== pseudo) return { ok: false, reason: 'bad-checksum' };
    p.writeUInt16BE(0, ihl + 16);
    p.writeUInt16BE(~sum16(p, ihl, total, pseudo) & 0xffff, ihl + 16);
    completed = true;
  }
  const ipSum = ipHeaderChecksum(p, ihl);
  if (p.readUInt16BE(10) !== ipSum) p.writeUInt16BE(ipSum, 10);
  const flow = `${p.readUInt32BE(12)}:${p.readUInt16BE(ihl)}>${p.readUInt32BE(16)}:${p.readUInt16BE(ihl + 2)}`;
  return { ok: true, packet: p, completed, flow };
}

export function parseTcpPacket(p: Buffer): TcpPacket {
  return tcpFields(p, (p[0]! & 0x0f) * 4, p.readUInt16BE(2));
}

/**
 * A bare SYN from `peer` to `local` (no options, no data). Delivered to an
 * established socket, the kernel discards it and answers with a challenge
 * ACK (RFC 5961 4.2) built from the socket's own state: its sequence and
 * acknowledgement numbers, window, timestamps and SACK blocks. Nothing in
 * the probe is taken for state, so its sequence number does not matter.
 */
export function synProbe(peer: { ip: string; port: number }, local: { ip: string; port: number }): Buffer {
  const p = Buffer.alloc(40);
  p.writeUInt8(0x45, 0);
  p.writeUInt16BE(40, 2);
  p.writeUInt16BE(0x4000, 6); // don't fragment
  p.writeUInt8(64, 8);
  p.writeUInt8(IPPROTO_TCP, 9);
  Buffer.from(parseIp(peer.ip)).copy(p, 12);
  Buffer.from(parseIp(local.ip)).copy(p, 16);
  p.writeUInt16BE(ipHeaderChecksum(p, 20), 10);
  p.writeUInt16BE(peer.port, 20);
  p.writeUInt16BE(local.port, 22);
  p.writeUInt8(5 << 4, 32);
  p.writeUInt8(TCP_SYN, 33);
  p.writeUInt16BE(0, 34);
  p.writeUInt16BE(~sum16(p, 20, 40, pseudoHeaderSum(p, 20)) & 0xffff, 36);
  return p;
}
