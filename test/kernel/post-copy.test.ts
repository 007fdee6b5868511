/**
 * Post-copy against real CRIU and userfaultfd, on one machine: a lazy dump
 * keeps a service's memory back and serves it over TLS; a restore in the same
 * namespace gets it through CRIU's lazy-pages daemon, and the service's
 * memory checksum proves every page arrived. And the other ways out: a lazy
 * dump whose target never comes resumes in place, connection and all; and a
 * stranger who reaches the page server first gets no page.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { CriuTreeCheckpointer } from '../../src/checkpoint/criu-tree.js';
import { startLazyPages } from '../../src/checkpoint/lazy-pages.js';
import { continueTree, processStartTime } from '../../src/sys/proc.js';
import { tcpRepairOffTree } from '../../src/sys/borrowed-tcp.js';
import { unlockNetns } from '../../src/sys/nft.js';
import { ensureCa, ensureNodeCert } from '../../src/sys/certs.js';
import type { PageServerTls } from '../../src/checkpoint/page-server-tls.js';
import type { PageServerRefusal } from '../../src/sys/criu/rpc.js';
import { requireRoot } from '../helpers/root.js';
import { echoWithClient, logOf, nodeWithManager } from '../helpers/node.js';
import { echoMemory, streamVerifies } from '../helpers/workloads.js';
import type { EndpointManager } from '../../src/endpoint/manager.js';

const HOLD_MB = 48;

// Serial: CRIU's parasite uses a fixed scratch directory, and two dumps at once collide on it.
test.before(() => requireRoot());

/** A cluster CA and this "node's" certificate for 127.0.0.1, where both ends of these pulls are. */
const tlsDirs: string[] = [];
test.after.always(() => tlsDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function clusterTls(name: string): PageServerTls {
  const dir = join(tmpdir(), `roam-pc-tls-${process.pid}-${name}`);
  tlsDirs.push(dir);
  ensureCa(dir, `${name} CA`);
  return ensureNodeCert(dir, 'node', '127.0.0.1');
}
const tls = clusterTls('cluster');

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

async function serviceWithClient(t: ExecutionContext, prefix: string) {
  // A lazy dump's CRIU is unref'd (it serves on after the agent), so waiting for it holds nothing in this
  // process's event loop; an agent has its listeners for that, this test has this timer.
  const alive = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(alive));
  const node = await nodeWithManager(t, prefix);
  const { srv, log } = await echoWithClient(node.manager, 1, ['--hold-mb', String(HOLD_MB)]);
  const checksum = /sha256 ([0-9a-f]{16})\)/.exec(logOf(node.manager, 'srv'))![1]!;
  return { ...node, srv, log, checksum };
}

/**
 * A tree a lazy dump left behind resumes where it was, as a rollback does it:
 * its one connection out of repair mode, the lock lifted, the tree
 * continued; then its memory is its own and its client keeps getting echoes.
 */
async function resumesInPlace(t: ExecutionContext, m: EndpointManager, srv: { pid?: number | undefined; netns?: string | undefined }, checksum: string): Promise<void> {
  t.is(tcpRepairOffTree(srv.pid!), 1, 'its one connection comes out of repair mode');
  unlockNetns(srv.netns!);
  continueTree(srv.pid!);
  t.is((await echoMemory(srv.pid!, () => logOf(m, 'srv'))).sum, checksum, 'its memory is its own');
  await t.notThrowsAsync(streamVerifies('cli', () => logOf(m, 'cli'), 20000, 20000), 'the client still gets its echo, every byte exact');
}

test.serial('post-copy: dumped without its memory, restored before it arrives, and every page is pulled from the source (checksum equal)', async (t) => {
  const { dir, manager: m, srv, checksum, log } = await serviceWithClient(t, 'pc');
  let restoredPid = 0;
  t.teardown(() => {
    if (restoredPid) process.kill(restoredPid, 'SIGKILL');
  });
  const images = join(dir, 'images');
  mkdirSync(images);
  const port = await freePort();
  const dump = await new CriuTreeCheckpointer({ pid: srv.pid!, dir: m.dirOf('srv') }).lazyDump({ netns: srv.netns!, imagesDir: images, address: '127.0.0.1', port, tls });
  t.teardown(() => void dump.cancel());
  const d = await dump.ready;
  t.true(d.lazyBytes >= HOLD_MB * 1024 * 1024, `the held table is kept back (${d.lazyBytes} bytes)`);
  t.true(d.imageBytes < d.lazyBytes / 4, `what travels before the restore is small (${d.imageBytes} bytes)`);
  t.truthy(processStartTime(srv.pid!), 'the source tree is still there, stopped, its pages served');
  // As between two nodes: the source's endpoint network goes (its stopped tree stays), the target's is built locked.
  const spec = m.stored('srv')!;
  await m.release('srv', { keepProcess: true });
  const arriving = await m.prepareIncoming({
    name: 'srv', ip: spec.ip, prefixLength: spec.prefixLength, mac: spec.mac, generation: spec.generation + 1, command: spec.command, createdAt: spec.createdAt,
  }, 'm-test');
  const daemon = await startLazyPages(images, { address: '127.0.0.1', port }, tls);
  const r = await new CriuTreeCheckpointer({ dir: m.dirOf('srv') }).restore({ netns: arriving.netns, imagesDir: images, pipeKeys: d.pipeKeys, leaveStopped: true, lazyPages: true });
  restoredPid = r.pid;
  // The switch, as a target does it: the arrival's port joins the bridge (it stays off until then), the endpoint is adopted.
  await m.bridgeIncoming('srv');
  m.adoptIncoming('srv', r);
  unlockNetns(arriving.netns);
  continueTree(r.pid);
  const pull = await daemon.outcome;
  t.true(pull.complete, pull.reason ?? 'complete');
  t.true(pull.copiedPages * 4096 >= d.lazyBytes, `${pull.copiedPages} pages pulled`);
  t.regex(readFileSync(join(images, 'lazy-pages.log'), 'utf8'), /TLS handshake completed/, 'over TLS');
  await dump.served;
  t.regex(readFileSync(`/proc/${srv.pid}/status`, 'utf8'), /^State:\s+T /m, 'the source tree waits, stopped, for its owner to decide');
  process.kill(srv.pid!, 'SIGKILL');
  const after = await echoMemory(r.pid, () => logOf(m, 'srv'));
  t.is(after.sum, checksum, 'the restored service holds exactly the memory it had');
  t.is(after.connections, 1, 'with its connection');
  await t.notThrowsAsync(streamVerifies('cli', log, 20000, 20000), 'the client still gets its echo, every byte exact');
});

test.serial('post-copy: a lazy dump whose target never comes ends, and the tree resumes where it was, connection out of repair mode', async (t) => {
  const { dir, manager: m, srv, checksum } = await serviceWithClient(t, 'pcback');
  const images = join(dir, 'images');
  mkdirSync(images);
  const dump = await new CriuTreeCheckpointer({ pid: srv.pid!, dir: m.dirOf('srv') }).lazyDump({ netns: srv.netns!, imagesDir: images, address: '127.0.0.1', port: await freePort(), tls });
  await dump.ready;
  await dump.cancel();
  await dump.served;
  t.regex(readFileSync(`/proc/${srv.pid}/status`, 'utf8'), /^State:\s+T /m, 'stopped, not killed');
  await resumesInPlace(t, m, srv, checksum);
});

test.serial('post-copy: a client whose certificate the cluster CA did not sign gets no page, and the tree resumes where it was', async (t) => {
  const { dir, manager: m, srv, checksum } = await serviceWithClient(t, 'pcrogue');
  const images = join(dir, 'images');
  mkdirSync(images);
  const port = await freePort();
  const refusals: PageServerRefusal[] = [];
  const dump = await new CriuTreeCheckpointer({ pid: srv.pid!, dir: m.dirOf('srv') }).lazyDump({ netns: srv.netns!, imagesDir: images, address: '127.0.0.1', port, tls, onRefusal: (r) => refusals.push(r) });
  t.teardown(() => void dump.cancel());
  await dump.ready;
  // A stranger on the underlay, with a certificate of its own making, ahead of the target.
  const rogue = clusterTls('rogue');
  const got = await new Promise<{ secure: boolean; bytes: number; error: string }>((resolve) => {
    let secure = false;
    let bytes = 0;
    let error = '';
    const sk = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(rogue.ca), cert: readFileSync(rogue.cert), key: readFileSync(rogue.key), rejectUnauthorized: false }, () => {
      secure = true;
      // What the lazy-pages daemon would ask first: the page server's command header.
      sk.write(Buffer.alloc(24));
    });
    sk.on('data', (d: Buffer) => (bytes += d.length));
    sk.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    sk.on('close', () => resolve({ secure, bytes, error }));
  });
  t.is(got.bytes, 0, `no page reaches a client the CA did not sign (handshake ${got.secure ? 'ended by the server' : `refused: ${got.error}`})`);
  const served = await dump.served.then(() => 'served', (err: unknown) => String(err));
  t.not(served, 'served', 'the page server ended in failure, not as a finished pull');
  t.is(refusals.length, 1, 'the refusal is reported once');
  t.is(refusals[0]?.from, '127.0.0.1', 'with where the stranger came from');
  t.regex(refusals[0]?.reason ?? '', /certificate|verify|handshake/i, `and why, in CRIU's words: ${refusals[0]?.reason}`);
  // CRIU lets the tree go when serving fails, its connections still in repair mode: it must not run so.
  t.regex(readFileSync(`/proc/${srv.pid}/status`, 'utf8'), /^State:\s+T /m, 'the tree stays stopped for its owner to resume');
  await resumesInPlace(t, m, srv, checksum);
});
