/**
 * The TCP state CRIU wrote for each established connection it dumped
 * (tcp-stream-<inode>.img): what was queued each way and which options the
 * connection had negotiated. Read after a dump to say, exactly, what was in
 * flight when the service froze.
 *
 * Image layout: u32 IMG_COMMON_MAGIC, u32 TCP_STREAM_MAGIC, u32 size, one
 * tcp_stream_entry (protobuf), then the queued bytes. Field numbers are those
 * of CRIU's images/tcp-stream.proto.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { RoamError } from '../../errors/roam-error.js';

const IMG_COMMON_MAGIC = 0x54564319;
const TCP_STREAM_MAGIC = 0x51465506;
const TCPI_OPT_TIMESTAMPS = 1;
const TCPI_OPT_SACK = 2;

export interface DumpedTcpStream {
  /** received, not yet read by the service */
  inqLen: number;
  /** sent to the peer, not yet acknowledged by it */
  unackedLen: number;
  /** written by the service, not yet sent */
  unsentLen: number;
  timestamps: boolean;
  sack: boolean;
}

interface DecodedEntry {
  inqLen: number;
  outqLen: number;
  optMask: number;
  unsqLen?: number;
}

interface ProtoType {
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: { defaults: boolean }): DecodedEntry;
}

let entryType: ProtoType | undefined;

function tcpStreamEntry(): ProtoType {
  if (entryType) return entryType;
  const require = createRequire(import.meta.url);
  const protobuf = require('protobufjs') as {
    Type: new (name: string) => { add(field: unknown): unknown };
    Field: new (name: string, id: number, type: string, rule?: string) => unknown;
    Root: new () => { add(type: unknown): { lookupType(name: string): ProtoType } };
  };
  const t = new protobuf.Type('tcp_stream_entry');
  t.add(new protobuf.Field('inqLen', 1, 'uint32', 'required'));
  t.add(new protobuf.Field('inqSeq', 2, 'uint32', 'required'));
  t.add(new protobuf.Field('outqLen', 3, 'uint32', 'required'));
  t.add(new protobuf.Field('outqSeq', 4, 'uint32', 'required'));
  t.add(new protobuf.Field('optMask', 5, 'uint32', 'required'));
  t.add(new protobuf.Field('unsqLen', 12, 'uint32'));
  entryType = new protobuf.Root().add(t).lookupType('tcp_stream_entry');
  return entryType;
}

export function readTcpStream(path: string): DumpedTcpStream {
  const b = readFileSync(path);
  if (b.length < 12 || b.readUInt32LE(0) !== IMG_COMMON_MAGIC || b.readUInt32LE(4) !== TCP_STREAM_MAGIC) {
    throw new RoamError('CHECKPOINT_FAILED', `${path} is not a CRIU tcp-stream image`);
  }
  const size = b.readUInt32LE(8);
  if (12 + size > b.length) throw new RoamError('CHECKPOINT_FAILED', `${path}: entry of ${size} bytes runs past the end`);
  const type = tcpStreamEntry();
  const e = type.toObject(type.decode(b.subarray(12, 12 + size)), { defaults: true });
  const unsent = e.unsqLen ?? 0;
  return {
    inqLen: e.inqLen,
    unackedLen: Math.max(0, e.outqLen - unsent),
    unsentLen: unsent,
    timestamps: (e.optMask & TCPI_OPT_TIMESTAMPS) !== 0,
    sack: (e.optMask & TCPI_OPT_SACK) !== 0,
  };
}

/** Every dumped connection's state, from the images in `dir`. */
export function readTcpStreams(dir: string): DumpedTcpStream[] {
  return readdirSync(dir).filter((f) => /^tcp-stream-[0-9a-f]+\.img$/.test(f)).map((f) => readTcpStream(join(dir, f)));
}
