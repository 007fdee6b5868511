/**
 * The receiving half of a migration, on the target node: prepare a locked
 * namespace with the endpoint's IP and MAC, take the images, restore into
 * the namespace, switch (the endpoint becomes this node's and is announced:
 * the point of no return), lift the lock. Until the switch, abort removes
 * every trace; after it, abort is refused.
 */
import type { EndpointPolicy } from '../policy/schema.js';
import type { IncomingMessage } from 'node:http';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PageServerTls } from '../checkpoint/page-server-tls.js';
import type { PageServerRefusal } from '../sys/criu/rpc.js';
import {
  restoreUnderShim, startLazyPages, startPageServer, stopLazyPages, stopPageServer, waitForPageServer, type LazyPagesDaemon, type PageServer, type PullOutcome,
} from '../checkpoint/executor.js';
import { isSameProcessAlive, stopProcess, processStartTime } from '../sys/proc.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { RoamError } from '../errors/roam-error.js';
import type { HeldPackets, PacketHold } from '../sys/packet-hold.js';
import { drainWhatWasKept, holdWhatTheLockDrops } from '../handover/hold.js';
import { receiveImages } from './image-transfer.js';
import { JOURNAL_FILE } from './journal.js';
import { measureResume, type ResumeMeasurement } from '../handover/stall-meter.js';
import { replays, type HandoverCounts, type HandoverMechanism } from '../handover/deliver.js';
import { resumeService } from '../handover/resume.js';
import type { EventBus } from '../events/bus.js';
import type { Readable } from 'node:stream';
import type { OciSpec } from '../container/spec.js';
import type { ContainerPart } from '../container/node-containers.js';
import { applyDelta, deltaFiles } from '../container/tree-sync.js';
import { restoreContainer } from '../checkpoint/container-executor.js';
import { tarExtract } from '../sys/tar.js';

/** How long a finished arrival's stall measurement stays available to the source. */
const KEEP_STALL_MS = 30000;
/** After the switch, how long the service waits behind the lock for the source's unlock before the target lifts it itself. */
const UNLOCK_WATCHDOG_MS = 10000;
/** An arrival not yet switched that the source has not driven for this long is given up (the source died, or cannot reach us). */
const ARRIVAL_IDLE_MS = 60000;
/** Written into an arrival's folder at the switch, gone at the unlock: a restarted agent resumes what it finds. */
const SWITCHED_FILE = 'switched.json';

export interface PrepareRequest {
  id: string;
  mode?: string;
  handover?: HandoverMechanism;
  name: string;
  ip: string;
  prefixLength: number;
  mac: string;
  generation: number;
  command: string[];
  createdAt: string;
  /** a container: its image (already sent: hasImage/receiveImage), base configuration and volumes */
  container?: { image: string; spec: OciSpec; volumes: { destination: string }[] };
  /** the endpoint's own policy, which moves with it */
  policy?: EndpointPolicy;
}

interface Arrival {
  id: string;
  name: string;
  dir: string;
  imagesDir: string;
  record: StoredEndpoint;
  mode: string;
  handover: HandoverMechanism;
  /** keeps what the lock drops here (replaying mechanisms only) */
  hold: PacketHold | undefined;
  /** what the source's lock kept, sent before the unlock */
  sourceHeld: HeldPackets | undefined;
  connections: number;
  /** streamed mode: the page server the source's dump sends memory to */
  pageServer: PageServer | undefined;
  /** post-copy: the daemon that pulls the memory the restored tree still lacks */
  lazyPages: LazyPagesDaemon | undefined;
  restored: { pid: number; shimPid: number } | undefined;
  switched: boolean;
  /** after the switch: unlocks on its own if the source never asks (it died) */
  watchdog?: NodeJS.Timeout;
  unlocking?: Promise<HandoverCounts>;
  /** when the source last asked anything about it, and uploads under way: an arrival nobody drives expires */
  lastSeen: number;
  uploads: number;
}

/** What the target tells the source once it is prepared. */
export interface Prepared {
  /** streamed mode: the port of the page server on the target's underlay address */
  pageServerPort?: number;
}

/** How long a restore waits for the page server to finish writing what the dump sent. */
const PAGE_SERVER_DRAIN_MS = 60000;

export class MigrationTarget {
  private readonly arrivals = new Map<string, Arrival>();
  private readonly stalls = new Map<string, Promise<ResumeMeasurement>>();
  private readonly pulls = new Map<string, Promise<PullOutcome>>();

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
  ) {}

  private expiry: NodeJS.Timeout | undefined;

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
      // A streamed dump talks to the page server, not to this agent: while it runs, the source is at work.
      const streaming = a.pageServer !== undefined && isSameProcessAlive(a.pageServer.pid, a.pageServer.startTime);
      if (a.switched || a.uploads > 0 || streaming || Date.now() - a.lastSeen < ARRIVAL_IDLE_MS) continue;
      this.events?.warn(`migration ${a.id}: its source has not been heard from for ${ARRIVAL_IDLE_MS / 1000} s before the switch; giving up the arrival of ${a.name}`);
      this.abort(a.id).catch((err: unknown) => this.events?.error(`migration ${a.id}: removing the arrival of ${a.name}: ${String(err)}`));
    }
    if (this.arrivals.size === 0) {
      clearInterval(this.expiry);
      this.expiry = undefined;
    }
  }

  async prepare(req: PrepareRequest): Promise<Prepared> {
    if (this.arrivals.has(req.id)) throw new RoamError('CONFLICT', `migration ${req.id} is already being prepared here`);
    if (req.container && req.mode === 'post-copy') throw new RoamError('INPUT_INVALID', `mode: post-copy is not available for containers (${req.name})`);
    if (req.container && !this.manager.containers.images.has(req.container.image)) {
      throw new RoamError('CONFLICT', `image ${req.container.image} of ${req.name} is not on this node; send it first`);
    }
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
      const handover = req.handover ?? 'full';
      const arrival: Arrival = {
        id: req.id, name: req.name, dir, imagesDir, record, mode: req.mode ?? 'stop-copy', handover,
        hold: undefined, sourceHeld: undefined, connections: 0, pageServer: undefined, lazyPages: undefined, restored: undefined, switched: false,
        lastSeen: Date.now(), uploads: 0,
      };
      this.arrivals.set(req.id, arrival);
      this.expiry ??= setInterval(() => this.expireIdleArrivals(), 5000).unref();
      if (replays(handover)) arrival.hold = await holdWhatTheLockDrops(record.netns, (m) => this.events?.warn(`migration ${req.id}: ${m}`));
      if (arrival.mode === 'streamed') {
        arrival.pageServer = await startPageServer(imagesDir, this.underlayAddress, this.pageTls);
        return { pageServerPort: arrival.pageServer.port };
      }
      return {};
    } catch (err) {
      if (this.arrivals.has(req.id)) await this.abort(req.id).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The source still means to use this arrival (prepared ahead of a predicted move): it is not idle. */
  keep(id: string): void {
    this.arrival(id);
  }

  /** What the source's lock kept (roam-hold's format), delivered at the unlock. */
  receiveHeld(id: string, held: HeldPackets): { packets: number } {
    const a = this.arrival(id);
    a.sourceHeld = held;
    return { packets: a.sourceHeld.packets.length };
  }

  async receiveImages(id: string, body: IncomingMessage): Promise<{ files: number; bytes: number }> {
    const a = this.arrival(id);
    a.uploads++;
    try {
      return await receiveImages(a.imagesDir, body);
    } finally {
      a.uploads--;
      a.lastSeen = Date.now();
    }
  }

  hasImage(image: string): boolean {
    return this.manager.containers.images.has(image);
  }

  /** A container image a source sends before it migrates a container made from it here. */
  receiveImage(image: string, archive: Readable): Promise<string> {
    return this.manager.containers.images.receive(image, archive);
  }

  /**
   * A container's files, copied while it still runs on the source (proactive
   * sync): unpacked at once into the arriving container's folders, so that
   * the freeze only carries what changed since (restoreContainerHere).
   */
  async receiveTree(id: string, tree: string, archive: Readable): Promise<void> {
    const a = this.arrival(id);
    const part = a.record.container;
    const root = part ? this.manager.containers.trees(this.manager.dirOf(a.name), part).find((t) => t.name === tree)?.root : undefined;
    if (!root) throw new RoamError('NOT_FOUND', `migration ${id}: ${a.name} has no tree ${tree}`);
    a.uploads++;
    try {
      await tarExtract(root, archive);
    } finally {
      a.uploads--;
      a.lastSeen = Date.now();
    }
  }

  async restore(id: string, pipeKeys: string[], connections = 0, lazySource?: { address: string; port: number }): Promise<{ pid: number; restore_ms: number }> {
    const a = this.arrival(id);
    if (a.restored) throw new RoamError('CONFLICT', `migration ${id}: already restored`);
    if (a.mode === 'post-copy' && !lazySource) throw new RoamError('INPUT_INVALID', `migration ${id}: a post-copy restore needs the source's lazy page server`);
    a.connections = connections;
    const started = performance.now();
    // Streamed: the dump is over when the source asks for this, and the page server writes its last pages and exits.
    if (a.pageServer) await waitForPageServer(a.pageServer, PAGE_SERVER_DRAIN_MS);
    if (lazySource) {
      a.lazyPages = await startLazyPages(a.imagesDir, lazySource, this.pageTls);
      this.watchPull(a, a.lazyPages);
    }
    const leaveStopped = a.handover !== 'off';
    const r = a.record.container
      ? await this.restoreContainerHere(a, a.record.container, leaveStopped)
      : await restoreUnderShim({ dir: this.manager.dirOf(a.name), netns: a.record.netns, imagesDir: a.imagesDir, pipeKeys, leaveStopped, lazyPages: a.lazyPages !== undefined });
    a.restored = { pid: r.pid, shimPid: r.shimPid };
    return { pid: r.pid, restore_ms: performance.now() - started };
  }

  /**
   * A container: the changes to its files made since the proactive copy (or
   * all of them) came with the images; they are applied, the root
   * filesystem is mounted, and runc restores the container, which it then
   * knows on this node.
   */
  private async restoreContainerHere(a: Arrival, part: ContainerPart, leaveStopped: boolean): Promise<{ pid: number; shimPid: number }> {
    const dir = this.manager.dirOf(a.name);
    const c = this.manager.containers;
    for (const tree of c.trees(dir, part)) {
      const files = deltaFiles(a.imagesDir, tree.name);
      if (!existsSync(files.archive)) throw new RoamError('PEER_PROTOCOL', `migration ${a.id}: the images lack ${a.name}'s ${tree.name} files`);
      await applyDelta(tree.root, files);
    }
    c.assemble(a.name, dir, a.record.netns, part);
    return restoreContainer({ ...c.files(a.name, dir), imagesDir: a.imagesDir, leaveStopped });
  }

  /**
   * Post-copy: once the daemon ends, the restored tree either has all of its
   * memory or must not run on. Without its daemon, a missing page would read
   * as zeros (userfaultfd unregisters when its last holder closes it): the
   * tree is ended at once, and the source learns why from pullOf().
   */
  private watchPull(a: Arrival, daemon: LazyPagesDaemon): void {
    const verdict = daemon.outcome.then(async (o) => {
      if (!o.complete && a.restored) {
        await stopProcess(a.restored.pid, processStartTime(a.restored.pid) ?? 0, 0);
        this.events?.error(`migration ${a.id}: the pull of ${a.name}'s memory failed (${o.reason ?? 'incomplete'}); its restored copy was ended rather than run on missing memory`);
      }
      // The images (and the daemon's log) were kept for the daemon; an arrival still open removes them itself.
      if (!this.arrivals.has(a.id)) rmSync(a.dir, { recursive: true, force: true });
      return o;
    });
    this.pulls.set(a.id, verdict);
    void verdict.finally(() => setTimeout(() => this.pulls.delete(a.id), KEEP_STALL_MS).unref());
  }

  /** How the post-copy pull of `id` ended (waits for it). */
  async pullOf(id: string): Promise<PullOutcome> {
    const p = this.pulls.get(id);
    if (!p) throw new RoamError('NOT_FOUND', `no post-copy pull for migration ${id} here`);
    return p;
  }

  /** The decision point: from here the endpoint is this node's. */
  async switchOver(id: string): Promise<void> {
    const a = this.arrival(id);
    if (!a.restored) throw new RoamError('CONFLICT', `migration ${id}: nothing restored to switch to`);
    if (a.switched) return;
    await this.manager.bridgeIncoming(a.name);
    this.manager.adoptIncoming(a.name, a.restored);
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
    this.arrivals.delete(id);
    rmSync(join(a.dir, SWITCHED_FILE), { force: true });
    // Post-copy: the lazy-pages daemon still works in the images folder; it goes once the pull has ended.
    if (!a.lazyPages) rmSync(a.dir, { recursive: true, force: true });
    this.events?.emit('migration.arrival', { id, name: a.name, mode: a.mode, result: 'success' });
    this.events?.emit('migration.handover', { id, name: a.name, counts });
    // What clients waited: frozen until the unlock was asked for, then the handover, then until their data came.
    const stall = measureResume(a.record.netns, unlockedAt).then((m) => ({ ...m, resumedAfterMs: m.resumedAfterMs.map((r) => r + (unlockedAt - asked)) }));
    this.stalls.set(id, stall);
    setTimeout(() => this.stalls.delete(id), KEEP_STALL_MS).unref();
    stall.then(
      (m) => this.events?.emit('migration.stall', { id, name: a.name, stallsMs: m.resumedAfterMs.map((r) => frozenMs + r), idle: m.idle }),
      (err) => this.events?.warn(`migration ${id}: could not read the restored connections' TCP state: ${String(err)}`),
    );
    return counts;
  }

  /** The per-connection resume delays after the unlock of `id` (waits for the measurement to end). */
  async stallOf(id: string): Promise<ResumeMeasurement> {
    const m = this.stalls.get(id);
    if (!m) throw new RoamError('NOT_FOUND', `no stall measurement for migration ${id} here`);
    return m;
  }

  async abort(id: string): Promise<void> {
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
    this.events?.emit('migration.arrival', { id, name: a.name, mode: a.mode, result: 'rolled_back' });
  }

  /**
   * At start: arrivals of a previous run of this agent can never complete.
   * Their endpoint state goes with EndpointManager.adopt(); their images here.
   * (A source keeps its own images after a failed rollback: those have a dump log.)
   */
  static removeLeftovers(stateDir: string, log: (m: string) => void): void {
    const root = join(stateDir, 'migrations');
    if (!existsSync(root)) return;
    for (const id of readdirSync(root)) {
      // A source's own migrations (its journal) are recovered by MigrationSource; switched arrivals by resumeSwitchedLeftovers.
      if (existsSync(join(root, id, JOURNAL_FILE)) || existsSync(join(root, id, 'images', 'dump.log')) || existsSync(join(root, id, SWITCHED_FILE))) continue;
      rmSync(join(root, id), { recursive: true, force: true });
      log(`removed the images of unfinished arrival ${id}`);
    }
  }

  /**
   * At start, after the endpoints are adopted: arrivals a previous run of
   * this agent switched to but never unlocked. The endpoint is ours; it
   * waits stopped behind the lock. It is brought back with a kick (what the
   * locks kept is gone with that run; the clients send it again).
   */
  async resumeSwitchedLeftovers(): Promise<void> {
    const root = join(this.stateDir, 'migrations');
    if (!existsSync(root)) return;
    for (const id of readdirSync(root)) {
      const marker = join(root, id, SWITCHED_FILE);
      if (!existsSync(marker)) continue;
      const { name } = JSON.parse(readFileSync(marker, 'utf8')) as { name: string };
      const r = this.manager.stored(name);
      try {
        if (r && isSameProcessAlive(r.pid, r.startTime)) {
          await this.manager.bridgeIncoming(name);
          await resumeService({ netns: r.netns, ip: r.ip, mechanism: 'kick', held: [], connections: 0, pid: r.pid, stopped: true });
          this.events?.warn(`migration ${id}: ${name} had been switched to here but not unlocked; it is back, its clients kicked`);
        }
      } catch (err) {
        this.events?.error(`migration ${id}: resuming ${name} here failed: ${String(err)}`);
      }
      rmSync(join(root, id), { recursive: true, force: true });
    }
  }

  inFlight(): number {
    return this.arrivals.size;
  }
}

/** Says and counts a page server's refusal as any other failed peer handshake (roam_peer_tls_refusals_total). */
export function reportPageServerRefusal(events: EventBus, what: string, r: PageServerRefusal): void {
  events.warn(`${what} refused a connection from ${r.from} at the TLS handshake (${r.reason}); that migration cannot go on`);
  events.emit('peer.tls-refused', { from: r.from, reason: `page server: ${r.reason}` });
}
