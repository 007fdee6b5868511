/**
 * The container images a node holds: `<stateDir>/images/<id>/` with the
 * archive it came as (image.tar) and its unpacked root filesystem (rootfs,
 * the read-only lower layer of every container made from it). An image's
 * id is the SHA-256 of its archive, so a node that received an image from a
 * peer can tell it got exactly what the peer has. Images come from a local
 * folder (`roam run --rootfs`) or from the peer that migrates a container
 * here (before the freeze, once per image and node).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RoamError } from '../errors/roam-error.js';
import { tarCreateTreeStream, tarExtract } from '../sys/tar.js';
import { unpackChecked, writingTree } from './tree-guard.js';

export const IMAGE_ID_PATTERN = '^[0-9a-f]{64}$';

export class ImageStore {
  readonly root: string;

  constructor(stateDir: string) {
    this.root = join(stateDir, 'images');
  }

  has(id: string): boolean {
    return existsSync(join(this.dirOf(id), 'complete'));
  }

  rootfs(id: string): string {
    return join(this.dirOf(id), 'rootfs');
  }

  archive(id: string): string {
    return join(this.dirOf(id), 'image.tar');
  }

  private dirOf(id: string): string {
    if (!new RegExp(IMAGE_ID_PATTERN).test(id)) throw new RoamError('INPUT_INVALID', `image: ${JSON.stringify(id)} is not an image id (64 hex digits)`);
    return join(this.root, id);
  }

  /** Makes an image of the folder `rootfs` (in a fixed order, so the same folder gives the same id); returns its id. */
  async importFolder(rootfs: string): Promise<string> {
    if (!existsSync(rootfs) || !statSync(rootfs).isDirectory()) throw new RoamError('INPUT_INVALID', `rootfs: ${rootfs} is not a folder`);
    if (!existsSync(join(rootfs, 'bin')) && !existsSync(join(rootfs, 'usr'))) throw new RoamError('INPUT_INVALID', `rootfs: ${rootfs} has no bin or usr: not a root filesystem`);
    const tar = tarCreateTreeStream(rootfs);
    return this.store(tar.stream, tar.done);
  }

  /**
   * Takes an image a peer sent: the archive is kept whole first, then it must
   * hash to `id`, and every member is checked as a container's files from a
   * peer are (tree-guard.ts: nothing outside the root filesystem, no device
   * node, no hard link out) before it is unpacked.
   */
  async receive(id: string, archive: Readable): Promise<string> {
    const dir = this.dirOf(id);
    const staging = this.staging();
    try {
      const hash = createHash('sha256');
      archive.on('data', (chunk: Buffer) => hash.update(chunk));
      await pipeline(archive, createWriteStream(join(staging, 'image.tar'), { flags: 'wx', mode: 0o600 }));
      const got = hash.digest('hex');
      if (got !== id) throw new RoamError('PEER_PROTOCOL', `image ${id}: the archive received hashes to ${got}`);
      await writingTree(join(staging, 'rootfs'), () => unpackChecked(join(staging, 'rootfs'), join(staging, 'image.tar')));
      if (!this.has(id)) {
        rmSync(dir, { recursive: true, force: true });
        renameSync(staging, dir);
        writeFileSync(join(dir, 'complete'), '');
      }
      return id;
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }

  /** A fresh folder beside the images, with an empty rootfs in it. */
  private staging(): string {
    mkdirSync(this.root, { recursive: true });
    const staging = join(this.root, `.incoming-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`);
    mkdirSync(join(staging, 'rootfs'), { recursive: true });
    return staging;
  }

  /**
   * Writes the archive and unpacks it beside, hashing as it goes; the image
   * becomes visible (complete) only once both are done and the hash is right.
   */
  private async store(archive: Readable, producer: Promise<void>): Promise<string> {
    const staging = this.staging();
    try {
      const hash = createHash('sha256');
      const toFile = new PassThrough();
      const toTar = new PassThrough();
      archive.on('data', (chunk: Buffer) => hash.update(chunk));
      archive.on('error', (err) => (toFile.destroy(err), toTar.destroy(err)));
      // pipe() to both: the archive waits for the slower of the two.
      archive.pipe(toFile);
      archive.pipe(toTar);
      await Promise.all([pipeline(toFile, createWriteStream(join(staging, 'image.tar'))), tarExtract(join(staging, 'rootfs'), toTar), producer]);
      const id = hash.digest('hex');
      if (!this.has(id)) {
        rmSync(this.dirOf(id), { recursive: true, force: true });
        renameSync(staging, this.dirOf(id));
        writeFileSync(join(this.dirOf(id), 'complete'), '');
      }
      return id;
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }

  /** Image `id` was used (a container made from it, a peer told it is here): it is kept at least a retention from now. */
  touch(id: string): void {
    if (this.has(id)) utimesSync(join(this.dirOf(id), 'complete'), new Date(), new Date());
  }

  /**
   * Removes every image not in `inUse` that nobody used for `unusedMs`
   * (garbage a node would otherwise keep forever: images of containers that
   * moved on or stopped), and the staging folders an earlier agent process
   * left; returns the ids removed.
   */
  collect(inUse: ReadonlySet<string>, unusedMs: number, now = Date.now()): string[] {
    if (!existsSync(this.root)) return [];
    const removed: string[] = [];
    for (const entry of readdirSync(this.root)) {
      const path = join(this.root, entry);
      if (entry.startsWith('.incoming-')) {
        if (!entry.startsWith(`.incoming-${process.pid}-`)) rmSync(path, { recursive: true, force: true });
        continue;
      }
      if (!new RegExp(IMAGE_ID_PATTERN).test(entry) || inUse.has(entry)) continue;
      const marker = join(path, 'complete');
      // An image still arriving (no marker yet) is the receiver's to finish or remove.
      if (!existsSync(marker) || now - statSync(marker).mtimeMs < unusedMs) continue;
      rmSync(path, { recursive: true, force: true });
      removed.push(entry);
    }
    return removed;
  }

  /** The archive of image `id`, to send to a peer. */
  open(id: string): Readable {
    if (!this.has(id)) throw new RoamError('NOT_FOUND', `image ${id} is not on this node`);
    return createReadStream(this.archive(id));
  }
}
