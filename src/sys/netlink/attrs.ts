/** Encoding helpers for the nested attributes `netlink` leaves as raw Buffers. */
import { AttrStream, type StreamData } from 'netlink';

export function streamToBuffer(data: StreamData): Buffer {
  const out = new AttrStream();
  out.emit(data);
  return Buffer.concat(out.bufs);
}

/** A sequence of (type, payload) attributes, each 4-byte aligned. */
export function encodeAttrs(attrs: ReadonlyArray<readonly [number, Uint8Array]>): Buffer {
  const out = new AttrStream();
  for (const [type, payload] of attrs) out.push(type, payload);
  return Buffer.concat(out.bufs);
}

export function u8(v: number): Buffer {
  return Buffer.from([v]);
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
