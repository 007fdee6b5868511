/**
 * The receiving half of a migration, on the target node: prepare a locked
 * namespace with the endpoint's IP and MAC, take the images, restore into
 * the namespace, switch (the endpoint becomes this node's and is announced:
 * the point of no return), lift the lock. Until the switch, abort removes
 * every trace; after it, abort is refused.
 */
import type { IncomingMessage } from 'node:http';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { restoreUnderShim } from '../checkpoint/executor.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { RoamError } from '../errors/roam-error.js';
import { unlockNetns } from '../sys/nft.js';
import { receiveImage } from './image-transfer.js';
import { measureResume } from '../handover/stall-meter.js';
import type { EventBus } from '../events/bus.js';

export interface PrepareRequest {
  id: string;
  mode?: string;
  name: string;
  ip: string;
  prefixLength: number;
  mac: string;
  generation: number;
  command: string[];
  createdAt: string;
}

interface Arrival {
  id: string;
  name: string;
  dir: string;
  imagesDir: string;
  record: StoredEndpoint;
  mode: string;
  restored: { pid: number; shimPid: number } | undefined;
  switched: boolean;
}

export class MigrationTarget {
  private readonly arrivals = new Map<string, Arrival>();

  constructor(
    private readonly manager: EndpointManager,
    private readonly stateDir: string,
    /** after the switch: converge the local overlay and tell the peers, before answering */
    private readonly announce: () => Promise<void>,
    private readonly events?: EventBus,
  ) {}

  private arrival(id: string): Arrival {
    const a = this.arrivals.get(id);
    if (!a) throw new RoamError('NOT_FOUND', `no migration ${id} is arriving here`);
    return a;
  }

  async prepare(req: PrepareRequest): Promise<void> {
    if (this.arrivals.has(req.id)) throw new RoamError('CONFLICT', `migration ${req.id} is already being prepared here`);
    const dir = join(this.stateDir, 'migrations', req.id);
    const imagesDir = join(dir, 'images');
    mkdirSync(imagesDir, { recursive: true });
    try {
      const record = await this.manager.prepareIncoming(
        { name: req.name, ip: req.ip, prefixLength: req.prefixLength, mac: req.mac, generation: req.generation, command: req.command, createdAt: req.createdAt },
        req.id,
      );
      this.arrivals.set(req.id, { id: req.id, name: req.name, dir, imagesDir, record, mode: req.mode ?? 'stop-copy', restored: undefined, switched: false });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  receiveImage(id: string, file: string, body: IncomingMessage): Promise<number> {
    return receiveImage(this.arrival(id).imagesDir, file, body);
  }

  async restore(id: string, pipeKeys: string[]): Promise<{ pid: number; restore_ms: number }> {
    const a = this.arrival(id);
    if (a.restored) throw new RoamError('CONFLICT', `migration ${id}: already restored`);
    const r = await restoreUnderShim({ dir: this.manager.dirOf(a.name), netns: a.record.netns, imagesDir: a.imagesDir, pipeKeys });
    a.restored = { pid: r.pid, shimPid: r.shimPid };
    return { pid: r.pid, restore_ms: r.durationMs };
  }

  /** The decision point: from here the endpoint is this node's. */
  async switchOver(id: string): Promise<void> {
    const a = this.arrival(id);
    if (!a.restored) throw new RoamError('CONFLICT', `migration ${id}: nothing restored to switch to`);
    if (a.switched) return;
    this.manager.adoptIncoming(a.name, a.restored);
    a.switched = true;
    await this.announce();
  }

  /** Lifts the lock; then measures, in the background, how long each client took to come back. */
  unlock(id: string, frozenMs: number): void {
    const a = this.arrival(id);
    if (!a.switched) throw new RoamError('CONFLICT', `migration ${id}: not switched yet, the lock stays`);
    unlockNetns(a.record.netns);
    const unlockedAt = performance.now();
    rmSync(a.dir, { recursive: true, force: true });
    this.arrivals.delete(id);
    this.events?.emit('migration.arrival', { id, name: a.name, mode: a.mode, result: 'success' });
    measureResume(a.record.netns, unlockedAt).then(
      (m) => this.events?.emit('migration.stall', { id, name: a.name, stallsMs: m.resumedAfterMs.map((r) => frozenMs + r), idle: m.idle }),
      (err) => this.events?.warn(`migration ${id}: could not read the restored connections' TCP state: ${String(err)}`),
    );
  }

  async abort(id: string): Promise<void> {
    const a = this.arrivals.get(id);
    if (!a) return;
    if (a.switched) throw new RoamError('CONFLICT', `migration ${id}: already switched to ${a.name} here; it cannot be undone`);
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
      if (existsSync(join(root, id, 'images', 'dump.log'))) continue;
      rmSync(join(root, id), { recursive: true, force: true });
      log(`removed the images of unfinished arrival ${id}`);
    }
  }

  inFlight(): number {
    return this.arrivals.size;
  }
}
