/**
 * Network namespaces as bind-mounted files (like `ip netns add`, but any
 * path). Namespaces are entered on the calling thread only, synchronously,
 * and always left again: no await may happen inside `inNetns`.
 */
import { statSync } from 'node:fs';
import { SysError } from '../../errors/roam-error.js';
import { isNativeError, native } from '../native.js';

function sysErrorFrom(err: unknown, op: string, target: string): unknown {
  if (isNativeError(err)) return new SysError({ errno: err.errno, syscall: err.syscall, op, target }, { cause: err });
  return err;
}

/** Creates a new network namespace pinned at `path` (EEXIST if one is already there). */
export function createNetns(path: string): void {
  try {
    native().createNetns(path);
  } catch (err) {
    throw sysErrorFrom(err, 'netns.create', path);
  }
}

/** Unpins the namespace at `path`; already gone counts as success. */
export function removeNetns(path: string): void {
  try {
    native().removeNetns(path);
  } catch (err) {
    throw sysErrorFrom(err, 'netns.remove', path);
  }
}

/** Runs `fn` with the calling thread inside the namespace at `path`. */
export function inNetns<T>(path: string, fn: () => T): T {
  let saved: number;
  try {
    saved = native().enterNetns(path);
  } catch (err) {
    throw sysErrorFrom(err, 'netns.enter', path);
  }
  try {
    const result = fn();
    if (result instanceof Promise) throw new TypeError('inNetns takes a synchronous function');
    return result;
  } finally {
    native().restoreNetns(saved);
  }
}

/** True when `path` holds a pinned network namespace (nsfs), not just a file. */
export function isNetns(path: string): boolean {
  try {
    return statSync(path).dev === statSync('/proc/self/ns/net').dev;
  } catch {
    return false;
  }
}

/** The namespace's inode number: what CRIU and /proc/PID/ns/net call it. */
export function netnsInode(path: string): number {
  return statSync(path).ino;
}
