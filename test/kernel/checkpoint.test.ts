/**
 * The checkpoint executor against real CRIU: a dump and a restore of a live
 * TCP server in a fresh namespace (the rollback path), and a failure that
 * comes back with CRIU's own words.
 */
import test from 'ava';
import { mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { dumpTree, restoreUnderShim } from '../../src/checkpoint/executor.js';
import { processStartTime } from '../../src/sys/proc.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { listTables, unlockNetns } from '../../src/sys/nft.js';
import { continueTree } from '../../src/sys/proc.js';
import { freshDir, freshNetns } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';
import { nodeWithManager } from '../helpers/node.js';

const workload = (f: string) => fileURLToPath(new URL(`../../src/workloads/${f}`, import.meta.url));

test.before(() => requireRoot());

test('a live TCP server is dumped (and gone) behind roam\'s lock, then restored stopped under a new shim with its connection, as PID 1 of a new PID namespace', async (t) => {
  const { dir, manager: m } = await nodeWithManager(t, 'cr');
  let restoredPid = 0;
  t.teardown(() => {
    if (restoredPid) process.kill(restoredPid, 'SIGKILL');
  });
  const srv = await m.create({ name: 'srv', ip: undefined, command: [process.execPath, workload('echo-server.js'), '--port', '7001'] });
  await sleep(300);
  await m.create({ name: 'cli', ip: undefined, command: [process.execPath, workload('stream-check.js'), srv.ip, '7001', '--rate', '50000'] });
  await sleep(500);
  const images = join(dir, 'images');
  mkdirSync(images);
  const hooks: string[] = [];
  const d = await dumpTree({ pid: srv.pid!, netns: srv.netns!, imagesDir: images, onHook: (h) => void hooks.push(h) });
  t.deepEqual(hooks.filter((h) => h === 'network-lock' || h === 'post-dump'), ['network-lock', 'post-dump']);
  t.is(d.tcpConnections, 1, "the server's end (the client is another endpoint, in its own namespace)");
  t.is(d.pipeKeys.length, 2);
  t.like(d.tcpInFlight, { connections: 1, timestamps: 1, sack: 1 }, "CRIU's image of the connection says what it had negotiated");
  t.is(processStartTime(srv.pid!), undefined, 'the dumped tree is gone');
  t.deepEqual(listTables(srv.netns!), ['inet roam_lock'], "roam's lock, taken at CRIU's network-lock hook, and none of CRIU's");
  const r = await restoreUnderShim({ dir: m.dirOf('srv'), netns: srv.netns!, imagesDir: images, pipeKeys: d.pipeKeys, leaveStopped: true });
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
  const before = readFileSync(join(m.dirOf('cli'), 'log'), 'utf8').length;
  await sleep(800);
  const log = readFileSync(join(m.dirOf('cli'), 'log'), 'utf8');
  t.true(log.length > before, 'the client still gets its echo');
  t.notRegex(log, /MISMATCH|DISCONNECTED/);
});

test("a dump CRIU refuses comes back as CHECKPOINT_FAILED with CRIU's errno and log lines", async (t) => {
  const dir = freshDir(t, 'crfail');
  const ns = freshNetns(t, dir, 'node');
  const images = join(dir, 'images');
  mkdirSync(images);
  const err = await t.throwsAsync(dumpTree({ pid: 2 ** 22 - 7, netns: ns, imagesDir: images }), { instanceOf: RoamError });
  t.is(err?.code, 'CHECKPOINT_FAILED');
  t.regex(err?.message ?? '', /^criu dump failed/);
  t.true(Array.isArray(err?.details.criuErrors) && (err.details.criuErrors as string[]).length > 0, 'log lines attached');
  t.regex(String(err?.details.criuLog), /dump\.log$/);
});
