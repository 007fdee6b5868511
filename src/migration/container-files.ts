/**
 * A container's files on the move, source side: its image (sent once per
 * target node, before the freeze), and its trees (root filesystem changes,
 * volumes): copied while it runs (proactive sync), then, once the dump has
 * stopped it, what changed since goes among the images (tree-sync.ts).
 * Without the proactive copy, everything goes in the freeze.
 */
import type { ContainerPart, NodeContainers } from '../container/node-containers.js';
import { deltaFiles, scanTree, treeDelta, writeDelta, type TreeManifest } from '../container/tree-sync.js';
import { tarCreateStream } from '../sys/tar.js';
import type { HandoverReport } from '../records/migration-report.js';
import type { PrepareRequest, TargetAgent } from './target-agent.js';

/** What of the target agent this needs. */
export type FilesTarget = Pick<TargetAgent, 'hasImage' | 'sendImage' | 'sendTree'>;

export class ContainerFilesMove {
  /** each tree as the proactive copy found it */
  private readonly copied = new Map<string, TreeManifest>();
  private presyncBytes = 0;
  private frozen = { bytes: 0, changed: 0, deleted: 0 };

  constructor(private readonly containers: NodeContainers, private readonly dir: string, private readonly part: ContainerPart) {}

  /** What the target needs to prepare the container (its own folders stand in for the volumes'). */
  wire(): NonNullable<PrepareRequest['container']> {
    return { image: this.part.image, spec: this.part.spec, volumes: this.part.volumes.map((v) => ({ destination: v.destination })) };
  }

  async sendImageTo(target: FilesTarget, address: string): Promise<void> {
    if (await target.hasImage(address, this.part.image)) return;
    await target.sendImage(address, this.part.image, this.containers.images.open(this.part.image));
  }

  /** Copies every tree as it is now to the arrival `id`, while the container runs. */
  async presync(target: FilesTarget, address: string, id: string): Promise<void> {
    for (const tree of this.containers.trees(this.dir, this.part)) {
      const manifest = scanTree(tree.root);
      this.copied.set(tree.name, manifest);
      const tar = tarCreateStream(tree.root, [...manifest.keys()], { live: true });
      await Promise.all([target.sendTree(address, id, tree.name, tar.stream), tar.done]);
      for (const st of manifest.values()) if (st.kind === 'file') this.presyncBytes += Number(st.size);
    }
  }

  /** With the container stopped: what each tree became since the copy (all of it, without one), into the images. */
  async writeFrozenDelta(imagesDir: string): Promise<void> {
    for (const tree of this.containers.trees(this.dir, this.part)) {
      const delta = treeDelta(this.copied.get(tree.name) ?? new Map(), scanTree(tree.root));
      await writeDelta(tree.root, delta, deltaFiles(imagesDir, tree.name));
      this.frozen.bytes += delta.bytes;
      this.frozen.changed += delta.changed.length;
      this.frozen.deleted += delta.deleted.length;
    }
  }

  report(): NonNullable<HandoverReport['files']> {
    return { presync_bytes: this.presyncBytes, frozen_bytes: this.frozen.bytes, frozen_changed: this.frozen.changed, frozen_deleted: this.frozen.deleted };
  }
}
