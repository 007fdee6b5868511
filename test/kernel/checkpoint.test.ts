/**
 * The process-tree checkpointer against real CRIU: a dump and a restore of a live
 * TCP server in a fresh namespace (the rollback path), and a failure that
 * comes back with CRIU's own words.
 */
import test from 'ava';
import { mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CriuTreeCheckpointer } from '../../src/checkpoint/criu-tree.js';
import { processStartTime } from '../../src/sys/proc.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { listTables, unlockNetns } from '../../src/sys/nft.js';
import { continueTree } from '../../src/sys/proc.js';
import { freshDir, freshNetns } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';
import { echoWithClient, nodeWithManager } from '../helpers/node.js';
import { streamVerifies } from '../helpers/workloads.js';

test.before(() => requireRoot());

test('a live TCP server is dumped (and gone) behind roam\'s lock, then restored stopped under a new shim with its connection, as PID 1 of a new PID namespace', async (t) => {
  const { dir, manager: m } = await nodeWithManager(t, 'cr');
  let restoredPid = 0;
  t.teardown(() => {
    if (restoredPid) process.kill(restoredPid, 'SIGKILL');
  });
  const { srv, log } = await echoWithClient(m);
  const images = join(dir, 'images');
  mkdirSync(images);
  const hooks: string[] = [];
  const notify = { networkLock: () => void hooks.push('network-lock'), postDump: () => void hooks.push('post-dump') };
  const d = await new CriuTreeCheckpointer({ pid: srv.pid!, dir: m.dirOf('srv') }).dump({ netns: srv.netns!, imagesDir: images, notify });
  t.deepEqual(hooks.filter((h) => h === 'network-lock' || h === 'post-dump'), ['network-lock', 'post-dump']);
  t.is(d.tcpConnections, 1, "the server's end (the client is another endpoint, in its own namespace)");
  t.is(d.pipeKeys.length, 2);
  t.like(d.tcpInFlight, { connections: 1, timestamps: 1, sack: 1 }, "CRIU's image of the connection says what it had negotiated");
  t.is(processStartTime(srv.pid!), undefined, 'the dumped tree is gone');
  t.deepEqual(listTables(srv.netns!), ['inet roam_lock'], "roam's lock, taken at CRIU's network-lock hook, and none of CRIU's");
  const r = await new CriuTreeCheckpointer({ dir: m.dirOf('srv') }).restore({ netns: srv.netns!, imagesDir: images, pipeKeys: d.pipeKeys, leaveStopped: true });
  restoredPid = r.pid;
  t.deepEqual(listTables(srv.netns!), ['inet roam_lock'], 'the restore leaves the lock to its owner');
  t.regex(readFileSync(`/proc/${r.pid}/status`, 'utf8'), /^State:\s+T \(stopped\)$/m, 'the restored tree waits, stopped');
  unlockNetns(srv.netns!);
  t.is(continueTree(r.pid), 1);
  t.deepEqual(listTables(srv.netns!), []);
  t.regex(readFileSync(`/proc/${r.pid}/status`, 'utf8'), /^State:\s+[SR] /m, 'and runs once continued');
  t.regex(readFileSync(`/proc/${r.pid}/status`, 'utf8'), new RegExp(`^PPid:\\s+${r.shimPid}$`, 'm'), "the shim is the restored tree's parent");
  t.regex(readFileSync(`/proc/${r.pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m);
  t.regex(readlinkSync(`/proc/${r.pid}/fd/1`), /^pipe:/);
  await t.notThrowsAsync(streamVerifies('cli', log, 20000, 20000), 'the client still gets its echo, every byte exact');
});

test("a dump CRIU refuses comes back as CHECKPOINT_FAILED with CRIU's errno and log lines", async (t) => {
  const dir = freshDir(t, 'crfail');
  const ns = freshNetns(t, dir, 'node');
  const images = join(dir, 'images');
  mkdirSync(images);
  const err = await t.throwsAsync(new CriuTreeCheckpointer({ pid: 2 ** 22 - 7, dir }).dump({ netns: ns, imagesDir: images }), { instanceOf: RoamError });
  t.is(err?.code, 'CHECKPOINT_FAILED');
  t.regex(err?.message ?? '', /^criu dump failed/);
  t.true(Array.isArray(err?.details.criuErrors) && (err.details.criuErrors as string[]).length > 0, 'log lines attached');
  t.regex(String(err?.details.criuLog), /dump\.log$/);
});
