/**
 * Container root filesystems for the testbed's tests and benches, made on
 * the spot from Debian's busybox-static and a static echo server built from
 * src/workloads/echo_server.c.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildStaticProgram } from '../sys/cc.js';

const ECHO_SOURCE = fileURLToPath(new URL('../../../src/workloads/echo_server.c', import.meta.url));
const APPLETS = ['sh', 'cat', 'ls', 'echo', 'sleep', 'usleep', 'mkdir', 'sha256sum', 'dd', 'tail'];

/** A folder holding a minimal root filesystem (busybox, /bin/echo-server); remove() takes it away. */
export function makeRootfs(): { dir: string; rootfs: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'roam-rootfs-'));
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', a));
  buildStaticProgram(ECHO_SOURCE, join(rootfs, 'bin', 'echo-server'));
  return { dir, rootfs, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
