/**
 * The containers of one node, as files: the images it holds, runc's state
 * (`<stateDir>/runc`, what `runc --root` there lists), and each container
 * endpoint's folder:
 *
 *   bundle/config.json   the base configuration rendered for this node
 *   bundle/rootfs        the overlay: the image below, upper/ above
 *   upper/ work/         the container's own changes, overlayfs's scratch
 *   volumes/N/           a volume's data, on a node the container moved to
 *   criu.conf            CRIU's options for the next dump or restore
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import type { StartedProcess } from '../sys/launch.js';
import { mountOverlay, unmount } from '../sys/mounts.js';
import { defaultSpec, deleteContainer, runContainer, type Container } from '../sys/runc.js';
import type { ContainerFiles } from '../checkpoint/runc-container.js';
import { ImageStore } from './image-store.js';
import type { ContainerRequest, Volume } from '../records/container.js';
import { parseOciSpec, readBundle, renderSpec, type OciSpec } from './spec.js';
import { requireRoamSpec } from './spec-rules.js';

/** What an endpoint record keeps of its container. */
export interface ContainerPart {
  /** the image id (this node's ImageStore) */
  image: string;
  /** the base configuration, without what depends on the node */
  spec: OciSpec;
  /** the volumes, with their folders on this node */
  volumes: Volume[];
}

export interface ContainerLayout {
  bundle: string;
  rootfs: string;
  upper: string;
  work: string;
  criuConfig: string;
}

/** The trees a container's files travel as: its root filesystem changes, and each volume. */
export interface ContainerTree {
  name: string;
  /** the tree's folder on this node */
  root: string;
}

export class NodeContainers {
  readonly images: ImageStore;
  readonly runcRoot: string;

  constructor(stateDir: string) {
    this.images = new ImageStore(stateDir);
    this.runcRoot = join(stateDir, 'runc');
  }

  layout(dir: string): ContainerLayout {
    return { bundle: join(dir, 'bundle'), rootfs: join(dir, 'bundle', 'rootfs'), upper: join(dir, 'upper'), work: join(dir, 'work'), criuConfig: join(dir, 'criu.conf') };
  }

  container(name: string): Container {
    return { root: this.runcRoot, id: name };
  }

  files(name: string, dir: string): ContainerFiles {
    const l = this.layout(dir);
    return { container: this.container(name), dir, bundle: l.bundle, criuConfig: l.criuConfig };
  }

  /** The folders a container arriving here keeps its volumes in (the data comes with the migration). */
  arrivingVolumes(dir: string, volumes: readonly Pick<Volume, 'destination'>[]): Volume[] {
    return volumes.map((v, i) => ({ source: join(dir, 'volumes', String(i)), destination: v.destination }));
  }

  trees(dir: string, part: ContainerPart): ContainerTree[] {
    return [{ name: 'rootfs', root: this.layout(dir).upper }, ...part.volumes.map((v, i) => ({ name: `volume-${i}`, root: v.source }))];
  }

  /**
   * A new container's image and base configuration: a bundle's own (its
   * program, unless `command` gives one), or runc's default around
   * `command`. The root filesystem becomes an image of this node (one per
   * content). Checked before anything is made: both folders and volumes.
   */
  async partFor(req: ContainerRequest, command: readonly string[], node: string): Promise<ContainerPart> {
    if ((req.rootfs === undefined) === (req.bundle === undefined)) throw new RoamError('INPUT_INVALID', 'container: give either a rootfs folder or a bundle, not both');
    for (const v of req.volumes) {
      if (!existsSync(v.source) || !statSync(v.source).isDirectory()) throw new RoamError('INPUT_INVALID', `volume: ${v.source} is not a folder on node ${node}`);
    }
    const { spec, rootfs } = req.bundle !== undefined
      ? readBundle(req.bundle)
      : { spec: parseOciSpec(await defaultSpec(), 'runc spec'), rootfs: req.rootfs! };
    if (command.length > 0) spec.process.args = [...command];
    if (spec.process.args[0] === '') throw new RoamError('INPUT_INVALID', 'command: give the program to run after --');
    // The same rule a target holds it to when the container arrives: whatever roam runs, it can move.
    requireRoamSpec(spec, req.volumes, req.bundle !== undefined ? `container: the bundle's configuration ${join(req.bundle, 'config.json')}` : "container: runc's default configuration");
    const image = await this.images.importFolder(rootfs);
    return { image, spec, volumes: req.volumes.map((v) => ({ ...v })) };
  }

  /** Makes the folders (empty: an arrival fills them before the restore). */
  makeFolders(dir: string, part: ContainerPart): void {
    const l = this.layout(dir);
    for (const d of [l.upper, l.work, l.rootfs, ...part.volumes.map((v) => v.source)]) mkdirSync(d, { recursive: true });
  }

  /** Mounts the root filesystem and writes the configuration: ready for runc run or restore. */
  assemble(name: string, dir: string, netns: string, part: ContainerPart): void {
    if (!this.images.has(part.image)) throw new RoamError('CONTAINER_FAILED', `image ${part.image} is not on this node`);
    this.images.touch(part.image);
    for (const v of part.volumes) if (!existsSync(v.source)) throw new RoamError('INPUT_INVALID', `volume: ${v.source} does not exist on this node`);
    this.makeFolders(dir, part);
    const l = this.layout(dir);
    mountOverlay(l.rootfs, { lower: this.images.rootfs(part.image), upper: l.upper, work: l.work });
    const spec = renderSpec(part.spec, { hostname: name, netns, criuConfig: l.criuConfig, volumes: part.volumes });
    writeFileSync(join(l.bundle, 'config.json'), JSON.stringify(spec, null, 2));
  }

  /** Starts a new container (assembled, in its endpoint's namespace) under a shim. */
  async start(name: string, dir: string, netns: string, part: ContainerPart): Promise<StartedProcess> {
    this.assemble(name, dir, netns, part);
    try {
      return await runContainer(this.container(name), this.layout(dir).bundle, dir);
    } catch (err) {
      await this.remove(name, dir).catch(() => undefined);
      throw err;
    }
  }

  /** runc forgets the container (killing what is left of it) and its root filesystem is unmounted. */
  async remove(name: string, dir: string): Promise<void> {
    await deleteContainer(this.container(name), dir);
    unmount(this.layout(dir).rootfs);
  }
}
