/**
 * Copying a file tree that keeps changing (a container's root filesystem
 * changes, its volumes) to another node with as little as possible left
 * for the frozen window: scan it and send everything while the service
 * runs; once it is frozen, scan again and send only what changed since the
 * first scan, with the list of what went. A file written while the first
 * copy was being read differs in the second scan (its ctime moved), so it
 * is sent again: nothing written before the freeze is lost.
 */
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { tarCreateFile } from '../sys/tar.js';
import { removeFromTree, unpackChecked, writingTree } from './tree-guard.js';

export { safeRelative } from './tree-guard.js';

/** What tells one version of an entry from another. */
export interface EntryStat {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
}

/** Every entry under a tree's root, by path relative to it (the root itself excluded). */
export type TreeManifest = Map<string, EntryStat>;

export interface TreeDelta {
  /** entries to send (new or changed), parents before children */
  changed: string[];
  /** entries that went (or changed kind), to remove before the changed ones are unpacked */
  deleted: string[];
  /** bytes of the regular files among `changed` */
  bytes: number;
}

export function scanTree(root: string): TreeManifest {
  const manifest: TreeManifest = new Map();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, path), { bigint: true });
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      manifest.set(path, { kind, mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino });
      if (kind === 'dir') walk(path);
    }
  };
  walk('');
  return manifest;
}

function same(a: EntryStat, b: EntryStat): boolean {
  return a.kind === b.kind && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
}

/** What turns a copy of `before` into `after` (pure). */
export function treeDelta(before: TreeManifest, after: TreeManifest): TreeDelta {
  const changed: string[] = [];
  const deleted: string[] = [];
  let bytes = 0;
  for (const [path, st] of after) {
    const old = before.get(path);
    if (old && same(old, st)) continue;
    if (old && old.kind !== st.kind) deleted.push(path);
    changed.push(path);
    if (st.kind === 'file') bytes += Number(st.size);
  }
  for (const path of before.keys()) {
    if (after.has(path)) continue;
    // Below a deleted directory, removing it removes them.
    const parent = path.lastIndexOf('/');
    if (parent > 0 && !after.has(path.slice(0, parent)) && before.get(path.slice(0, parent))?.kind === 'dir') continue;
    deleted.push(path);
  }
  return { changed, deleted, bytes };
}

/** The two files a delta travels as, among a dump's images (so it goes in the same upload, with the same checksum). */
export function deltaFiles(imagesDir: string, tree: string): { archive: string; deleted: string } {
  if (!/^[a-z0-9-]{1,40}$/.test(tree)) throw new RoamError('INPUT_INVALID', `tree: ${JSON.stringify(tree)} is not a tree name`);
  return { archive: join(imagesDir, `roam-tree-${tree}.tar.img`), deleted: join(imagesDir, `roam-tree-${tree}.deleted.img`) };
}

export async function writeDelta(root: string, delta: TreeDelta, files: { archive: string; deleted: string }): Promise<void> {
  writeFileSync(files.deleted, JSON.stringify(delta.deleted));
  await tarCreateFile(root, delta.changed, files.archive);
}

/**
 * Applies a delta written by writeDelta to the copy at `root`: removals
 * first, then the archive, both checked to stay inside the tree
 * (tree-guard.ts), with the tree held throughout.
 */
export async function applyDelta(root: string, files: { archive: string; deleted: string }): Promise<void> {
  const deleted = JSON.parse(readFileSync(files.deleted, 'utf8')) as unknown;
  if (!Array.isArray(deleted)) throw new RoamError('PEER_PROTOCOL', `${files.deleted}: not a list of paths`);
  await writingTree(root, async () => {
    for (const path of deleted) removeFromTree(root, path);
    await unpackChecked(root, files.archive);
  });
}
