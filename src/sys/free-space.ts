/**
 * Free space in a folder's file system, and the check an arrival passes
 * before it takes any: a node keeps a reserve free for itself (its
 * journals, records and logs) whatever a peer asks.
 */
import { statfsSync } from 'node:fs';
import { RoamError, SysError } from '../errors/roam-error.js';

/** Bytes an unprivileged writer could still use in the file system holding `dir` (root may use the reserved blocks too). */
export function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new SysError({ errno: typeof e.errno === 'number' ? -e.errno : 0, syscall: 'statfs', op: 'disk.free', target: dir }, { cause: err });
  }
}

/** Refuses `what` when `dir` has no more than `reserveBytes` free. */
export function requireFreeSpace(dir: string, reserveBytes: number, what: string): void {
  const free = freeBytes(dir);
  if (free <= reserveBytes) {
    throw new RoamError('NO_SPACE', `${what}: ${dir} has ${free} bytes free, and ${reserveBytes} are kept free (limits.reserveFreeBytes)`, { freeBytes: free, reserveFreeBytes: reserveBytes });
  }
}
