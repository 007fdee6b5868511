/**
 * Writes into a container's tree that a peer asks for (the proactive copy,
 * the frozen delta's removals and archive), made so that none can leave the
 * tree. tar and rm resolve a path's parents through symlinks, and a tree
 * holds symlinks (a root filesystem's bin, lib) whose targets mean something
 * only inside the container. So, before anything is written:
 *
 * - every member of an archive is listed by tar itself (so no parser of ours
 *   can read a member otherwise than tar does) and checked: no absolute
 *   name, no `..`, no name twice; every parent of a member is a directory,
 *   in the archive (earlier) or in the tree as it is now, never a symlink
 *   or anything else; no device node but overlayfs's whiteout (char 0,0);
 *   a hard link only to a non-directory earlier in the same archive (how tar
 *   writes a tree's own hard links). One bad member refuses the archive;
 * - a symlink in the tree where a member goes is unlinked first, and tar
 *   unlinks any other non-directory before writing a member (never
 *   `--overwrite`): a final component is replaced, never followed;
 * - a removal is refused when a parent of its path is a symlink; its last
 *   component is removed without being followed (rm unlinks a symlink).
 *
 * A tree on the target is written by roam alone, and only before its
 * container runs there. Checks and writes into one tree hold it, one at a
 * time (writingTree), so what was checked is what tar finds: an upload that
 * comes second is checked against what the first one left.
 */
import { createWriteStream, lstatSync, rmSync, unlinkSync } from 'node:fs';
import { join, normalize, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RoamError } from '../errors/roam-error.js';
import { tarExtract, tarList, type TarMember } from '../sys/tar.js';

/** What is at a path in the tree, looked at without following it. */
export type OnDisk = 'dir' | 'symlink' | 'other' | 'absent';

const writing = new Map<string, Promise<void>>();

/** Runs `work` once every earlier write into the tree at `root` has ended, and before any later one starts. */
export async function writingTree<T>(root: string, work: () => Promise<T>): Promise<T> {
  const key = resolve(root);
  const run = (writing.get(key) ?? Promise.resolve()).then(work);
  const tail = run.then(() => undefined, () => undefined);
  writing.set(key, tail);
  try {
    return await run;
  } finally {
    if (writing.get(key) === tail) writing.delete(key);
  }
}

/**
 * The archive a peer streams for the tree at `root`: kept whole in `spool`
 * (a file of roam's own, outside the tree) so that it can be checked before
 * it is unpacked. `mayWrite` is asked once the tree is held, and throws if
 * the tree takes no upload any more.
 */
export async function unpackUpload(root: string, upload: Readable, spool: string, mayWrite: () => void): Promise<void> {
  try {
    try {
      await pipeline(upload, createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      // A bound the upload broke (its size, its idle time) is said as it is.
      if (err instanceof RoamError) throw err;
      throw new RoamError('CONTAINER_FAILED', `archive for ${root}: the archive stopped arriving (${err instanceof Error ? err.message : String(err)})`);
    }
    await writingTree(root, async () => {
      mayWrite();
      await unpackChecked(root, spool);
    });
  } finally {
    rmSync(spool, { force: true });
  }
}

/** Checks every member of the archive file `archive` against the tree at `root`, then unpacks it there. Call it within writingTree(root). */
export async function unpackChecked(root: string, archive: string): Promise<void> {
  const unlinkFirst = checkMembers(await tarList(archive), onDiskIn(root));
  for (const rel of unlinkFirst) unlinkSync(inRoot(root, rel));
  await tarExtract(root, archive);
}

/**
 * Removes `path` (from a peer: relative to the tree) from the tree at
 * `root`, refusing a path whose parents cross a symlink. A path whose
 * parent is not there has nothing to remove. Call it within writingTree(root).
 */
export function removeFromTree(root: string, path: unknown): void {
  const rel = safeRelative(path);
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('/');
    const there = lstatKind(join(root, parent));
    if (there === 'symlink') throw new RoamError('INPUT_INVALID', `removal ${JSON.stringify(path)}: its parent ${JSON.stringify(parent)} is a symlink in the tree; nothing is removed through one`, { path: rel });
    if (there !== 'dir') return;
  }
  rmSync(join(root, rel), { recursive: true, force: true });
}

/** A path from a peer, checked to stay below the tree's root (textually: removeFromTree looks at what is there). */
export function safeRelative(path: unknown): string {
  if (typeof path !== 'string' || path === '' || path.startsWith('/')) throw new RoamError('PEER_PROTOCOL', `tree path ${JSON.stringify(path)} is not relative`);
  const n = normalize(path);
  if (n === '..' || n.startsWith('../') || n === '.') throw new RoamError('PEER_PROTOCOL', `tree path ${JSON.stringify(path)} leaves the tree`);
  return n;
}

const KIND: Record<string, string> = { '-': 'a file', d: 'a directory', l: 'a symlink', h: 'a hard link', c: 'a whiteout', p: 'a fifo' };

/**
 * The archive's members, in order, against the tree as `onDisk` shows it
 * (see the file's head); returns the paths (relative, latin1) where the tree
 * has a symlink that a member replaces, to unlink before tar runs. Throws
 * INPUT_INVALID naming the first member refused and why.
 */
export function checkMembers(members: readonly TarMember[], onDisk: (rel: string) => OnDisk): string[] {
  const seen = new Map<string, string>();
  const unlinkFirst: string[] = [];
  for (const m of members) {
    const refuse = (why: string) => new RoamError('INPUT_INVALID', `archive member ${shown(m.name)}: ${why}`, { member: readable(m.name) });
    const rel = treePath(m.name, refuse);
    if (m.name.endsWith('/') && m.type !== 'd') throw refuse('a name ending in / for what is not a directory');
    if (rel === '') {
      if (m.type !== 'd') throw refuse('the tree itself, as something other than a directory');
      continue;
    }
    if (seen.has(rel)) throw refuse('the archive holds this path twice');
    switch (m.type) {
      case '-': case 'd': case 'l': case 'p':
        break;
      case 'c':
        if (m.device?.major === 0 && m.device.minor === 0) break; // overlayfs's whiteout: a name deleted from the image
        throw refuse(`a device node (c ${m.device?.major},${m.device?.minor}); none is taken from a peer`);
      case 'b':
        throw refuse(`a device node (b ${m.device?.major},${m.device?.minor}); none is taken from a peer`);
      case 'h': {
        const target = treePath(m.link ?? '', (why) => refuse(`a hard link to ${shown(m.link ?? '')}, ${why}`));
        const kind = seen.get(target);
        if (kind === undefined || kind === 'd') throw refuse(`a hard link to ${shown(m.link ?? '')}, which is not a file earlier in the archive; no hard link reaches outside it`);
        break;
      }
      default:
        throw refuse(`of type ${JSON.stringify(m.type)}, which roam does not copy`);
    }
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const inArchive = seen.get(parent);
      if (inArchive !== undefined) {
        if (inArchive !== 'd') throw refuse(`its parent ${shown(parent)} is ${KIND[inArchive] ?? 'not a directory'} in the archive`);
        continue;
      }
      const there = onDisk(parent);
      if (there === 'symlink') throw refuse(`its parent ${shown(parent)} is a symlink in the tree; nothing is written through one`);
      if (there === 'other') throw refuse(`its parent ${shown(parent)} is not a directory in the tree`);
    }
    if (onDisk(rel) === 'symlink') unlinkFirst.push(rel);
    seen.set(rel, m.type);
  }
  return unlinkFirst;
}

/** A member's name (or a hard link's target) as a path below the tree's root ('' for the root itself). */
function treePath(name: string, refuse: (why: string) => RoamError): string {
  if (name.startsWith('/')) throw refuse('an absolute path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw refuse('a path that goes up (..)');
  return parts.join('/');
}

/**
 * What is at each path of the tree at `root`, looked at with lstat, and
 * only below directories: a path below a symlink (or a file) is `absent`,
 * never looked up through it. Memoized: one archive, one look per path.
 */
export function onDiskIn(root: string): (rel: string) => OnDisk {
  const memo = new Map<string, OnDisk>();
  const kind = (rel: string): OnDisk => {
    let k = memo.get(rel);
    if (k !== undefined) return k;
    const slash = rel.lastIndexOf('/');
    k = slash > 0 && kind(rel.slice(0, slash)) !== 'dir' ? 'absent' : lstatKind(inRoot(root, rel));
    memo.set(rel, k);
    return k;
  };
  return kind;
}

function lstatKind(path: string | Buffer): OnDisk {
  try {
    const st = lstatSync(path);
    return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'absent';
    throw err;
  }
}

/** `rel` (a member's bytes as latin1) below `root`, as the bytes the kernel sees. */
function inRoot(root: string, rel: string): Buffer {
  return Buffer.concat([Buffer.from(root, 'utf8'), Buffer.from(`/${rel}`, 'latin1')]);
}

function readable(name: string): string {
  return Buffer.from(name, 'latin1').toString('utf8');
}

function shown(name: string): string {
  return JSON.stringify(readable(name));
}
