/**
 * What roam reads back from CRIU's images after a dump:
 *  - tcp-stream-<inode>.img, per established connection: what was queued
 *    each way and which options it had negotiated (what was in flight when
 *    the service froze);
 *  - stats-dump: how many memory pages the dump wrote (to the images, or to
 *    a page server);
 *  - pagemap-<pid>.img: which memory a lazy (post-copy) dump kept back for
 *    the target to pull (entries flagged PE_LAZY).
 *
 * Layout: u32 magic (IMG_COMMON_MAGIC, or IMG_SERVICE_MAGIC for stats), u32
 * the image's own magic, u32 size, one protobuf entry (then, for tcp-stream,
 * the queued bytes). Field numbers are those of CRIU's images/tcp-stream.proto
 * and images/stats.proto; only the fields roam reads are declared.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { RoamError } from '../../errors/roam-error.js';

const IMG_COMMON_MAGIC = 0x54564319;
const IMG_SERVICE_MAGIC = 0x55105940;
const TCP_STREAM_MAGIC = 0x51465506;
const STATS_MAGIC = 0x57093306;
const PAGEMAP_MAGIC = 0x56084025;
const PE_LAZY = 1 << 1;
const PAGE_SIZE = 4096;
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

interface DecodedTcpStream {
  inqLen: number;
  outqLen: number;
  optMask: number;
  unsqLen?: number;
}

interface ProtoType<T> {
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: { defaults: boolean; longs: NumberConstructor }): T;
}

interface Protobuf {
  Type: new (name: string) => { add(field: unknown): unknown };
  Field: new (name: string, id: number, type: string, rule?: string) => unknown;
  Root: new () => { add(type: unknown): { lookupType(name: string): unknown } };
}

function protobuf(): Protobuf {
  return createRequire(import.meta.url)('protobufjs') as Protobuf;
}

interface DecodedPagemapEntry {
  compatNrPages: number;
  flags?: number;
  nrPages?: number;
}

let pagemapType: ProtoType<DecodedPagemapEntry> | undefined;
let tcpStreamType: ProtoType<DecodedTcpStream> | undefined;
let statsType: ProtoType<{ dump?: { pagesWritten?: number } }> | undefined;

function tcpStreamEntry(): ProtoType<DecodedTcpStream> {
  if (tcpStreamType) return tcpStreamType;
  const pb = protobuf();
  const t = new pb.Type('tcp_stream_entry');
  t.add(new pb.Field('inqLen', 1, 'uint32', 'required'));
  t.add(new pb.Field('inqSeq', 2, 'uint32', 'required'));
  t.add(new pb.Field('outqLen', 3, 'uint32', 'required'));
  t.add(new pb.Field('outqSeq', 4, 'uint32', 'required'));
  t.add(new pb.Field('optMask', 5, 'uint32', 'required'));
  t.add(new pb.Field('unsqLen', 12, 'uint32'));
  tcpStreamType = new pb.Root().add(t).lookupType('tcp_stream_entry') as ProtoType<DecodedTcpStream>;
  return tcpStreamType;
}

function statsEntry(): ProtoType<{ dump?: { pagesWritten?: number } }> {
  if (statsType) return statsType;
  const pb = protobuf();
  const dump = new pb.Type('dump_stats_entry');
  dump.add(new pb.Field('pagesWritten', 7, 'uint64'));
  const stats = new pb.Type('stats_entry');
  stats.add(new pb.Field('dump', 1, 'dump_stats_entry'));
  const root = new pb.Root();
  root.add(dump);
  statsType = root.add(stats).lookupType('stats_entry') as ProtoType<{ dump?: { pagesWritten?: number } }>;
  return statsType;
}

function pagemapEntry(): ProtoType<DecodedPagemapEntry> {
  if (pagemapType) return pagemapType;
  const pb = protobuf();
  const t = new pb.Type('pagemap_entry');
  t.add(new pb.Field('vaddr', 1, 'uint64', 'required'));
  t.add(new pb.Field('compatNrPages', 2, 'uint32', 'required'));
  t.add(new pb.Field('flags', 4, 'uint32'));
  t.add(new pb.Field('nrPages', 5, 'uint64'));
  pagemapType = new pb.Root().add(t).lookupType('pagemap_entry') as ProtoType<DecodedPagemapEntry>;
  return pagemapType;
}

/** The one protobuf entry of an image, after its two magics and its size. */
function entryOf(path: string, first: number, magic: number, what: string): Buffer {
  const b = readFileSync(path);
  if (b.length < 12 || b.readUInt32LE(0) !== first || b.readUInt32LE(4) !== magic) {
    throw new RoamError('CHECKPOINT_FAILED', `${path} is not a CRIU ${what} image`);
  }
  const size = b.readUInt32LE(8);
  if (12 + size > b.length) throw new RoamError('CHECKPOINT_FAILED', `${path}: entry of ${size} bytes runs past the end`);
  return b.subarray(12, 12 + size);
}

export function readTcpStream(path: string): DumpedTcpStream {
  const type = tcpStreamEntry();
  const e = type.toObject(type.decode(entryOf(path, IMG_COMMON_MAGIC, TCP_STREAM_MAGIC, 'tcp-stream')), { defaults: true, longs: Number });
  const unsent = e.unsqLen ?? 0;
  return {
    inqLen: e.inqLen,
    unackedLen: Math.max(0, e.outqLen - unsent),
    unsentLen: unsent,
    timestamps: (e.optMask & TCPI_OPT_TIMESTAMPS) !== 0,
    sack: (e.optMask & TCPI_OPT_SACK) !== 0,
  };
}

/** Bytes of memory the dump in `dir` wrote, wherever it wrote them (its stats-dump image). */
export function dumpedMemoryBytes(dir: string): number {
  const type = statsEntry();
  const e = type.toObject(type.decode(entryOf(join(dir, 'stats-dump'), IMG_SERVICE_MAGIC, STATS_MAGIC, 'stats')), { defaults: true, longs: Number });
  return (e.dump?.pagesWritten ?? 0) * PAGE_SIZE;
}

/** Every dumped connection's state, from the images in `dir`. */
export function readTcpStreams(dir: string): DumpedTcpStream[] {
  return readdirSync(dir).filter((f) => /^tcp-stream-[0-9a-f]+\.img$/.test(f)).map((f) => readTcpStream(join(dir, f)));
}

/** Bytes of memory a lazy dump in `dir` kept back (PE_LAZY pagemap entries): what the target pulls after it resumed. */
export function lazyMemoryBytes(dir: string): number {
  const type = pagemapEntry();
  let pages = 0;
  for (const f of readdirSync(dir).filter((name) => /^pagemap-\d+\.img$/.test(name))) {
    const path = join(dir, f);
    const b = readFileSync(path);
    if (b.length < 8 || b.readUInt32LE(0) !== IMG_COMMON_MAGIC || b.readUInt32LE(4) !== PAGEMAP_MAGIC) {
      throw new RoamError('CHECKPOINT_FAILED', `${path} is not a CRIU pagemap image`);
    }
    // The first entry is the pagemap_head; every one after it a pagemap_entry.
    let off = 8;
    for (let i = 0; off + 4 <= b.length; i++) {
      const size = b.readUInt32LE(off);
      if (off + 4 + size > b.length) throw new RoamError('CHECKPOINT_FAILED', `${path}: entry of ${size} bytes runs past the end`);
      if (i > 0) {
        const e = type.toObject(type.decode(b.subarray(off + 4, off + 4 + size)), { defaults: false, longs: Number });
        if (((e.flags ?? 0) & PE_LAZY) !== 0) pages += e.nrPages ?? e.compatNrPages;
      }
      off += 4 + size;
    }
  }
  return pages * PAGE_SIZE;
}
