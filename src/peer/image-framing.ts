/**
 * Checkpoint images travel agent to agent over the peer protocol: every
 * image file of a dump in one streamed PUT, each framed as
 *
 *   u16 name length | name (UTF-8) | u64 size | size bytes
 *
 * (big-endian), and the SHA-256 of the whole body in an HTTP trailer,
 * computed while sending and checked while receiving. One request, not one
 * per file: a dump is dozens of small files, and inside the frozen window
 * each extra round trip counts. No shared storage, no second read.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, readdirSync, rmSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { RoamError, SysError } from '../errors/roam-error.js';
import { boundedChunks, type BodyBounds } from '../http/bounded-body.js';
import { errorFromBody, requestTo, type TlsMaterial } from '../http/client.js';

export const IMAGE_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TRAILER = 'x-roam-sha256';
/** An upload that moves nothing for this long is given up (a cut link): the migration rolls back. */
const UPLOAD_IDLE_MS = 15000;
/** Writes are gathered up to this size. */
const WRITE_BYTES = 256 * 1024;
/** More files than any dump writes: a bound against a sender that never stops. */
const MAX_FILES = 100000;

/** runc's record of a container's stdio at the dump, which its restore reads beside CRIU's images. */
const RUNC_DESCRIPTORS = 'descriptors.json';

/** The files of a dump that the target needs (CRIU's images and runc's descriptors, not the logs). */
export function imageFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => (f.endsWith('.img') || f === RUNC_DESCRIPTORS) && statSync(join(dir, f)).isFile()).sort();
}

function frameHeader(name: string, size: number): Buffer {
  const n = Buffer.from(name, 'utf8');
  const h = Buffer.alloc(2 + n.length + 8);
  h.writeUInt16BE(n.length, 0);
  n.copy(h, 2);
  h.writeBigUInt64BE(BigInt(size), 2 + n.length);
  return h;
}

/** Sends every image of `dir` to the target's arrival `id`; resolves with the image bytes sent. */
export function sendImages(dir: string, target: { host: string; port: number; tls?: TlsMaterial }, id: string): Promise<number> {
  const files = imageFiles(dir).map((name) => ({ name, size: statSync(join(dir, name)).size }));
  const urlPath = `/peer/v1/migrations/${encodeURIComponent(id)}/images`;
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const req = requestTo(target, { method: 'PUT', path: urlPath, timeout: UPLOAD_IDLE_MS, headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', trailer: TRAILER } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if ((res.statusCode ?? 500) < 300) return resolve(bytes);
        reject(errorFromBody(res.statusCode ?? 500, Buffer.concat(chunks).toString('utf8'), `image upload to ${target.host}:${target.port}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new RoamError('PEER_UNREACHABLE', `image upload to ${target.host}:${target.port}: ${err.code ?? err.message}`)));
    // Small frames are gathered into larger writes: one write per header and small file meant a TLS record
    // and a syscall each, dozens of them inside the frozen window.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = (): Promise<void> => {
      if (pendingBytes === 0) return Promise.resolve();
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      return req.write(chunk) ? Promise.resolve() : new Promise((r) => req.once('drain', r));
    };
    const send = (chunk: Buffer): Promise<void> => {
      hash.update(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      return pendingBytes >= WRITE_BYTES ? flush() : Promise.resolve();
    };
    void (async () => {
      for (const f of files) {
        await send(frameHeader(f.name, f.size));
        let sent = 0;
        for await (const chunk of createReadStream(join(dir, f.name), { end: Math.max(0, f.size - 1) }) as AsyncIterable<Buffer>) {
          if (f.size === 0) break;
          sent += chunk.length;
          await send(chunk);
        }
        if (sent !== f.size) throw new Error(`${f.name} changed while being sent (${sent} of ${f.size} bytes)`);
        bytes += f.size;
      }
      await flush();
      req.addTrailers({ [TRAILER]: hash.digest('hex') });
      req.end();
    })().catch((err: unknown) => req.destroy(err instanceof Error ? err : new Error(String(err))));
  });
}

/** A file-system failure here (a full disk, say) as the errno, operation and file it hit. */
function fsError(err: unknown, op: string, target: string): unknown {
  const e = err as NodeJS.ErrnoException;
  return typeof e.errno === 'number' ? new SysError({ errno: -e.errno, syscall: e.syscall ?? 'write', op, target }, { cause: err }) : err;
}

/** Reads exact byte counts from a stream of chunks. */
class Framed {
  private buffered: Buffer = Buffer.alloc(0);
  private readonly source: AsyncIterator<Buffer>;

  constructor(body: AsyncIterable<Buffer>, private readonly hash: Hash) {
    this.source = body[Symbol.asyncIterator]();
  }

  /** The next chunk of at most `max` bytes; undefined at the end of the body. */
  private async next(max: number): Promise<Buffer | undefined> {
    if (this.buffered.length === 0) {
      const r = await this.source.next();
      if (r.done) return undefined;
      this.hash.update(r.value);
      this.buffered = r.value;
    }
    const out = this.buffered.subarray(0, max);
    this.buffered = this.buffered.subarray(out.length);
    return out;
  }

  /** At a frame boundary: true if the body has ended. */
  async atEnd(): Promise<boolean> {
    if (this.buffered.length > 0) return false;
    const chunk = await this.next(Infinity);
    if (!chunk) return true;
    this.buffered = chunk;
    return false;
  }

  async exact(n: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const c = await this.next(n - got);
      if (!c) throw new RoamError('INPUT_INVALID', `image upload cut off in ${what} (${got} of ${n} bytes)`);
      parts.push(c);
      got += c.length;
    }
    return Buffer.concat(parts, n);
  }

  /** Passes the next `n` bytes to `write`, chunk by chunk. */
  async copy(n: number, what: string, write: (c: Buffer) => Promise<unknown>): Promise<void> {
    let got = 0;
    while (got < n) {
      const c = await this.next(n - got);
      if (!c) throw new RoamError('INPUT_INVALID', `image upload cut off in ${what} (${got} of ${n} bytes)`);
      await write(c);
      got += c.length;
    }
  }
}

/**
 * Writes every image of an upload into `dir`, then checks the whole body
 * against the sender's checksum. On any failure the files it wrote are
 * removed: an arrival never restores from a partial or damaged set.
 */
export async function receiveImages(dir: string, body: IncomingMessage, bounds: BodyBounds, what: string): Promise<{ files: number; bytes: number }> {
  const hash = createHash('sha256');
  const framed = new Framed(boundedChunks(body, bounds, what), hash);
  const written: string[] = [];
  let bytes = 0;
  try {
    while (!(await framed.atEnd())) {
      if (written.length >= MAX_FILES) throw new RoamError('INPUT_INVALID', `image upload: more than ${MAX_FILES} files`);
      const nameLength = (await framed.exact(2, 'a file name length')).readUInt16BE(0);
      const name = (await framed.exact(nameLength, 'a file name')).toString('utf8');
      if (!IMAGE_FILE_PATTERN.test(name)) throw new RoamError('INPUT_INVALID', `image file name ${JSON.stringify(name)} is not allowed`);
      if (written.includes(name)) throw new RoamError('INPUT_INVALID', `image ${name} sent twice`);
      const size = (await framed.exact(8, `the size of ${name}`)).readBigUInt64BE(0);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new RoamError('INPUT_INVALID', `image ${name}: size ${size} is not believable`);
      written.push(name);
      const path = join(dir, name);
      const file: FileHandle = await open(path, 'wx').catch((err: unknown) => Promise.reject(fsError(err, 'images.create', path)));
      try {
        await framed.copy(Number(size), name, (c) => file.write(c).catch((err: unknown) => Promise.reject(fsError(err, 'images.write', path))));
      } finally {
        await file.close();
      }
      bytes += Number(size);
    }
    const expected = (body.trailers as Record<string, string> | undefined)?.[TRAILER]; // absent, not empty, when a request had no body
    const actual = hash.digest('hex');
    if (expected !== actual) throw new RoamError('INPUT_INVALID', `images: checksum mismatch (sent ${expected ?? 'none'}, received ${actual})`);
    return { files: written.length, bytes };
  } catch (err) {
    for (const name of written) rmSync(join(dir, name), { force: true });
    throw err;
  }
}
