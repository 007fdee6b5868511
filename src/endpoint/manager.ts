/**
 * The endpoints that live on this node: create (network, then process, then
 * record), stop (process, then network, then record), re-adopt after an agent
 * restart, and watch for exits. One operation at a time, so two creates can
 * never pick the same address. A failed create leaves nothing behind.
 */
import type { EndpointPolicy } from '../records/policy.js';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { EndpointRecord } from '../records/endpoint.js';
import { parsePrefix } from '../net/ip.js';
import { macForIp } from '../net/mac.js';
import type { RtnlSession } from '../sys/netlink/session.js';
import { isNetns } from '../sys/netns/netns.js';
import { allocateIp } from './allocator.js';
import { ENDPOINT_NAME_PATTERN } from '../records/names.js';
import { hostVethName } from './naming.js';
import { attachEndpointNetwork, bridgePort, createEndpointNetwork, detachEndpointNetwork, removeEndpointNetwork } from './network.js';
import { exitStatus, startUnderShim, waitForShimExit } from '../sys/launch.js';
import { isSameProcessAlive, processStartTime, stopProcess } from '../sys/proc.js';
import { EndpointStore, type PodRef, type StoredEndpoint } from './store.js';
import { NodeContainers } from '../container/node-containers.js';
import type { ContainerRequest } from '../records/container.js';

export interface CreateEndpointRequest {
  name: string;
  ip: string | undefined;
  /** the program (a container: its process args; empty to keep the bundle's) */
  command: string[];
  /** run it as an OCI container: from a root filesystem folder (with `command`) or a bundle */
  container?: ContainerRequest;
  policy?: EndpointPolicy;
}

/** A pod to give an overlay interface: found by the Kubernetes mode in the runtime's state. */
export interface AttachPodRequest {
  name: string;
  pod: PodRef;
  /** the pod's network namespace (its sandbox's) */
  netns: string;
  /** a process of the pod, for the record */
  pid: number;
  startTime: number;
}

/** The most of a log one request reads (it is answered whole). */
export const MAX_LOG_BYTES = 16 * 1024 * 1024;

export interface EndpointManagerOptions {
  node: string;
  stateDir: string;
  subnet: string;
  range: string;
  mtu: number;
  session: RtnlSession;
  bridgeIndex: () => number;
  /** every endpoint the cluster knows of, for name and address uniqueness */
  clusterEndpoints: () => readonly EndpointRecord[];
  /** claims a new endpoint's name across the cluster before it is created (cluster/name-claims.ts): given back when the create fails, or once the new endpoint is announced */
  claimName?: (name: string) => Promise<{ release(): void; created(): void }>;
  events: EventBus;
  stopGraceMs?: number;
}

export class EndpointManager {
  private readonly store: EndpointStore;
  private readonly local = new Map<string, StoredEndpoint>();
  private readonly exited = new Map<string, string>();
  /** endpoints being migrated away: frozen or dumped, their exit is not an exit */
  private readonly outgoing = new Set<string>();
  /** endpoints arriving by migration: prepared and locked, not announced until adopted */
  private readonly incoming = new Map<string, StoredEndpoint>();
  private queue: Promise<unknown> = Promise.resolve();
  private watcher: NodeJS.Timeout | undefined;
  private readonly changeListeners = new Set<() => void>();

  /** this node's images, runc state and container folders */
  readonly containers: NodeContainers;

  constructor(private readonly o: EndpointManagerOptions) {
    this.store = new EndpointStore(o.stateDir);
    this.containers = new NodeContainers(o.stateDir);
  }

  onChange(listener: () => void): void {
    this.changeListeners.add(listener);
  }

  private changed(): void {
    for (const l of this.changeListeners) l();
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Re-adopts endpoints left by a previous run of this agent; removes half-made ones. */
  adopt(): Promise<void> {
    return this.serialized(async () => {
      for (const name of this.store.names()) {
        const record = this.store.load(name);
        if (record?.pod) {
          // Not ours to stop: a pod whose namespace is gone went with it; one still there is adopted as it is.
          if (isNetns(record.netns)) this.local.set(name, record);
          else this.store.remove(name);
          continue;
        }
        if (!record || !isNetns(record.netns) || record.incoming) {
          this.o.events.warn(`endpoint ${name}: incomplete leftovers found at start, removing them`);
          if (record) {
            await stopProcess(record.pid, record.startTime, 0);
            if (record.container) await this.containers.remove(name, this.store.dirOf(name)).catch(() => undefined);
            await removeEndpointNetwork(this.o.session, record).catch(() => undefined);
          }
          this.store.remove(name);
          continue;
        }
        this.local.set(name, record);
        if (!isSameProcessAlive(record.pid, record.startTime)) this.exited.set(name, exitStatus(this.store.dirOf(name)) ?? 'gone');
        this.o.events.info(`endpoint ${name}: adopted (${record.ip}, pid ${record.pid}${this.exited.has(name) ? ', exited' : ''})`);
      }
      this.changed();
    });
  }

  startWatching(intervalMs = 500): void {
    this.watcher = setInterval(() => this.checkExits(), intervalMs);
    this.watcher.unref();
  }

  stopWatching(): void {
    if (this.watcher) clearInterval(this.watcher);
  }

  private checkExits(): void {
    let any = false;
    for (const [name, r] of this.local) {
      // A pod's life is the kubelet's: the Kubernetes mode detaches it when the pod goes.
      if (r.pod || this.exited.has(name) || this.outgoing.has(name) || isSameProcessAlive(r.pid, r.startTime)) continue;
      const status = exitStatus(this.store.dirOf(name)) ?? 'gone';
      this.exited.set(name, status);
      this.o.events.emit('endpoint.exited', { name, status });
      any = true;
    }
    if (any) this.changed();
  }

  has(name: string): boolean {
    return this.local.has(name);
  }

  /** The stored record of a local endpoint (what a migration needs to move it). */
  stored(name: string): StoredEndpoint | undefined {
    const r = this.local.get(name);
    return r ? { ...r, command: [...r.command] } : undefined;
  }

  dirOf(name: string): string {
    return this.store.dirOf(name);
  }

  isRunning(name: string): boolean {
    return this.local.has(name) && !this.exited.has(name);
  }

  // ---- migration, source side ----

  /** Marks the endpoint as leaving: from now its process may vanish without counting as an exit. */
  beginOutgoing(name: string): StoredEndpoint {
    const r = this.local.get(name);
    if (!r) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${this.o.node}`);
    if (this.exited.has(name)) throw new RoamError('CONFLICT', `endpoint ${name} is not running (${this.exited.get(name)}); nothing to migrate`);
    this.outgoing.add(name);
    return { ...r };
  }

  /** The migration failed before dumping: the process never stopped. */
  endOutgoing(name: string): void {
    this.outgoing.delete(name);
  }

  /** The migration rolled back: the tree was restored here, under a new shim. */
  resumedLocally(name: string, restored: { pid: number; shimPid: number }): void {
    const r = this.local.get(name);
    if (!r) return;
    Object.assign(r, { pid: restored.pid, shimPid: restored.shimPid, startTime: processStartTime(restored.pid) ?? 0 });
    this.store.save(r);
    this.outgoing.delete(name);
    this.exited.delete(name);
    this.changed();
  }

  /**
   * The endpoint now lives on another node: remove every local trace of it.
   * `keepProcess`: all but the dumped tree, which a post-copy migration still
   * needs (it serves the memory the target has not pulled yet); the migration
   * ends it once the target has everything.
   */
  release(name: string, options: { keepProcess?: boolean } = {}): Promise<void> {
    return this.serialized(async () => {
      const r = this.local.get(name);
      if (!r) return;
      if (!options.keepProcess) await stopProcess(r.pid, r.startTime, 0);
      if (r.container) await this.containers.remove(name, this.store.dirOf(name));
      await removeEndpointNetwork(this.o.session, r);
      this.store.remove(name);
      this.local.delete(name);
      this.outgoing.delete(name);
      this.exited.delete(name);
      this.changed();
    });
  }

  // ---- migration, target side ----

  /** Builds the arriving endpoint's network, locked, with its own IP and MAC; announces nothing. */
  prepareIncoming(spec: Omit<StoredEndpoint, 'netns' | 'hostVeth' | 'pid' | 'startTime' | 'shimPid' | 'incoming'>, migrationId: string): Promise<StoredEndpoint> {
    return this.serialized(async () => {
      if (this.local.has(spec.name) || this.incoming.has(spec.name)) throw new RoamError('CONFLICT', `endpoint ${spec.name} already exists on ${this.o.node}`);
      const record: StoredEndpoint = {
        ...spec, netns: join(this.o.stateDir, 'netns', spec.name), hostVeth: hostVethName(spec.name), pid: 0, startTime: 0, shimPid: 0, incoming: migrationId,
      };
      this.store.save(record);
      try {
        if (record.container) this.containers.makeFolders(this.store.dirOf(spec.name), record.container);
        this.ensureNetnsDir();
        await createEndpointNetwork(this.o.session, { ...record, mtu: this.o.mtu, bridgeIndex: this.o.bridgeIndex(), locked: true });
      } catch (err) {
        this.store.remove(spec.name);
        throw err;
      }
      this.incoming.set(spec.name, record);
      return { ...record };
    });
  }

  incomingRecord(name: string): StoredEndpoint | undefined {
    const r = this.incoming.get(name);
    return r ? { ...r } : undefined;
  }

  /** Puts an arrival's port on the bridge (network.ts bridgePort): the first step of its switch. Idempotent. */
  async bridgeIncoming(name: string): Promise<void> {
    const r = this.incoming.get(name) ?? this.local.get(name);
    if (!r) throw new RoamError('NOT_FOUND', `no endpoint ${name} is arriving on ${this.o.node}`);
    await bridgePort(this.o.session, r.hostVeth, this.o.bridgeIndex());
  }

  /**
   * The restored tree is the endpoint now (the switch): it becomes a local
   * record with a new generation. Telling the peers is the caller's
   * (MigrationTarget announces before it answers the switch).
   */
  adoptIncoming(name: string, restored: { pid: number; shimPid: number }): EndpointRecord {
    const r = this.incoming.get(name);
    if (!r) throw new RoamError('NOT_FOUND', `no endpoint ${name} is arriving on ${this.o.node}`);
    // Kept: asked later whether migration X took place here, the answer is yes (MigrationTarget.abort).
    r.arrivedWith = r.incoming;
    delete r.incoming;
    Object.assign(r, { pid: restored.pid, shimPid: restored.shimPid, startTime: processStartTime(restored.pid) ?? 0 });
    this.store.save(r);
    this.incoming.delete(name);
    this.local.set(name, r);
    this.changed();
    return this.toRecord(r);
  }

  /** Removes an arrival that will not happen: any restored process, the network, the record. */
  abortIncoming(name: string): Promise<void> {
    return this.serialized(async () => {
      const r = this.incoming.get(name) ?? (this.store.load(name)?.incoming ? this.store.load(name) : undefined);
      if (!r) return;
      const pid = readPidFile(join(this.store.dirOf(name), 'pid'));
      if (pid) await stopProcess(pid, processStartTime(pid) ?? 0, 0);
      if (r.container) await this.containers.remove(name, this.store.dirOf(name)).catch(() => undefined);
      await removeEndpointNetwork(this.o.session, r).catch(() => undefined);
      this.store.remove(name);
      this.incoming.delete(name);
    });
  }

  /** The local endpoint that arrived here with migration `id`, if any. */
  arrivedWith(id: string): string | undefined {
    return [...this.local.values()].find((r) => r.arrivedWith === id)?.name;
  }

  /** The container images the endpoints here and those arriving are made from. */
  imagesInUse(): Set<string> {
    return new Set([...this.local.values(), ...this.incoming.values()].flatMap((r) => (r.container ? [r.container.image] : [])));
  }

  records(): EndpointRecord[] {
    return [...this.local.values()].map((r) => this.toRecord(r));
  }

  private toRecord(r: StoredEndpoint): EndpointRecord {
    return {
      name: r.name, ip: r.ip, mac: r.mac, node: this.o.node, generation: r.generation,
      pid: r.pid, netns: r.netns, state: this.exited.has(r.name) ? 'exited' : 'running',
    };
  }

  create(req: CreateEndpointRequest): Promise<EndpointRecord> {
    return this.serialized(() => this.createNow(req));
  }

  private async createNow(req: CreateEndpointRequest): Promise<EndpointRecord> {
    if (!new RegExp(ENDPOINT_NAME_PATTERN).test(req.name)) {
      throw new RoamError('INPUT_INVALID', `name: ${JSON.stringify(req.name)} must be lowercase letters, digits and dashes (1-63, DNS label)`);
    }
    if (!req.container && req.command.length === 0) throw new RoamError('INPUT_INVALID', 'command: give the program to run after --');
    if (req.command[0] === '') throw new RoamError('INPUT_INVALID', 'command.0: the program to run is empty (its arguments may be, it may not)');
    const identity = this.newIdentity(req.name, req.ip);
    const claim = await this.o.claimName?.(req.name);
    let made: EndpointRecord;
    try {
      made = await this.createClaimed(req, identity);
    } catch (err) {
      claim?.release();
      throw err;
    }
    claim?.created();
    return made;
  }

  private async createClaimed(req: CreateEndpointRequest, identity: ReturnType<EndpointManager['newIdentity']>): Promise<EndpointRecord> {
    const container = req.container ? await this.containers.partFor(req.container, req.command, this.o.node) : undefined;
    const command = container ? container.spec.process.args : req.command;
    const record: StoredEndpoint = {
      ...identity,
      netns: join(this.o.stateDir, 'netns', req.name),
      command,
      pid: 0,
      startTime: 0,
      shimPid: 0,
      ...(container ? { container } : {}),
      ...(req.policy ? { policy: req.policy } : {}),
    };
    const dir = this.store.dirOf(req.name);
    this.store.save(record);
    try {
      this.ensureNetnsDir();
      await createEndpointNetwork(this.o.session, { ...record, mtu: this.o.mtu, bridgeIndex: this.o.bridgeIndex() });
      try {
        const started = container ? await this.containers.start(record.name, dir, record.netns, container) : await startUnderShim(dir, record.netns, record.command);
        Object.assign(record, started);
        this.store.save(record);
      } catch (err) {
        await removeEndpointNetwork(this.o.session, record).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      this.store.remove(req.name);
      throw err;
    }
    return this.admit(record);
  }

  /** Sets (or, with undefined, clears) the policy of a local endpoint; it travels with the endpoint from now on. */
  setPolicy(name: string, policy: EndpointPolicy | undefined): Promise<void> {
    return this.serialized(async () => {
      const r = this.local.get(name);
      if (!r) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${this.o.node}`);
      if (policy) r.policy = policy;
      else delete r.policy;
      this.store.save(r);
    });
  }

  /** Gives a pod an overlay interface with an address of this node's range: an endpoint whose namespace and process are the pod's. */
  attachPod(req: AttachPodRequest): Promise<EndpointRecord> {
    return this.serialized(async () => {
      const record: StoredEndpoint = {
        ...this.newIdentity(req.name, undefined),
        netns: req.netns, command: [], pid: req.pid, startTime: req.startTime, shimPid: 0, pod: req.pod,
      };
      this.store.save(record);
      try {
        await attachEndpointNetwork(this.o.session, { ...record, mtu: this.o.mtu, bridgeIndex: this.o.bridgeIndex() });
      } catch (err) {
        this.store.remove(req.name);
        throw err;
      }
      return this.admit(record);
    });
  }

  /** A new endpoint's identity here: a name no node has, an address of this node's range and the MAC that goes with it. */
  private newIdentity(name: string, requested: string | undefined): Pick<StoredEndpoint, 'name' | 'ip' | 'prefixLength' | 'mac' | 'generation' | 'hostVeth' | 'createdAt'> {
    const cluster = this.o.clusterEndpoints();
    const previous = cluster.find((e) => e.name === name);
    if (this.local.has(name) || previous) throw new RoamError('CONFLICT', `name: endpoint ${name} already exists on ${previous?.node ?? this.o.node}`);
    const taken = new Set([...cluster.map((e) => e.ip), ...[...this.local.values()].map((e) => e.ip)]);
    const ip = allocateIp({ subnet: this.o.subnet, range: this.o.range, taken, requested });
    return { name, ip, prefixLength: parsePrefix(this.o.subnet).length, mac: macForIp(ip), generation: 1, hostVeth: hostVethName(name), createdAt: new Date().toISOString() };
  }

  /** An endpoint set up here becomes this node's, and is said to be. */
  private admit(record: StoredEndpoint): EndpointRecord {
    this.local.set(record.name, record);
    this.o.events.emit('endpoint.started', { name: record.name, ip: record.ip });
    this.changed();
    return this.toRecord(record);
  }

  /** The pods given an overlay interface here. */
  pods(): (EndpointRecord & { pod: PodRef })[] {
    return [...this.local.values()].flatMap((r) => (r.pod ? [{ ...this.toRecord(r), pod: r.pod }] : []));
  }

  private ensureNetnsDir(): void {
    mkdirSync(join(this.o.stateDir, 'netns'), { recursive: true });
  }

  stop(name: string): Promise<void> {
    return this.serialized(async () => {
      const r = this.local.get(name);
      if (!r) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${this.o.node}`);
      // A stop in the middle of a move would not stick: the target can still take over and run it there.
      if (this.outgoing.has(name)) throw new RoamError('CONFLICT', `endpoint ${name} is moving off ${this.o.node}; stop it when the move is over`);
      if (r.pod) {
        // Only the interface is roam's; the pod goes on without it.
        await detachEndpointNetwork(this.o.session, r);
        this.forget(name);
        return;
      }
      await stopProcess(r.pid, r.startTime, this.o.stopGraceMs ?? 2000);
      await waitForShimExit(this.store.dirOf(name), r.shimPid, 2000);
      if (r.container) await this.containers.remove(name, this.store.dirOf(name));
      try {
        await removeEndpointNetwork(this.o.session, r);
      } catch (err) {
        this.o.events.error(`endpoint ${name}: network removal failed: ${describeError(err)}`);
        throw err;
      }
      this.forget(name);
    });
  }

  private forget(name: string): void {
    this.store.remove(name);
    this.local.delete(name);
    this.exited.delete(name);
    this.o.events.emit('endpoint.stopped', { name });
    this.changed();
  }

  /** Stops every local endpoint (testbed teardown, node drain before migration exists). */
  async stopAll(): Promise<void> {
    for (const name of [...this.local.keys()]) await this.stop(name);
  }

  /** The last `maxBytes` of the endpoint's combined stdout/stderr. */
  /** The end of an endpoint's output: at most `maxBytes`, and never more than MAX_LOG_BYTES (held in memory at once). */
  logs(name: string, maxBytes = 256 * 1024): string {
    if (!this.local.has(name)) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${this.o.node}`);
    const path = join(this.store.dirOf(name), 'log');
    if (!existsSync(path)) return '';
    const size = statSync(path).size;
    const length = Math.min(size, maxBytes, MAX_LOG_BYTES);
    const buf = Buffer.alloc(length);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  }
}

function readPidFile(path: string): number {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}
