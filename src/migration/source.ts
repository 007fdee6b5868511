/**
 * A migration, driven by the node the endpoint lives on:
 *
 *   prepare → dump → transfer → restore → switch → unlock → cleanup
 *
 * Before the switch, any failure rolls back: the tree is restored here from
 * its own images (if it was already dumped), the target's half-built state
 * is removed, and the report says rolled_back and why. The switch (the
 * target adopting and announcing the endpoint) is the one point where
 * ownership changes; after it, the source only cleans up. The service never
 * runs on two nodes at once: the source tree is gone from the moment its
 * dump succeeds, and comes back only if the target never switched.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dumpSlot, dumpTree, startLazyDump, type DumpResult, type LazyDump, type PullOutcome } from '../checkpoint/executor.js';
import type { LocationTable } from '../cluster/locations.js';
import type { EndpointManager } from '../endpoint/manager.js';
import { waitForShimExit } from '../sys/launch.js';
import { stopProcess, treeAnonymousBytes } from '../sys/proc.js';
import { probeMigrationCapabilities, type MigrationCapabilities } from '../checkpoint/capabilities.js';
import type { PageServerTls } from '../checkpoint/page-server-tls.js';
import type { PageServerRefusal } from '../sys/criu/rpc.js';
import { chooseMode } from './mode-choice.js';
import { paceTcp, tcpRepairOffTree } from '../sys/borrowed-tcp.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { freePort } from '../sys/ports.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { serializeHeld, type HeldPackets, type PacketHold } from '../sys/packet-hold.js';
import { drainWhatWasKept, holdWhatTheLockDrops } from '../handover/hold.js';
import { replays } from '../handover/deliver.js';
import { resumeService } from '../handover/resume.js';
import { HANDOVER_MECHANISMS, type HandoverCounts, type HandoverMechanism, type ResumeMeasurement } from '../handover/schemas.js';
import { MIGRATION_MODES as MODES, noPhases, type HandoverReport, type MigrationStatus, type ModeChoice, type Phase, type PullReport } from './report.js';
import { reportPageServerRefusal, type Prepared, type PrepareRequest } from './target.js';
import { readJournals, writeJournal, type ProcessRef, type SourceJournal } from './journal.js';
import { recoverMigration, restoreOnSource, type Recovered } from './source-recovery.js';
import type { Readable } from 'node:stream';
import { dumpContainer } from '../checkpoint/container-executor.js';
import { ContainerFilesMove } from './container-files.js';

/** What the source needs of the target agent (the peer protocol, or a fake). */
export interface TargetAgent {
  prepare(address: string, body: PrepareRequest): Promise<Prepared>;
  sendImages(address: string, id: string, imagesDir: string): Promise<number>;
  /** `lazySource`: post-copy, where the target's lazy-pages daemon pulls the memory from */
  restore(address: string, id: string, pipeKeys: string[], connections: number, lazySource?: { address: string; port: number }): Promise<{ pid: number; restore_ms: number }>;
  switchOver(address: string, id: string): Promise<void>;
  /** what the lock here kept (roam-hold's format), for the target to deliver at the unlock */
  sendHeld(address: string, id: string, held: Buffer): Promise<void>;
  unlock(address: string, id: string, frozenMs: number): Promise<HandoverCounts>;
  clientStall(address: string, id: string): Promise<ResumeMeasurement>;
  /** post-copy: how the target's pull ended (waits for its end) */
  pullResult(address: string, id: string): Promise<PullOutcome>;
  abort(address: string, id: string): Promise<void>;
  /** an arrival prepared ahead is still wanted (else the target gives it up when idle) */
  keep(address: string, id: string): Promise<void>;
  /** container images: whether the target has one, and sending it one */
  hasImage(address: string, image: string): Promise<boolean>;
  sendImage(address: string, image: string, archive: Readable): Promise<void>;
  /** a container's files, copied while it runs (proactive sync) into the arrival's tree */
  sendTree(address: string, id: string, tree: string, archive: Readable): Promise<void>;
}

export interface MigrateRequest {
  name: string;
  to: string;
  mode: string | undefined;
  handover?: HandoverMechanism | undefined;
  /** a container's files: copied while it runs, only the changes in the freeze (default); false: all in the freeze */
  presync?: boolean | undefined;
}

/**
 * stop-copy: the target is prepared (locked namespace, IP, MAC, bridge port)
 *   before the freeze; images stream in parallel.
 * streamed: as stop-copy, but the dump sends memory pages straight to a
 *   page server on the target while it runs, so dump and transfer overlap;
 *   only the other (small) images travel afterwards.
 * post-copy: the dump keeps the anonymous memory back and serves it; the
 *   target restores without it and resumes the service at once, while its
 *   lazy-pages daemon pulls the memory (on demand and in the background).
 *   The frozen time no longer grows with memory. The source tree stays,
 *   stopped, until the target has every page; only then is it ended.
 * cold: the research-prototype sequence, kept as the baseline the bench
 *   measures against: freeze and dump first, then build the target, then
 *   one transfer stream; everything inside the frozen window.
 */
/** The underlay rate the automatic mode plans with when none is configured: an edge link. */
const ASSUMED_UNDERLAY_MBIT = 1000;
/** What the source knows of the underlay for planning a move, and how its page traffic goes. */
export interface UnderlayPlan {
  /** where the target reaches this node's lazy page servers (post-copy), which listen there only */
  address: string;
  /** as configured; the automatic mode assumes ASSUMED_UNDERLAY_MBIT without it, and the pull goes unpaced */
  rateMbit?: number;
  /** of rateMbit, what a post-copy pull may use (config underlay.pullShare) */
  pullShare: number;
  /** page-server connections over TLS (the cluster's, from the config's tls); plain without */
  pageTls?: PageServerTls;
}

/**
 * Bounds how many migrations this node drives at once; the rest wait their
 * turn in order. (Each holds a CRIU dump, its images and the link; and two
 * CRIU dumps at once on one host can collide.)
 */
class MigrationSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  /** Resolves when a slot is free: the function that frees it, and whether it had to wait. */
  async take(): Promise<{ free: () => void; waited: boolean }> {
    const waited = this.running >= this.limit;
    if (waited) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    let freed = false;
    const free = () => {
      if (freed) return;
      freed = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    };
    return { free, waited };
  }

  queued(): number {
    return this.waiting.length;
  }
}
/** How long the source waits for the target's verdict on a finished pull. */
const PULL_VERDICT_ATTEMPTS = 5;
const KEEP_STATUSES = 200;

/** What undoing a failed migration at the source works with. */
interface Unwind {
  status: MigrationStatus;
  /** the target agent's peer address */
  address: string;
  ep: ReturnType<EndpointManager['beginOutgoing']>;
  /** the migration's folder, and the images in it */
  dir: string;
  imagesDir: string;
  hold: PacketHold | undefined;
  handover: HandoverMechanism;
  /** why the migration failed, for the report */
  reason: string;
  finish: (result: HandoverReport['result'], runningOn: string, reason?: string, handover?: HandoverCounts) => HandoverReport;
  /** a container's files (the container is restored by runc) */
  files: ContainerFilesMove | undefined;
}

/** A target made ready before the move was decided: what its prepare phase produced. */
interface PreparedTarget {
  prepared: Prepared;
  mode: string;
  modeChoice: ModeChoice | undefined;
}

/** A predicted move's preparation, waiting for the move (or its withdrawal). */
interface Ahead {
  id: string;
  to: string;
  address: string;
  files: ContainerFilesMove | undefined;
  ready: Promise<PreparedTarget>;
  keepAlive: NodeJS.Timeout;
  at: number;
  /** the endpoint's policy as the target was told it (it moves with the endpoint) */
  policy: string;
}

/** How often a prepared-ahead arrival is said to be still wanted (the target gives up idle ones after a minute). */
const KEEP_AHEAD_MS = 20000;

function newMigrationId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export class MigrationSource {
  private readonly statuses = new Map<string, MigrationStatus>();
  private readonly moving = new Map<string, string>();
  private readonly ahead = new Map<string, Ahead>();
  /** preparations being given up: a new one for the same endpoint waits, or the target would still hold its name */
  private readonly withdrawals = new Map<string, Promise<void>>();

  constructor(
    private readonly self: string,
    private readonly stateDir: string,
    private readonly manager: EndpointManager,
    private readonly table: LocationTable,
    private readonly target: TargetAgent,
    private readonly events: EventBus,
    private readonly underlay: UnderlayPlan,
    maxConcurrent = 1,
  ) {
    this.slots = new MigrationSlots(maxConcurrent);
  }

  private readonly slots: MigrationSlots;

  private capabilities: Promise<MigrationCapabilities> | undefined;

  /** The automatic mode's choice for this tree, probed once per agent for what the node can do. */
  private async chooseMode(pid: number, container: boolean): Promise<ModeChoice> {
    this.capabilities ??= probeMigrationCapabilities().catch((err: unknown) => {
      this.capabilities = undefined;
      throw err;
    });
    const node = await this.capabilities;
    const capabilities = container ? { ...node, postCopy: false, reasons: [...node.reasons, 'post-copy: not available for containers (runc drives their dump)'] } : node;
    return chooseMode({
      memoryBytes: treeAnonymousBytes(pid), underlayMbit: this.underlay.rateMbit ?? ASSUMED_UNDERLAY_MBIT,
      rateSource: this.underlay.rateMbit === undefined ? 'assumed' : 'configured', capabilities,
    });
  }

  /**
   * At start: migrations a previous run of this agent left unfinished (its
   * journals) are finished or rolled back, each in the background, the
   * endpoint counted as moving meanwhile (source-recovery.ts).
   */
  recoverInterrupted(retryMs = 5000): number {
    const found = readJournals(this.stateDir);
    for (const { dir, journal: j, error } of found) {
      if (!j) {
        this.events.error(`unreadable migration journal in ${dir} (${error}); left for an operator`);
        continue;
      }
      if (j.phase === 'failed') {
        this.events.warn(`migration ${j.id} of ${j.name} was given up on; its images are kept in ${dir}`);
        continue;
      }
      this.moving.set(j.name, j.id);
      const status: MigrationStatus = { id: j.id, name: j.name, from: this.self, to: j.to, mode: j.mode, state: 'running', phase: 'recover', completed: [] };
      this.statuses.set(j.id, status);
      this.events.warn(`migration ${j.id} of ${j.name} to ${j.to} was interrupted in its ${j.phase} phase; recovering it`);
      void recoverMigration(j, dir, { self: this.self, manager: this.manager, target: this.target, events: this.events, retryMs, why: `after ${this.self}'s agent restarted`, pageTls: this.underlay.pageTls })
        .catch((err: unknown): Recovered => ({ result: 'failed', runningOn: '', reason: `recovery failed: ${describeError(err)}` }))
        .then((r) => {
          const report: HandoverReport = {
            id: j.id, name: j.name, from: this.self, to: j.to, mode: j.mode, result: r.result, reason: r.reason, running_on: r.runningOn,
            frozen_ms: 0, phases: noPhases(), image_bytes: 0, tcp_connections: j.dump?.tcpConnections ?? 0, started_at: new Date().toISOString(),
          };
          Object.assign(status, { state: r.result, report });
          (r.result === 'failed' ? this.events.error.bind(this.events) : this.events.info.bind(this.events))(`migration ${j.id} of ${j.name}: ${r.result}, ${r.reason}`);
          this.events.emit('migration.finished', { report });
        })
        .finally(() => this.moving.delete(j.name));
    }
    return found.length;
  }

  status(id: string): MigrationStatus | undefined {
    const s = this.statuses.get(id);
    return s ? structuredClone(s) : undefined;
  }

  inFlight(): number {
    return this.moving.size;
  }

  /** Migrations waiting for a slot. */
  queuedCount(): number {
    return this.slots.queued();
  }

  /** Waits for a slot; meanwhile the status says 'queued'. `queuedMs`: how long it waited, if it had to (for the report). */
  private async queued(status: MigrationStatus): Promise<{ free: () => void; queuedMs?: number }> {
    const asked = performance.now();
    status.phase = 'queued';
    const { free, waited } = await this.slots.take();
    status.phase = 'prepare';
    return waited ? { free, queuedMs: round(performance.now() - asked) } : { free };
  }

  /** Checks the request, then runs the migration in the background; returns its id at once. */
  start(req: MigrateRequest): { id: string; done: Promise<HandoverReport> } {
    const { mode, handover, address } = this.checkMove(req);
    const ahead = this.takeAhead(req.name, req.to, mode, handover, req.presync ?? true);
    const record = this.manager.beginOutgoing(req.name);
    const id = ahead?.id ?? newMigrationId();
    this.moving.set(req.name, id);
    const status: MigrationStatus = { id, name: req.name, from: this.self, to: req.to, mode, state: 'running', phase: 'prepare', completed: [] };
    this.statuses.set(id, status);
    while (this.statuses.size > KEEP_STATUSES) this.statuses.delete(this.statuses.keys().next().value!);
    const done = this.queued(status).then(async (slot) => {
      try {
        return await this.run(status, address, record, handover, slot, req.presync ?? true, ahead);
      } finally {
        slot.free();
      }
    }).finally(() => this.moving.delete(req.name));
    return { id, done };
  }

  /**
   * Prepares `to` for a move of `name` that a policy predicts, while the
   * service runs: the target's locked namespace and interface, a container's
   * image and files, the mode choice. A move there started later uses it and
   * pays only the rest; a move elsewhere, or withdrawAhead, gives it up.
   */
  prepareAhead(name: string, to: string): { id: string; ready: Promise<void> } {
    const { address } = this.checkMove({ name, to, mode: undefined });
    const existing = this.ahead.get(name);
    if (existing?.to === to) return { id: existing.id, ready: existing.ready.then(() => undefined) };
    if (existing) this.withdrawAhead(name);
    const ep = this.manager.stored(name)!;
    const id = newMigrationId();
    const files = ep.container ? new ContainerFilesMove(this.manager.containers, this.manager.dirOf(name), ep.container) : undefined;
    const ready = this.prepareTarget({ id, mode: 'auto', handover: 'full', ep, address, files, presync: true });
    const keepAlive = setInterval(() => {
      this.target.keep(address, id).catch((err: unknown) => this.events.warn(`prepared move ${id} of ${name} to ${to}: ${describeError(err)}`));
    }, KEEP_AHEAD_MS);
    keepAlive.unref();
    const entry: Ahead = { id, to, address, files, ready, keepAlive, at: performance.now(), policy: JSON.stringify(ep.policy ?? null) };
    this.ahead.set(name, entry);
    ready.catch((err: unknown) => {
      if (this.ahead.get(name) !== entry) return;
      this.events.warn(`preparing ${to} ahead for ${name} failed: ${describeError(err)}`);
      this.withdrawAhead(name);
    });
    return { id, ready: ready.then(() => undefined) };
  }

  /** Gives up a preparation made ahead (the prediction faded): the target drops its half. */
  withdrawAhead(name: string): void {
    const a = this.ahead.get(name);
    if (!a) return;
    this.ahead.delete(name);
    clearInterval(a.keepAlive);
    const done: Promise<void> = a.ready.catch(() => undefined).then(() => this.target.abort(a.address, a.id)).catch(() => this.abortLater(a.address, { id: a.id, to: a.to }));
    this.withdrawals.set(name, done);
    void done.finally(() => {
      if (this.withdrawals.get(name) === done) this.withdrawals.delete(name);
    });
  }

  /** Endpoints with a target prepared ahead, and where. */
  preparedAhead(): { name: string; to: string; id: string }[] {
    return [...this.ahead].map(([name, a]) => ({ name, to: a.to, id: a.id }));
  }

  isMoving(name: string): boolean {
    return this.moving.has(name);
  }

  /** A preparation made ahead that this move can use, taken out of the waiting list; any other is given up. */
  private takeAhead(name: string, to: string, mode: string, handover: HandoverMechanism, presync: boolean): Ahead | undefined {
    const a = this.ahead.get(name);
    if (!a) return undefined;
    // A policy changed since would arrive as it was: the target is prepared again, with the new one.
    const policy = JSON.stringify(this.manager.stored(name)?.policy ?? null);
    if (a.to !== to || mode !== 'auto' || handover !== 'full' || !presync || a.policy !== policy) {
      this.withdrawAhead(name);
      return undefined;
    }
    this.ahead.delete(name);
    clearInterval(a.keepAlive);
    return a;
  }

  /** The checks every move (or its preparation) passes first; the target's peer address. */
  private checkMove(req: Pick<MigrateRequest, 'name' | 'to' | 'mode' | 'handover'>): { mode: string; handover: HandoverMechanism; address: string } {
    const mode = req.mode ?? 'auto';
    if (!(MODES as readonly string[]).includes(mode)) throw new RoamError('INPUT_INVALID', `mode: ${JSON.stringify(mode)} is not one of ${MODES.join(', ')}`);
    const handover = req.handover ?? 'full';
    if (!(HANDOVER_MECHANISMS as readonly string[]).includes(handover)) {
      throw new RoamError('INPUT_INVALID', `handover: ${JSON.stringify(handover)} is not one of ${HANDOVER_MECHANISMS.join(', ')}`);
    }
    const busy = this.moving.get(req.name);
    if (busy) throw new RoamError('CONFLICT', `endpoint ${req.name} is already moving (migration ${busy})`);
    if (!this.manager.has(req.name)) throw new RoamError('NOT_FOUND', `endpoint ${req.name} is not on node ${this.self}`);
    const pod = this.manager.stored(req.name)?.pod;
    if (pod) throw new RoamError('INPUT_INVALID', `endpoint ${req.name} is pod ${pod.namespace}/${pod.name}, which the kubelet runs: moving a pod is not built yet (docs/KUBERNETES.md)`);
    if (mode === 'post-copy' && this.manager.stored(req.name)?.container) {
      throw new RoamError('INPUT_INVALID', `mode: post-copy is not available for containers (${req.name} is one); use stop-copy, streamed or auto`);
    }
    if (req.to === this.self) throw new RoamError('INPUT_INVALID', `to: endpoint ${req.name} is already on ${this.self}`);
    const peer = this.table.node(req.to);
    if (!peer) throw new RoamError('NOT_FOUND', `to: unknown node ${req.to}`);
    if (!peer.reachable) throw new RoamError('PEER_UNREACHABLE', `to: node ${req.to} is not reachable right now`);
    return { mode, handover: handover as HandoverMechanism, address: peer.address };
  }

  /** The prepare phase's work: everything of the target that can be made ready while the service runs. */
  private async prepareTarget(a: {
    id: string; mode: string; handover: HandoverMechanism; ep: ReturnType<EndpointManager['beginOutgoing']>; address: string; files: ContainerFilesMove | undefined; presync: boolean;
  }): Promise<PreparedTarget> {
    const { ep, files, address } = a;
    await this.withdrawals.get(ep.name);
    let modeChoice: ModeChoice | undefined;
    let mode = a.mode;
    if (mode === 'auto') {
      modeChoice = await this.chooseMode(ep.pid, files !== undefined);
      mode = modeChoice.chosen;
    }
    if (files) await files.sendImageTo(this.target, address);
    const prepared = await this.target.prepare(address, {
      id: a.id, mode, handover: a.handover, name: ep.name, ip: ep.ip, prefixLength: ep.prefixLength, mac: ep.mac,
      generation: ep.generation + 1, command: ep.command, createdAt: ep.createdAt, ...(files ? { container: files.wire() } : {}),
      ...(ep.policy ? { policy: ep.policy } : {}),
    });
    // Outside the freeze: the files as they are now; the freeze then sends only what changes from here.
    if (files && a.presync) await files.presync(this.target, address, a.id);
    return { prepared, mode, modeChoice };
  }

  /** `slot.free`: gives up this migration's slot (also done by the caller when it ends); the passive observation after the move needs none. */
  private async run(
    status: MigrationStatus, address: string, ep: ReturnType<EndpointManager['beginOutgoing']>, handover: HandoverMechanism, slot: { free: () => void; queuedMs?: number },
    presync: boolean, ahead: Ahead | undefined,
  ): Promise<HandoverReport> {
    const startedAt = new Date().toISOString();
    const dir = join(this.stateDir, 'migrations', status.id);
    const imagesDir = join(dir, 'images');
    mkdirSync(imagesDir, { recursive: true });
    // What a restarted agent needs to finish or roll back this migration (source-recovery.ts).
    const journal: SourceJournal = {
      id: status.id, name: status.name, to: status.to, toAddress: address, mode: status.mode, handover, phase: 'prepare', root: { pid: ep.pid, startTime: ep.startTime },
    };
    const journalNow = (change: Partial<SourceJournal>) => {
      Object.assign(journal, change);
      if (existsSync(dir)) writeJournal(dir, journal);
    };
    journalNow({});
    const phases = noPhases();
    let dumped: DumpResult | undefined;
    let lazy: LazyDump | undefined;
    let pull: PullReport | undefined;
    let modeChoice: ModeChoice | undefined;
    let frozenAt = 0;
    let frozenMs = 0;
    /** frozen so far when the unlock was asked for: the target measures the stall from there */
    let frozenWhenAsked = 0;
    let switched = false;
    let hold: PacketHold | undefined;
    let handoverCounts: HandoverCounts | undefined;
    let clientStall: HandoverReport['client_stall'];
    const files = ahead ? ahead.files : ep.container ? new ContainerFilesMove(this.manager.containers, this.manager.dirOf(ep.name), ep.container) : undefined;

    const phase = async <T>(name: Phase, work: () => Promise<T>): Promise<T> => {
      status.phase = name;
      journalNow({ phase: name, mode: status.mode });
      this.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'started', ms: 0 });
      const t0 = performance.now();
      const result = await work();
      const ms = round(performance.now() - t0);
      phases[`${name}_ms`] = ms;
      status.completed.push({ phase: name, ms });
      this.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'done', ms });
      return result;
    };

    const finish = (result: HandoverReport['result'], runningOn: string, reason?: string, rollbackHandover?: HandoverCounts): HandoverReport => {
      handoverCounts ??= rollbackHandover;
      const report: HandoverReport = {
        id: status.id, name: status.name, from: status.from, to: status.to, mode: status.mode, result,
        ...(reason ? { reason } : {}), running_on: runningOn,
        frozen_ms: round(frozenMs), phases, image_bytes: dumped?.imageBytes ?? 0, tcp_connections: dumped?.tcpConnections ?? 0,
        ...(dumped ? { tcp_in_flight: inFlightOf(dumped) } : {}),
        ...(handoverCounts ? { handover: handoverCounts } : {}), ...(clientStall ? { client_stall: clientStall } : {}),
        ...(pull ? { pull } : {}), ...(modeChoice ? { mode_choice: modeChoice } : {}),
        ...(files ? { files: files.report() } : {}),
        ...(slot.queuedMs !== undefined ? { queued_ms: slot.queuedMs } : {}),
        ...(ahead ? { prepared_ahead_ms: round(performance.now() - ahead.at) } : {}), started_at: startedAt,
      };
      status.state = result;
      status.report = report;
      this.events.emit('migration.finished', { report });
      return report;
    };

    let releaseSlot: (() => void) | undefined;
    let prepared: Prepared = {};
    const prepare = async () => (prepared = await phase('prepare', async () => {
      // Prepared ahead: only what is left of it (if anything) is waited for here.
      const t = await (ahead?.ready ?? this.prepareTarget({ id: status.id, mode: status.mode, handover, ep, address, files, presync }));
      modeChoice = t.modeChoice;
      status.mode = t.mode;
      return t.prepared;
    }));
    const cold = status.mode === 'cold';
    try {
      if (!cold) await prepare();
      // Bound before the freeze: from the lock on, what the peers send is kept, not lost.
      if (replays(handover)) hold = await holdWhatTheLockDrops(ep.netns, (m) => this.events.warn(`migration ${status.id}: ${m}`));
      // Waiting for another dump on this host to finish is not frozen time.
      const hostSlot = await dumpSlot();
      releaseSlot = hostSlot;
      frozenAt = performance.now();
      const pageServer = prepared.pageServerPort ? { address, port: prepared.pageServerPort } : undefined;
      dumped = await phase('dump', async () => {
        const onCriu = (c: { criu: ProcessRef; pipeKeys: string[]; tcpConnections: number }) => journalNow({ criu: c.criu, dump: { pipeKeys: c.pipeKeys, tcpConnections: c.tcpConnections } });
        const tls = this.underlay.pageTls ? { tls: this.underlay.pageTls } : {};
        if (files) {
          // runc runs CRIU: a restarted agent waits for runc to end; CRIU's log then says whether the dump did.
          const onRuntime = (runtime: ProcessRef) => journalNow({ criu: runtime, dump: { pipeKeys: [], tcpConnections: 0 } });
          return dumpContainer({ ...files.executorFiles(ep.name), netns: ep.netns, imagesDir, slot: hostSlot, onRuntime, ...tls, ...(pageServer ? { pageServer } : {}) });
        }
        if (status.mode !== 'post-copy') return dumpTree({ pid: ep.pid, netns: ep.netns, imagesDir, onCriu, slot: hostSlot, ...tls, ...(pageServer ? { pageServer } : {}) });
        const lazyServer = { address: this.underlay.address, port: await freePort(this.underlay.address) };
        journalNow({ lazyServer });
        const onRefusal = (r: PageServerRefusal) => this.pageServerRefused(status.id, r);
        lazy = await startLazyDump({ pid: ep.pid, netns: ep.netns, imagesDir, ...lazyServer, onCriu, slot: hostSlot, onRefusal, ...tls });
        return lazy.ready;
      });
      const pacedMbit = lazy ? this.paceThePull(status, lazy) : undefined;
      if (cold) await prepare();
      await phase('transfer', async () => {
        // The container is gone now: what its files became since the proactive copy goes with the images.
        if (files) await files.writeFrozenDelta(imagesDir);
        return this.target.sendImages(address, status.id, imagesDir);
      });
      const lazySource = lazy ? { address: lazy.address, port: lazy.port } : undefined;
      await phase('restore', () => this.target.restore(address, status.id, dumped!.pipeKeys, dumped!.tcpConnections, lazySource));
      let held: HeldPackets | undefined;
      await phase('switch', async () => {
        await this.target.switchOver(address, status.id);
        switched = true;
        // Should this agent die from here on, its next start finishes the migration (post-copy: CRIU serves on without it).
        journalNow({ switched: true });
        // Peers now send to the target, whose lock keeps what arrives; what this lock kept goes there.
        held = await drainWhatWasKept(hold, (m) => this.events.warn(`migration ${status.id}: ${m}`));
        hold?.close();
        hold = undefined;
      });
      handoverCounts = await phase('unlock', async () => {
        if (held) await this.target.sendHeld(address, status.id, serializeHeld(held));
        frozenWhenAsked = performance.now() - frozenAt;
        return this.target.unlock(address, status.id, frozenWhenAsked);
      });
      frozenMs = performance.now() - frozenAt;
      // The target announced itself the owner; the endpoint's traces here go once its clients are back
      // there, outside the frozen window. (Post-copy: all but the stopped tree, whose memory is being pulled.)
      await phase('cleanup', async () => {
        await this.manager.release(ep.name, { keepProcess: lazy !== undefined });
        if (!lazy) rmSync(dir, { recursive: true, force: true });
      });
      if (lazy) {
        const l = lazy;
        pull = await phase('pull', () => this.followPull(status, address, l, dumped!.lazyBytes, pacedMbit));
        rmSync(dir, { recursive: true, force: true });
      }
      slot.free();
      clientStall = await this.observe(status, address, frozenWhenAsked);
      if (pull?.result === 'incomplete') {
        return finish('failed', '', `pull: ${pull.reason ?? 'incomplete'}; the service is lost (the target's copy lacked memory and was ended)`);
      }
      return finish('success', status.to);
    } catch (err) {
      releaseSlot?.(); // idempotent: the dump releases it itself once CRIU is done with the tree
      const reason = `${status.phase}: ${describeError(err)}`;
      if (frozenAt) frozenMs = performance.now() - frozenAt;
      if (switched) {
        // Past the decision point: the endpoint is the target's; what failed is only its finishing.
        this.events.error(`migration ${status.id} of ${status.name}: after the switch, ${reason}`);
        await this.manager.release(ep.name, { keepProcess: lazy !== undefined }).catch((e: unknown) => this.events.error(`migration ${status.id}: releasing ${ep.name} here failed too: ${describeError(e)}`));
        return finish('failed', status.to, `${reason} (the service runs on ${status.to})`);
      }
      if (status.phase === 'switch') {
        // The switch was asked for and its answer lost: only the target knows whether it took over. It is asked
        // (again and again if it cannot be reached) before anything is resumed here: never on two nodes.
        hold?.close();
        const r = await recoverMigration(journal, dir, {
          self: this.self, manager: this.manager, target: this.target, events: this.events, retryMs: 5000, why: `after the switch's answer was lost (${reason})`, pageTls: this.underlay.pageTls,
        });
        return finish(r.result, r.runningOn, r.reason);
      }
      const unwind: Unwind = { status, address, ep, dir, imagesDir, hold, handover, reason, finish, files };
      if (lazy && dumped) return this.resumeInPlace(unwind, lazy, dumped);
      return this.rollBack(unwind, dumped);
    }
  }

  /**
   * Before a rollback: the target drops its half of the migration, or says it
   * switched already (then nothing may come back here). If it cannot be
   * reached it is asked again in the background; it cannot have switched, as
   * only this node asks for the switch, and it had not yet.
   */
  private async dropTargetHalf(address: string, status: MigrationStatus): Promise<'dropped' | 'switched' | 'unreachable'> {
    try {
      await this.target.abort(address, status.id);
      return 'dropped';
    } catch (err) {
      if (err instanceof RoamError && err.code === 'CONFLICT') return 'switched';
      this.events.warn(`migration ${status.id}: could not clean up on ${status.to} (${describeError(err)}); asking again in the background`);
      this.abortLater(address, status);
      return 'unreachable';
    }
  }

  /**
   * A rollback that could not reach the target keeps asking it to drop its
   * half, so that a link that comes back gets cleaned up at once. (The
   * target also gives up an arrival nobody drives, and its restart removes
   * leftovers: this is only the quick way.)
   */
  private abortLater(address: string, status: Pick<MigrationStatus, 'id' | 'to'>, attempts = 24): void {
    setTimeout(() => {
      this.target.abort(address, status.id).then(
        () => this.events.info(`migration ${status.id}: ${status.to} dropped its half`),
        () => {
          if (attempts > 1) this.abortLater(address, status, attempts - 1);
        },
      );
    }, 5000).unref();
  }

  /**
   * Post-copy: CRIU's page server would send the pull as fast as TCP goes,
   * filling the link's queue and starving the service's own clients (whose
   * lost packets then wait out retransmission timeouts). Its listening
   * socket gets a maximum pacing rate, a share of the underlay's, which the
   * pull connection inherits when the target connects. Only with a known
   * underlay rate: an assumed one could slow a faster link for nothing.
   */
  private paceThePull(status: MigrationStatus, lazy: LazyDump): number | undefined {
    if (this.underlay.rateMbit === undefined) return undefined;
    const mbit = this.underlay.rateMbit * this.underlay.pullShare;
    try {
      if (paceTcp(lazy.criuPid, lazy.port, (mbit * 1e6) / 8) > 0) return mbit;
      this.events.warn(`migration ${status.id}: no page server socket on port ${lazy.port} to pace; the pull goes unpaced`);
    } catch (err) {
      this.events.warn(`migration ${status.id}: could not pace the pull (${describeError(err)}); it goes unpaced`);
    }
    return undefined;
  }

  /**
   * Post-copy, after the unlock: the service runs on the target while its
   * memory is pulled from here. Progress is what the target acknowledged on
   * the page server's connection. When CRIU's page server ends, the target
   * says whether it got every page: only then is the stopped tree here ended.
   * If it did not, its copy is already ended (it would have read zeros), and
   * so is this one: the service is lost, and says so. If the target cannot
   * be asked, the tree stays stopped here for an operator (the report says so).
   */
  private async followPull(status: MigrationStatus, address: string, lazy: LazyDump, lazyBytes: number, pacedMbit: number | undefined): Promise<PullReport> {
    const started = performance.now();
    const progress = { lazy_bytes: lazyBytes, pulled_bytes: 0 };
    status.pull = progress;
    const emit = (state: 'progress' | 'complete' | 'incomplete') => this.events.emit('migration.pull', {
      id: status.id, name: status.name, state, lazyBytes, pulledBytes: progress.pulled_bytes, durationMs: round(performance.now() - started),
    });
    const sample = async () => {
      const acked = await pageServerAcked(lazy.port).catch(() => undefined);
      // What the wire carried also counts CRIU's page headers and TLS records: never more than the memory itself.
      if (acked !== undefined) progress.pulled_bytes = Math.min(lazyBytes, Math.max(progress.pulled_bytes, acked));
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sample();
        emit('progress');
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    let servedError: string | undefined;
    await lazy.served.catch((err: unknown) => (servedError = describeError(err)));
    sampling = false;
    await sampler;
    let verdict: PullOutcome | undefined;
    let askError = '';
    for (let attempt = 0; attempt < PULL_VERDICT_ATTEMPTS && !verdict; attempt++) {
      try {
        verdict = await this.target.pullResult(address, status.id);
      } catch (err) {
        askError = describeError(err);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    const base = { lazy_bytes: lazyBytes, duration_ms: round(performance.now() - started), ...(pacedMbit !== undefined ? { paced_mbit: round(pacedMbit) } : {}) };
    if (!verdict) {
      emit('incomplete');
      this.events.error(`migration ${status.id}: no verdict on the pull from ${status.to} (${askError}); the stopped tree ${lazy.root.pid} stays here`);
      return { ...base, result: 'incomplete', pulled_bytes: progress.pulled_bytes, pages_copied: 0, pages_total: 0, reason: `${status.to} could not say whether it has every page (${askError}); the stopped source tree (pid ${lazy.root.pid}) is kept` };
    }
    // Either way, this tree is not to run again: the target ran on from the switch.
    await stopProcess(lazy.root.pid, lazy.root.startTime, 0);
    progress.pulled_bytes = Math.max(progress.pulled_bytes, verdict.copiedPages * 4096);
    const result = verdict.complete ? 'complete' : 'incomplete';
    emit(result);
    const reason = verdict.reason ?? servedError;
    return { ...base, result, pulled_bytes: progress.pulled_bytes, pages_copied: verdict.copiedPages, pages_total: verdict.totalPages, ...(reason && !verdict.complete ? { reason } : {}) };
  }

  /**
   * Post-copy, failed before the switch: the tree never left. It is here,
   * stopped, its connections in repair mode, its memory its own; it resumes
   * where it is once the target's half is gone and CRIU's page server ended.
   */
  private async resumeInPlace(u: Unwind, lazy: LazyDump, dumped: DumpResult): Promise<HandoverReport> {
    const { status, ep, reason, finish } = u;
    if ((await this.dropTargetHalf(u.address, status)) === 'switched') {
      u.hold?.close();
      return finish('failed', status.to, `${reason}; the target had already switched: the service runs on ${status.to}, its memory still being pulled from here`);
    }
    try {
      await lazy.cancel();
      tcpRepairOffTree(ep.pid);
      const counts = await this.resumeHere(u, ep.pid, dumped.tcpConnections, true);
      this.manager.endOutgoing(ep.name);
      rmSync(u.dir, { recursive: true, force: true });
      return finish('rolled_back', status.from, `${reason}; the service resumed on ${status.from} where it was, with its connections`, counts);
    } catch (err) {
      u.hold?.close();
      this.events.error(`migration ${status.id}: resuming ${ep.name} on ${status.from} failed: ${describeError(err)}`);
      return finish('failed', '', `${reason}; resuming on ${status.from} failed too (${describeError(err)})`);
    }
  }

  /** The tree back on this node: what its peers sent meanwhile is delivered, the dump's lock lifted, the tree continued. */
  private async resumeHere(u: Unwind, pid: number, connections: number, stopped: boolean): Promise<HandoverCounts> {
    const held = await drainWhatWasKept(u.hold, (m) => this.events.warn(`migration ${u.status.id}: ${m}`));
    return resumeService({
      netns: u.ep.netns, ip: u.ep.ip, mechanism: u.handover, held: held ? [held] : [], hold: u.hold, connections, pid, stopped,
    });
  }

  private pageServerRefused(id: string, r: PageServerRefusal): void {
    reportPageServerRefusal(this.events, `migration ${id}: the lazy page server`, r);
  }

  /** What the clients felt, measured by the target from the restored sockets (ends once every active one resumed). */
  private async observe(status: MigrationStatus, address: string, frozenWhenAsked: number): Promise<HandoverReport['client_stall']> {
    status.phase = 'observe';
    try {
      const m = await this.target.clientStall(address, status.id);
      const stalls = m.resumedAfterMs.map((r) => frozenWhenAsked + r).sort((a, b) => a - b);
      const at = (q: number) => (stalls.length === 0 ? 0 : round(stalls[Math.min(stalls.length - 1, Math.ceil(q * stalls.length) - 1)]!));
      return { connections: stalls.length, idle: m.idle, p50_ms: at(0.5), p95_ms: at(0.95), max_ms: at(1) };
    } catch (err) {
      this.events.warn(`migration ${status.id}: no client stall measurement from ${status.to}: ${describeError(err)}`);
      return undefined;
    }
  }

  private async rollBack(u: Unwind, dumped: DumpResult | undefined): Promise<HandoverReport> {
    const { status, ep, reason, finish, imagesDir } = u;
    if ((await this.dropTargetHalf(u.address, status)) === 'switched') {
      // The target had switched after all: it owns the endpoint.
      u.hold?.close();
      await this.manager.release(ep.name).catch(() => undefined);
      return finish('failed', status.to, `${reason}; the target had already switched, the service runs on ${status.to}`);
    }
    if (!dumped) {
      // The process was never stopped (or CRIU resumed it when the dump failed, and the lock went with it).
      u.hold?.close();
      this.manager.endOutgoing(ep.name);
      rmSync(u.dir, { recursive: true, force: true });
      return finish('rolled_back', status.from, `${reason}; the service kept running on ${status.from}`);
    }
    try {
      const endpointDir = this.manager.dirOf(ep.name);
      await waitForShimExit(endpointDir, ep.shimPid, 3000);
      const stopped = u.handover !== 'off';
      const restored = await restoreOnSource(this.manager, ep, imagesDir, dumped.pipeKeys, stopped);
      const counts = await this.resumeHere(u, restored.pid, dumped.tcpConnections, stopped);
      this.manager.resumedLocally(ep.name, restored);
      rmSync(u.dir, { recursive: true, force: true });
      return finish('rolled_back', status.from, `${reason}; the service was restored on ${status.from} with its connections`, counts);
    } catch (err) {
      u.hold?.close();
      this.events.error(`migration ${status.id}: restoring ${ep.name} on ${status.from} failed: ${describeError(err)}; images kept in ${imagesDir}`);
      return finish('failed', '', `${reason}; restoring on ${status.from} failed too (${describeError(err)}); images kept in ${imagesDir}`);
    }
  }
}

/** Bytes the target acknowledged on the connection to the lazy page server on `port` (this node's namespace). */
async function pageServerAcked(port: number): Promise<number | undefined> {
  const c = (await listTcpConnections('/proc/self/ns/net')).find((x) => x.local.port === port);
  return c?.bytesAcked;
}

function inFlightOf(d: DumpResult): NonNullable<HandoverReport['tcp_in_flight']> {
  const f = d.tcpInFlight;
  return { unacked_to_client: f.unackedToPeer, unacked_bytes: f.unackedBytes, unread_from_client: f.unreadFromPeer, timestamps: f.timestamps, sack: f.sack };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
