/**
 * The image upload's framing and checksum, between two loopback ends: every
 * file arrives intact in one request; damage, a cut-off body or a bad name
 * is refused and leaves no file behind.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { receiveImages, sendImages } from '../../src/peer/image-framing.js';

interface Receiver {
  server: Server;
  port: number;
  dir: string;
  /** what the last upload ended with: its count, or its error's message */
  last: () => Promise<{ files: number; bytes: number } | string>;
}

async function receiver(t: import('ava').ExecutionContext): Promise<Receiver> {
  const dir = mkdtempSync(join(tmpdir(), 'roam-images-in-'));
  let outcome: Promise<{ files: number; bytes: number } | string> = Promise.resolve('nothing received');
  const server = createServer((req, res) => {
    outcome = receiveImages(dir, req, { maxBytes: 256 * 1024 * 1024, idleMs: 5000 }, 'images').then(
      (r) => {
        res.end(JSON.stringify(r));
        return r;
      },
      (err: Error) => {
        res.statusCode = 400;
        res.end(err.message);
        return err.message;
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, port: (server.address() as { port: number }).port, dir, last: () => outcome };
}

function imagesDir(t: import('ava').ExecutionContext, files: Record<string, Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-images-out-'));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A hand-made upload: raw body bytes and the trailer to send with them. */
function rawUpload(port: number, body: Buffer, sha256: string | undefined, cutOff = false): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/', headers: { 'transfer-encoding': 'chunked', trailer: 'x-roam-sha256' } }, (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.write(body);
    if (cutOff) {
      setTimeout(() => req.destroy(), 50);
      return;
    }
    if (sha256) req.addTrailers({ 'x-roam-sha256': sha256 });
    req.end();
  });
}

function frame(name: string, data: Buffer): Buffer {
  const n = Buffer.from(name);
  const h = Buffer.alloc(2 + n.length + 8);
  h.writeUInt16BE(n.length, 0);
  n.copy(h, 2);
  h.writeBigUInt64BE(BigInt(data.length), 2 + n.length);
  return Buffer.concat([h, data]);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('every image arrives byte for byte in one upload; logs stay behind', async (t) => {
  const r = await receiver(t);
  const files = { 'core-1.img': randomBytes(3000), 'pages-1.img': randomBytes(5 * 1048576 + 7), 'empty.img': Buffer.alloc(0), 'pstree.img': randomBytes(40) };
  const dir = imagesDir(t, { ...files, 'dump.log': Buffer.from('not an image') });
  const sent = await sendImages(dir, { host: '127.0.0.1', port: r.port }, 'm-1');
  t.is(sent, Object.values(files).reduce((s, b) => s + b.length, 0));
  t.deepEqual(await r.last(), { files: 4, bytes: sent });
  t.deepEqual(readdirSync(r.dir).sort(), Object.keys(files).sort());
  for (const [name, data] of Object.entries(files)) t.true(readFileSync(join(r.dir, name)).equals(data), name);
});

test('a damaged upload is refused and leaves nothing', async (t) => {
  const r = await receiver(t);
  const body = Buffer.concat([frame('a.img', randomBytes(100)), frame('b.img', randomBytes(100))]);
  t.is(await rawUpload(r.port, body, sha(Buffer.from('something else'))), 400);
  t.regex(String(await r.last()), /^images: checksum mismatch \(sent [0-9a-f]{64}, received [0-9a-f]{64}\)$/);
  t.deepEqual(readdirSync(r.dir), []);
  t.is(await rawUpload(r.port, body, undefined), 400);
  t.regex(String(await r.last()), /checksum mismatch \(sent none/);
  t.deepEqual(readdirSync(r.dir), []);
});

test('a cut-off upload, a bad name and a repeated file are refused, naming what was wrong, and leave nothing', async (t) => {
  const r = await receiver(t);
  const whole = frame('a.img', randomBytes(1000));
  await rawUpload(r.port, whole.subarray(0, 500), undefined, true);
  t.regex(String(await r.last()), /cut off in a\.img \(\d+ of 1000 bytes\)|aborted/);
  t.deepEqual(readdirSync(r.dir), []);
  const bad = frame('../escape.img', Buffer.from('x'));
  t.is(await rawUpload(r.port, bad, sha(bad)), 400);
  t.is(await r.last(), 'image file name "../escape.img" is not allowed');
  const twice = Buffer.concat([frame('a.img', Buffer.from('1')), frame('a.img', Buffer.from('2'))]);
  t.is(await rawUpload(r.port, twice, sha(twice)), 400);
  t.is(await r.last(), 'image a.img sent twice');
  t.deepEqual(readdirSync(r.dir), []);
});
