/**
 * Host-wide exclusive locks (flock on a file in /run/lock): held by a file
 * descriptor, so they go with the process that held them, whatever way it
 * ends. Taken by polling, never by blocking the event loop.
 */
import { closeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';

export const LOCK_DIR = '/run/lock/roam';

/** Waits for the lock at `path`; resolves with the function that releases it. */
export async function hostLock(path: string, pollMs = 2): Promise<() => void> {
  mkdirSync(dirname(path), { recursive: true });
  for (;;) {
    let fd: number;
    try {
      fd = native().tryLockFile(path);
    } catch (err) {
      if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op: 'lock', target: path }, { cause: err });
      throw err;
    }
    if (fd >= 0) {
      let held = true;
      return () => {
        if (held) closeSync(fd);
        held = false;
      };
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
