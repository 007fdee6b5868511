/**
 * Writes that survive a crash of the node, not only of the agent: the data
 * reaches the disk before the rename makes it the file, and the rename
 * reaches it before the caller goes on (fsync of the file, then of its
 * folder). A reader finds the old content or the new, never a torn one.
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { SysError } from '../errors/roam-error.js';

export function writeFileDurably(path: string, data: string): void {
  writeThenRename(path, data, true);
  syncFolder(dirname(path));
}

/** Whole or not at all after a crash of the writer, but not flushed: a crash of the node may keep the older content. */
export function writeFileAtomically(path: string, data: string): void {
  writeThenRename(path, data, false);
}

function writeThenRename(path: string, data: string, sync: boolean): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  step('durable.write', tmp, () => {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, data);
      if (sync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
  step('durable.rename', path, () => renameSync(tmp, path));
}

/** Makes a folder's entries (a file created, renamed or removed in it) durable. */
export function syncFolder(dir: string): void {
  step('durable.sync-folder', dir, () => {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
}

function step(op: string, target: string, work: () => void): void {
  try {
    work();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.errno !== 'number') throw err;
    throw new SysError({ errno: -e.errno, syscall: e.syscall ?? 'write', op, target }, { cause: err });
  }
}
