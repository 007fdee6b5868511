/**
 * The migrations this node drives, as the endpoints' source: each is checked,
 * waits for a slot, and runs the sequence (sequence.ts) over its own context
 * (context.ts); its status is kept for the API. Targets prepared ahead of a
 * predicted move are in ahead.ts, and migrations a previous run of this agent
 * left unfinished are finished or rolled back by recovery.ts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LocationTable } from '../cluster/locations.js';
import type { EndpointManager } from '../endpoint/manager.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { HandoverMechanism } from '../records/handover.js';
import { PreparationsAhead } from './ahead.js';
import { ContainerFilesMove } from './container-files.js';
import { newContext, round, type SourceDeps, type UnderlayPlan } from './context.js';
import { readJournals } from './journal.js';
import { strategyOf } from './modes/index.js';
import type { PhaseDeps } from './phases.js';
import { ModeChooser } from './prepare-target.js';
import { recoverMigration, type Recovered } from './recovery.js';
import { noPhases, type HandoverReport, type MigrationMode, type MigrationStatus } from '../records/migration-report.js';
import { runSequence } from './sequence.js';
import { MigrationSlots } from './slots.js';
import { newMigrationId, type TargetAgent } from './target-agent.js';

export interface MigrateRequest {
  name: string;
  to: string;
  mode?: MigrationMode | undefined;
  handover?: HandoverMechanism | undefined;
  /** a container's files: copied while it runs, only the changes in the freeze (default); false: all in the freeze */
  presync?: boolean | undefined;
}

/** How many finished migrations' statuses are kept for the API. */
const KEEP_STATUSES = 200;

export class MigrationSource {
  private readonly statuses = new Map<string, MigrationStatus>();
  private readonly moving = new Map<string, string>();
  private readonly slots: MigrationSlots;
  private readonly deps: PhaseDeps;
  private readonly ahead: PreparationsAhead;

  constructor(self: string, stateDir: string, manager: EndpointManager, table: LocationTable, target: TargetAgent, events: EventBus, underlay: UnderlayPlan, maxConcurrent = 1) {
    const shared: SourceDeps & { chooser: ModeChooser } = { self, stateDir, manager, table, target, events, underlay, chooser: new ModeChooser(underlay.rateMbit) };
    this.ahead = new PreparationsAhead(shared);
    this.deps = { ...shared, withdrawn: (name) => this.ahead.withdrawn(name) };
    this.slots = new MigrationSlots(maxConcurrent);
  }

  /**
   * At start: migrations a previous run of this agent left unfinished (its
   * journals) are finished or rolled back, each in the background, the
   * endpoint counted as moving meanwhile (recovery.ts).
   */
  recoverInterrupted(retryMs = 5000): number {
    const { self, stateDir, manager, target, events, underlay } = this.deps;
    const found = readJournals(stateDir);
    for (const { dir, journal: j, error } of found) {
      if (!j) {
        events.error(`unreadable migration journal in ${dir} (${error}); left for an operator`);
        continue;
      }
      if (j.phase === 'failed') {
        events.warn(`migration ${j.id} of ${j.name} was given up on; its images are kept in ${dir}`);
        continue;
      }
      this.moving.set(j.name, j.id);
      const status: MigrationStatus = { id: j.id, name: j.name, from: self, to: j.to, mode: j.mode, state: 'running', phase: 'recover', completed: [] };
      this.statuses.set(j.id, status);
      events.warn(`migration ${j.id} of ${j.name} to ${j.to} was interrupted in its ${j.phase} phase; recovering it`);
      void recoverMigration(j, dir, { self, manager, target, events, retryMs, why: `after ${self}'s agent restarted`, pageTls: underlay.pageTls })
        .catch((err: unknown): Recovered => ({ result: 'failed', runningOn: '', reason: `recovery failed: ${describeError(err)}` }))
        .then((r) => {
          const report: HandoverReport = {
            id: j.id, name: j.name, from: self, to: j.to, mode: j.mode, result: r.result, reason: r.reason, running_on: r.runningOn,
            frozen_ms: 0, phases: noPhases(), image_bytes: 0, tcp_connections: j.dump?.tcpConnections ?? 0, started_at: new Date().toISOString(),
          };
          Object.assign(status, { state: r.result, report });
          (r.result === 'failed' ? events.error.bind(events) : events.info.bind(events))(`migration ${j.id} of ${j.name}: ${r.result}, ${r.reason}`);
          events.emit('migration.finished', { report });
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

  isMoving(name: string): boolean {
    return this.moving.has(name);
  }

  /** Checks the request, then runs the migration in the background; returns its id at once. */
  start(req: MigrateRequest): { id: string; done: Promise<HandoverReport> } {
    const mode = req.mode ?? 'auto';
    const handover = req.handover ?? 'full';
    const presync = req.presync ?? true;
    const { address } = this.checkMove(req.name, req.to, mode);
    const ahead = this.ahead.take(req.name, req.to, mode, handover, presync);
    const ep = this.deps.manager.beginOutgoing(req.name);
    const id = ahead?.id ?? newMigrationId();
    this.moving.set(req.name, id);
    const status: MigrationStatus = { id, name: req.name, from: this.deps.self, to: req.to, mode, state: 'running', phase: 'queued', completed: [] };
    this.statuses.set(id, status);
    while (this.statuses.size > KEEP_STATUSES) this.statuses.delete(this.statuses.keys().next().value!);
    const { manager, stateDir } = this.deps;
    const files = ahead ? ahead.files : ep.container ? new ContainerFilesMove(manager.containers, manager.dirOf(ep.name), ep.container) : undefined;
    const asked = performance.now();
    const done = this.slots.take().then(async ({ free, waited }) => {
      status.phase = 'prepare';
      const slot = waited ? { free, queuedMs: round(performance.now() - asked) } : { free };
      try {
        const dir = join(stateDir, 'migrations', id);
        const imagesDir = join(dir, 'images');
        mkdirSync(imagesDir, { recursive: true });
        const c = newContext({ status, ep, address, handover, presync, files, ahead, slot, dir, imagesDir });
        // An explicit mode is known now (the cold baseline dumps before it prepares); auto is chosen at prepare.
        if (mode !== 'auto') c.strategy = strategyOf(mode);
        return await runSequence(c, this.deps);
      } finally {
        free();
      }
    }).finally(() => this.moving.delete(req.name));
    return { id, done };
  }

  /**
   * Prepares `to` for a move of `name` that a policy predicts, while the
   * service runs. A move there started later uses it and pays only the rest;
   * a move elsewhere, or withdrawAhead, gives it up.
   */
  prepareAhead(name: string, to: string): { id: string; ready: Promise<void> } {
    const { address } = this.checkMove(name, to, 'auto');
    return this.ahead.prepare(name, to, address);
  }

  /** Gives up a preparation made ahead (the prediction faded): the target drops its half. */
  withdrawAhead(name: string): void {
    this.ahead.withdraw(name);
  }

  /** Endpoints with a target prepared ahead, and where. */
  preparedAhead(): { name: string; to: string; id: string }[] {
    return this.ahead.list();
  }

  /** The checks every move (or its preparation) passes first; the target's peer address. */
  private checkMove(name: string, to: string, mode: MigrationMode): { address: string } {
    const { manager, self, table } = this.deps;
    const busy = this.moving.get(name);
    if (busy) throw new RoamError('CONFLICT', `endpoint ${name} is already moving (migration ${busy})`);
    if (!manager.has(name)) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${self}`);
    const stored = manager.stored(name);
    if (stored?.pod) throw new RoamError('INPUT_INVALID', `endpoint ${name} is pod ${stored.pod.namespace}/${stored.pod.name}, which the kubelet runs: moving a pod is not built yet (docs/KUBERNETES.md)`);
    if (mode !== 'auto' && stored?.container && !strategyOf(mode).forContainers) {
      throw new RoamError('INPUT_INVALID', `mode: ${mode} is not available for containers (${name} is one); use stop-copy, streamed or auto`);
    }
    if (to === self) throw new RoamError('INPUT_INVALID', `to: endpoint ${name} is already on ${self}`);
    const peer = table.node(to);
    if (!peer) throw new RoamError('NOT_FOUND', `to: unknown node ${to}`);
    if (!peer.reachable) throw new RoamError('PEER_UNREACHABLE', `to: node ${to} is not reachable right now`);
    return { address: peer.address };
  }
}
