/**
 * The receiving half of a migration, on the target node, in the order the source asks for it: prepare a
 * locked namespace with the endpoint's IP and MAC (and what the mode needs for the memory), take the images,
 * restore into the namespace, switch (the endpoint becomes this node's and is announced: the point of no
 * return), lift the lock. Until the switch, abort removes every trace; after it, abort is refused.
 * Arrivals a previous run of this agent left behind are handled at start by target-leftovers.ts.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { stopLazyPages, type PullOutcome } from '../checkpoint/lazy-pages.js';
import { stopPageServer, ungatePageServer } from '../checkpoint/page-server.js';
import type { PageServerTls } from '../checkpoint/page-server-tls.js';
import { requireRoamSpec } from '../container/spec-rules.js';
import { unpackUpload } from '../container/tree-guard.js';
import type { EndpointManager } from '../endpoint/manager.js';
import { RoamError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { replays } from '../handover/deliver.js';
import { drainWhatWasKept, holdWhatTheLockDrops } from '../handover/hold.js';
import { resumeService } from '../handover/resume.js';
import type { HandoverCounts, ResumeMeasurement } from '../records/handover.js';
import type { HeldPackets } from '../sys/packet-hold.js';
import { requireFreeSpace } from '../sys/free-space.js';
import { hasConnectionOn } from '../sys/port-gate.js';
import { isSameProcessAlive } from '../sys/proc.js';
import { arriveContainerFiles, SWITCHED_FILE, type Arrival } from './arrival.js';
import { checkpointerFor } from './checkpointer-for.js';
import { strategyOf } from './modes/index.js';
import { Takeovers } from './takeovers.js';
import { PullVerdicts } from './target-pulls.js';
import { StallMeasurements } from './target-stalls.js';
import { reportPageServerRefusal } from './page-server-refusal.js';
import type { PrepareRequest, Prepared, Restored, RestoreRequest } from './target-agent.js';

/** How long a finished arrival's stall measurement and pull verdict stay available to the source. */
const KEEP_STALL_MS = 30000;
/** After the switch, how long the service waits behind the lock for the source's unlock before the target lifts it itself. */
const UNLOCK_WATCHDOG_MS = 10000;
/** An arrival not yet switched that the source has not driven for this long is given up (the source died, or cannot reach us). */
/** What an arrival may take and how long it may wait (config limits). */
export interface ArrivalLimits {
  /** before the switch, an arrival whose source is silent this long is given up */
  idleMs: number;
  /** all of one migration's images together */
  imageBytes: number;
  /** free space an arrival must leave in the state directory */
  reserveFreeBytes: number;
}

export class MigrationTarget {
  private readonly arrivals = new Map<string, Arrival>();
  private readonly stalls: StallMeasurements;
  private readonly pulls: PullVerdicts;
  private readonly takeovers: Takeovers;
  private expiry: NodeJS.Timeout | undefined;

  constructor(
    private readonly manager: EndpointManager,
    private readonly stateDir: string,
    /** after the switch: converge the local overlay and tell the peers, before answering */
    private readonly announce: () => Promise<void>,
    private readonly events?: EventBus,
    /** where page servers listen: the underlay address the source can reach */
    private readonly underlayAddress = '127.0.0.1',
    /** page-server connections over TLS (the cluster's, from the config's tls); plain without */
    private readonly pageTls?: PageServerTls,
    private readonly limits: ArrivalLimits = { idleMs: 60000, imageBytes: Number.MAX_SAFE_INTEGER, reserveFreeBytes: 0 },
  ) {
    this.takeovers = new Takeovers(stateDir);
    this.pulls = new PullVerdicts(KEEP_STALL_MS, events);
    this.stalls = new StallMeasurements(KEEP_STALL_MS, events);
  }

  private arrival(id: string): Arrival {
    const a = this.arrivals.get(id);
    if (!a) throw new RoamError('NOT_FOUND', `no migration ${id} is arriving here`);
    a.lastSeen = Date.now();
    return a;
  }

  /**
   * Arrivals whose source stopped driving them before the switch are
   * removed here, as an abort would: nothing of a migration that cannot
   * complete stays locked and half-built. (After the switch the unlock
   * watchdog has the same role.) Asked later, this node answers an abort of
   * such an arrival with success: it never switched.
   */
  private expireIdleArrivals(): void {
    for (const a of this.arrivals.values()) {
      // A streamed dump talks to the page server, not to this agent: while it sends, the source is at work.
      const ps = a.pageServer;
      const streaming = ps !== undefined && isSameProcessAlive(ps.pid, ps.startTime) && hasConnectionOn(ps.port);
      if (a.switched || a.uploads > 0 || streaming || Date.now() - a.lastSeen < this.limits.idleMs) continue;
      this.events?.warn(`migration ${a.id}: its source has not been heard from for ${this.limits.idleMs / 1000} s before the switch; giving up the arrival of ${a.name}`);
      this.abort(a.id).catch((err: unknown) => this.events?.error(`migration ${a.id}: removing the arrival of ${a.name}: ${String(err)}`));
    }
    if (this.arrivals.size === 0) {
      clearInterval(this.expiry);
      this.expiry = undefined;
    }
  }

  /** `from`: the node asking (peer/identity.ts); every later step of `req.id` must come from it (preparedBy). */
  /** `fromAddress`: where the prepare came from, the only address (with this node's) that may reach its page server. */
  async prepare(req: PrepareRequest, from: string | undefined, fromAddress?: string): Promise<Prepared> {
    // The configuration goes to runc as root here: only what roam itself builds for a container (container/spec-rules.ts).
    if (req.container) requireRoamSpec(req.container.spec, req.container.volumes, `migration ${req.id}: the configuration of container ${req.name}`);
    if (this.arrivals.has(req.id)) throw new RoamError('CONFLICT', `migration ${req.id} is already being prepared here`);
    const strategy = strategyOf(req.mode);
    if (req.container && !strategy.forContainers) throw new RoamError('INPUT_INVALID', `mode: ${req.mode} is not available for containers (${req.name})`);
    if (req.container && !this.manager.containers.images.has(req.container.image)) {
      throw new RoamError('CONFLICT', `image ${req.container.image} of ${req.name} is not on this node; send it first`);
    }
    // Where its images will go: an arrival that would leave less than the reserve is not taken.
    mkdirSync(join(this.stateDir, 'migrations'), { recursive: true });
    requireFreeSpace(join(this.stateDir, 'migrations'), this.limits.reserveFreeBytes, `migration ${req.id} of ${req.name}`);
    const dir = join(this.stateDir, 'migrations', req.id);
    const imagesDir = join(dir, 'images');
    mkdirSync(imagesDir, { recursive: true });
    try {
      // A container's volumes land in its folder here; their data arrives with the migration.
      const c = req.container;
      const container = c ? { container: { image: c.image, spec: c.spec, volumes: this.manager.containers.arrivingVolumes(this.manager.dirOf(req.name), c.volumes) } } : {};
      const record = await this.manager.prepareIncoming(
        {
          name: req.name, ip: req.ip, prefixLength: req.prefixLength, mac: req.mac, generation: req.generation, command: req.command, createdAt: req.createdAt,
          ...container, ...(req.policy ? { policy: req.policy } : {}),
        },
        req.id,
      );
      const arrival: Arrival = {
        id: req.id, name: req.name, dir, imagesDir, record, strategy, handover: req.handover, underlayAddress: this.underlayAddress, pageTls: this.pageTls,
        hold: undefined, sourceHeld: undefined, connections: 0, restored: undefined, switched: false, lastSeen: Date.now(), uploads: 0, imageBytes: 0, from,
        ...(fromAddress ? { sourceAddress: fromAddress } : {}),
      };
      this.arrivals.set(req.id, arrival);
      this.expiry ??= setInterval(() => this.expireIdleArrivals(), 5000).unref();
      if (replays(req.handover)) arrival.hold = await holdWhatTheLockDrops(record.netns, (m) => this.events?.warn(`migration ${req.id}: ${m}`));
      return await strategy.prepareArrival(arrival);
    } catch (err) {
      if (this.arrivals.has(req.id)) await this.abort(req.id).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Who prepared migration `id` here (while remembered); undefined: nothing of it is known here. */
  preparedBy(id: string): { from: string | undefined } | undefined {
    // While it arrives, then (taken over) until the source settles it: its steps up to the last come from that node.
    const a = this.arrivals.get(id);
    if (a) return { from: a.from };
    const took = this.takeovers.find(id);
    return took ? { from: took.from } : undefined;
  }

  /** The source still means to use this arrival (prepared ahead of a predicted move): it is not idle. */
  keep(id: string): void {
    this.arrival(id);
  }

  /** What the source's lock kept (roam-hold's format), delivered at the unlock. */
  receiveHeld(id: string, held: HeldPackets): { packets: number } {
    const a = this.arrival(id);
    a.sourceHeld = held;
    return { packets: held.packets.length };
  }

  /** An upload into the arrival's images folder (`write` takes it from the wire); the arrival is not idle meanwhile. */
  /** `write` gets the bytes this migration's images may still take (limits.imageBytes, all uploads together). */
  receiveImages<T extends { bytes: number }>(id: string, write: (imagesDir: string, maxBytes: number) => Promise<T>): Promise<T> {
    const a = this.arrival(id);
    return this.uploading(a, async () => {
      const got = await write(a.imagesDir, this.limits.imageBytes - a.imageBytes);
      a.imageBytes += got.bytes;
      return got;
    });
  }

  hasImage(image: string): boolean {
    // A peer asks before it sends the image and prepares a container from it: kept from now.
    const here = this.manager.containers.images.has(image);
    if (here) this.manager.containers.images.touch(image);
    return here;
  }

  /** A container image a source sends before it migrates a container made from it here. */
  receiveImage(image: string, archive: Readable): Promise<string> {
    return this.manager.containers.images.receive(image, archive);
  }

  /**
   * A container's files, copied while it still runs on the source (proactive
   * sync): unpacked at once into the arriving container's folders, so that
   * the freeze only carries what changed since (arrival.ts).
   */
  async receiveTree(id: string, tree: string, archive: Readable): Promise<void> {
    const a = this.arrival(id);
    const part = a.record.container;
    const root = part ? this.manager.containers.trees(this.manager.dirOf(a.name), part).find((t) => t.name === tree)?.root : undefined;
    if (!root) throw new RoamError('NOT_FOUND', `migration ${id}: ${a.name} has no tree ${tree}`);
    // Checked whole before it is unpacked (container/tree-guard.ts), so it waits in the arrival's folder, outside the tree.
    const spool = join(a.dir, `tree-${tree}-${process.hrtime.bigint()}.tar`);
    await this.uploading(a, () => unpackUpload(root, archive, spool, () => {
      if (a.restoring) throw new RoamError('CONFLICT', `migration ${id}: ${a.name} is being restored; its ${tree} files take no more uploads`);
    }));
  }

  private async uploading<T>(a: Arrival, work: () => Promise<T>): Promise<T> {
    a.uploads++;
    try {
      return await work();
    } finally {
      a.uploads--;
      a.lastSeen = Date.now();
    }
  }

  async restore(id: string, req: RestoreRequest): Promise<Restored> {
    const a = this.arrival(id);
    if (a.restored) throw new RoamError('CONFLICT', `migration ${id}: already restored`);
    // From here the container may run in its trees: no upload is unpacked into them (receiveTree).
    a.restoring = true;
    a.connections = req.connections;
    const started = performance.now();
    await a.strategy.beforeRestore(a, req.lazySource, id);
    if (a.lazyPages) this.pulls.watch(a, () => this.arrivals.has(a.id));
    if (a.record.container) await arriveContainerFiles(this.manager, a, a.record.container);
    const r = await checkpointerFor(this.manager, a.record).restore({
      netns: a.record.netns, imagesDir: a.imagesDir, pipeKeys: req.pipeKeys, leaveStopped: a.handover !== 'off', lazyPages: a.lazyPages !== undefined,
    });
    a.restored = { pid: r.pid, shimPid: r.shimPid };
    return { pid: r.pid, restore_ms: performance.now() - started };
  }

  /** How the post-copy pull of `id` ended (waits for it). */
  pullOf(id: string): Promise<PullOutcome> {
    return this.pulls.of(id);
  }

  /** The decision point: from here the endpoint is this node's. */
  async switchOver(id: string): Promise<void> {
    const a = this.arrival(id);
    if (!a.restored) throw new RoamError('CONFLICT', `migration ${id}: nothing restored to switch to`);
    if (a.switched) return;
    await this.manager.bridgeIncoming(a.name);
    this.manager.adoptIncoming(a.name, a.restored);
    // Before the answer: asked later, even after the endpoint moved on, this node says it took over.
    this.takeovers.record(id, a.name, a.from);
    a.switched = true;
    writeFileSync(join(a.dir, SWITCHED_FILE), JSON.stringify({ name: a.name }));
    a.watchdog = setTimeout(() => {
      this.events?.warn(`migration ${id}: no unlock from the source ${UNLOCK_WATCHDOG_MS} ms after the switch; lifting the lock on ${a.name} here`);
      this.unlock(id, UNLOCK_WATCHDOG_MS).catch((err: unknown) => this.events?.error(`migration ${id}: unlocking ${a.name} here failed: ${String(err)}`));
    }, UNLOCK_WATCHDOG_MS);
    a.watchdog.unref();
    await this.announce();
  }

  /**
   * Brings the service back: what the locks kept is delivered, connections
   * are kicked, the lock is lifted and the tree continues (handover/). Then
   * measures, in the background, how long each client took to come back.
   */
  unlock(id: string, frozenMs: number): Promise<HandoverCounts> {
    const a = this.arrival(id);
    const restored = a.restored;
    if (!a.switched || !restored) throw new RoamError('CONFLICT', `migration ${id}: not switched yet, the lock stays`);
    clearTimeout(a.watchdog);
    a.unlocking ??= this.unlockNow(a, restored, frozenMs);
    return a.unlocking;
  }

  private async unlockNow(a: Arrival, restored: { pid: number; shimPid: number }, frozenMs: number): Promise<HandoverCounts> {
    const id = a.id;
    const asked = performance.now();
    const kept = await drainWhatWasKept(a.hold, (m) => this.events?.warn(`migration ${id}: ${m}`));
    const held = [a.sourceHeld, kept].filter((h): h is HeldPackets => h !== undefined);
    const counts = await resumeService({
      netns: a.record.netns, ip: a.record.ip, mechanism: a.handover, held, connections: a.connections,
      hold: a.hold, pid: restored.pid, stopped: a.handover !== 'off',
    });
    const unlockedAt = performance.now();
    // Lifted once the answer is on its way: the source's frozen time waits for that answer.
    const ps = a.pageServer;
    if (ps) setImmediate(() => ungatePageServer(ps));
    this.arrivals.delete(id);
    rmSync(join(a.dir, SWITCHED_FILE), { force: true });
    // Post-copy: the lazy-pages daemon still works in the images folder; it goes once the pull has ended.
    if (!a.lazyPages) rmSync(a.dir, { recursive: true, force: true });
    this.events?.emit('migration.arrival', { id, name: a.name, mode: a.strategy.name, result: 'success' });
    this.events?.emit('migration.handover', { id, name: a.name, counts });
    this.stalls.start({ id, name: a.name, netns: a.record.netns }, frozenMs, asked, unlockedAt);
    return counts;
  }

  /** The per-connection resume delays after the unlock of `id` (waits for the measurement to end). */
  stallOf(id: string): Promise<ResumeMeasurement> {
    return this.stalls.of(id);
  }

  /** The source has recorded that this node took the migration over: the record of it may go. */
  settled(id: string): void {
    this.takeovers.forget(id);
  }

  async abort(id: string): Promise<void> {
    const took = this.takeovers.find(id);
    if (took) throw new RoamError('CONFLICT', `migration ${id}: ${took.name} was taken over here at ${took.at}; it cannot be undone`);
    const a = this.arrivals.get(id);
    const arrived = a ? undefined : this.manager.arrivedWith(id);
    if (arrived) throw new RoamError('CONFLICT', `migration ${id}: ${arrived} arrived here with it; it cannot be undone`);
    if (!a) return;
    if (a.switched) throw new RoamError('CONFLICT', `migration ${id}: already switched to ${a.name} here; it cannot be undone`);
    a.hold?.close();
    const refusal = a.pageServer ? await stopPageServer(a.pageServer) : undefined;
    if (refusal && this.events) reportPageServerRefusal(this.events, `migration ${id}: the page server`, refusal);
    if (a.lazyPages) await stopLazyPages(a.lazyPages);
    await this.manager.abortIncoming(a.name);
    rmSync(a.dir, { recursive: true, force: true });
    this.arrivals.delete(id);
    this.events?.emit('migration.arrival', { id, name: a.name, mode: a.strategy.name, result: 'rolled_back' });
  }

  inFlight(): number {
    return this.arrivals.size;
  }
}
