/**
 * Checkpoint images travel agent to agent over the peer protocol: one
 * streamed PUT per image file, its SHA-256 in an HTTP trailer, computed while
 * sending and checked while receiving. No shared storage, no second read.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, readdirSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { RoamError } from '../errors/roam-error.js';

export const IMAGE_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TRAILER = 'x-roam-sha256';

/** The files of a dump that the target needs (CRIU's images, not its logs). */
export function imageFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.img') && statSync(join(dir, f)).isFile()).sort();
}

export async function sendImages(dir: string, target: { host: string; port: number }, id: string, parallel = 3): Promise<number> {
  const files = imageFiles(dir);
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    while (next < files.length) {
      const file = files[next++]!;
      bytes += await sendOne(join(dir, file), target, `/peer/v1/migrations/${encodeURIComponent(id)}/images/${encodeURIComponent(file)}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, files.length) }, worker));
  return bytes;
}

function sendOne(path: string, target: { host: string; port: number }, urlPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    const req = request({ ...target, method: 'PUT', path: urlPath, timeout: 60000, headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', trailer: TRAILER } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if ((res.statusCode ?? 500) < 300) return resolve(size);
        reject(new RoamError('MIGRATION_FAILED', `image upload ${urlPath}: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new RoamError('PEER_UNREACHABLE', `image upload to ${target.host}:${target.port}: ${err.code ?? err.message}`)));
    const file = createReadStream(path);
    file.on('data', (chunk) => {
      hash.update(chunk);
      size += chunk.length;
      if (!req.write(chunk)) {
        file.pause();
        req.once('drain', () => file.resume());
      }
    });
    file.on('error', (err) => req.destroy(err));
    file.on('end', () => {
      req.addTrailers({ [TRAILER]: hash.digest('hex') });
      req.end();
    });
  });
}

/** Writes one incoming image, then checks it against the sender's checksum; a bad file is removed. */
export async function receiveImage(dir: string, file: string, body: IncomingMessage): Promise<number> {
  if (!IMAGE_FILE_PATTERN.test(file)) throw new RoamError('INPUT_INVALID', `image file name ${JSON.stringify(file)} is not allowed`);
  const path = join(dir, file);
  const hash = createHash('sha256');
  let size = 0;
  body.on('data', (c: Buffer) => {
    hash.update(c);
    size += c.length;
  });
  await pipeline(body, createWriteStream(path));
  const expected = body.trailers[TRAILER];
  const actual = hash.digest('hex');
  if (expected !== actual) {
    rmSync(path, { force: true });
    throw new RoamError('INPUT_INVALID', `image ${file}: checksum mismatch (sent ${expected ?? 'none'}, received ${actual})`);
  }
  return size;
}
