/**
 * Runs Migration resources. Every agent watches them; the one whose node
 * runs the endpoint takes a new Migration by writing its status (Pending →
 * Queued, conditioned on the resourceVersion it read, so a second
 * taker gets 409 and stands back), starts the move as `roam migrate` would,
 * and writes each phase as it begins and the report when it ends.
 *
 * A Migration whose status names this node as its runner but which this
 * agent does not know (it restarted mid-move) is ended as Failed, saying
 * where the endpoint runs now: the agent's own recovery (migration journal)
 * has already put the service back where it belongs.
 */
import { parseWithSchema } from '../config/validate.js';
import { describeError, RoamError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { HandoverReport, MigrationStatus } from '../records/migration-report.js';
import { isConflict, isNotFound, type KubeClient, type Watcher } from './client.js';
import { MIGRATION_KIND, MIGRATION_PHASES, MigrationSpec, TERMINAL_PHASES, type Condition, type MigrationPhase, type MigrationResource, type MigrationResourceStatus } from './resources.js';

/** What runs a migration here (MigrationSource). */
export interface MigrationRunner {
  start(req: { name: string; to: string; mode?: string; handover?: string; presync?: boolean }): { id: string; done: Promise<HandoverReport> };
  status(id: string): MigrationStatus | undefined;
}

export interface MigrationControllerDeps {
  node: string;
  runner: MigrationRunner;
  /** whether the endpoint runs on this node */
  hosts: (endpoint: string) => boolean;
  /** where the endpoint runs now, as far as this node knows ('' if nowhere) */
  whereIs: (endpoint: string) => string;
  resyncMs: number;
  events: EventBus;
}

/** The status phase for one of the runner's phases ('prepare' → 'Prepare'). */
export function resourcePhase(runnerPhase: string): MigrationPhase | undefined {
  const p = `${runnerPhase.charAt(0).toUpperCase()}${runnerPhase.slice(1)}`;
  return MIGRATION_PHASES.find((x) => x === p && x !== 'Pending' && !TERMINAL_PHASES.includes(x));
}

const FINAL_PHASE: Record<HandoverReport['result'], MigrationPhase> = { success: 'Succeeded', rolled_back: 'RolledBack', failed: 'Failed' };

function condition(type: string, status: Condition['status'], reason: string, message: string, observedGeneration: number | undefined): Condition {
  return { type, status, reason, message: message.slice(0, 32768), lastTransitionTime: new Date().toISOString(), ...(observedGeneration !== undefined ? { observedGeneration } : {}) };
}

export class MigrationController {
  private watcher: Watcher<MigrationResource> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Migration name → the runner's id, for those this agent runs */
  private readonly running = new Map<string, string>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly writes = new Map<string, Promise<void>>();

  constructor(private readonly k: KubeClient, private readonly d: MigrationControllerDeps) {}

  start(): void {
    this.watcher = this.k.watchCustom<MigrationResource>(MIGRATION_KIND, {
      changed: (m) => void this.consider(m),
      deleted: () => undefined,
      error: (reason) => this.d.events.warn(`kubernetes: ${reason}; retrying`),
      reconnected: () => this.watcher?.list().forEach((m) => void this.consider(m)),
    });
    const phase = (e: { id: string; phase: string; state: string }) => {
      if (e.state !== 'started') return;
      const name = [...this.running].find(([, id]) => id === e.id)?.[0];
      const p = resourcePhase(e.phase);
      if (name && p) void this.writeStatus(name, (s) => ({ ...s, phase: p }));
    };
    this.unsubscribe.push(this.d.events.on('migration.phase', phase));
    this.timer = setInterval(() => this.watcher?.list().forEach((m) => void this.consider(m)), this.d.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.watcher?.stop();
    for (const u of this.unsubscribe) u();
  }

  private async consider(m: MigrationResource): Promise<void> {
    const name = m.metadata?.name ?? '';
    const phase = m.status?.phase;
    if ((phase && TERMINAL_PHASES.includes(phase)) || this.running.has(name)) return;
    // The API server checks the CRD's schema, but what is read is checked again: a CRD of another version may let more through.
    try {
      parseWithSchema(MigrationSpec, m.spec, 'INPUT_INVALID', `migration ${name}: spec`);
    } catch (err) {
      await this.refuseSpec(m, err);
      return;
    }
    if (phase && phase !== 'Pending') {
      if (m.status?.sourceNode === this.d.node && !(m.status.migrationId && this.d.runner.status(m.status.migrationId))) await this.orphaned(m);
      return;
    }
    if (!this.d.hosts(m.spec.endpoint)) return;
    await this.take(m);
  }

  /** Ends a Migration whose spec no agent can run. Every agent may try; the write is conditioned, so one wins. */
  private async refuseSpec(m: MigrationResource, err: unknown): Promise<void> {
    const generation = m.metadata?.generation;
    try {
      await this.k.replaceCustomStatus<MigrationResource>(MIGRATION_KIND, {
        ...m,
        status: { phase: 'Failed', ...(generation !== undefined ? { observedGeneration: generation } : {}), conditions: [condition('Complete', 'True', 'InvalidSpec', describeError(err), generation)] },
      });
    } catch (e) {
      if (!isConflict(e) && !isNotFound(e)) this.d.events.warn(`kubernetes: migration ${m.metadata?.name ?? ''}: ${describeError(e)}`);
    }
  }

  /** Takes it by writing its status from what was read: a 409 means someone else did (or it changed), and the watch brings the news. */
  private async take(m: MigrationResource): Promise<void> {
    const name = m.metadata?.name ?? '';
    const generation = m.metadata?.generation;
    this.running.set(name, '');
    let started: { id: string; done: Promise<HandoverReport> };
    try {
      const taken = await this.k.replaceCustomStatus<MigrationResource>(MIGRATION_KIND, {
        ...m,
        // Queued: taken by this node, waiting for its turn (migration.maxConcurrent); its first phase follows.
        status: { phase: 'Queued', sourceNode: this.d.node, ...(generation !== undefined ? { observedGeneration: generation } : {}), conditions: [condition('Started', 'True', 'Taken', `node ${this.d.node} runs it`, generation)] },
      });
      try {
        started = this.d.runner.start({ name: m.spec.endpoint, to: m.spec.targetNode, ...optional(m.spec) });
      } catch (err) {
        const reason = err instanceof RoamError ? reasonFor(err.code) : 'StartFailed';
        await this.writeStatus(name, (s) => ({ ...s, phase: 'Failed', conditions: [...s.conditions, condition('Complete', 'True', reason, describeError(err), generation)] }), taken);
        // Only now: until the final status lands, the watch shows it running here, which would look like an orphan.
        this.running.delete(name);
        return;
      }
    } catch (err) {
      this.running.delete(name);
      if (!isConflict(err) && !isNotFound(err)) this.d.events.warn(`kubernetes: migration ${name}: ${describeError(err)}`);
      return;
    }
    this.running.set(name, started.id);
    this.d.events.info(`kubernetes: migration ${name} runs as ${started.id}: ${m.spec.endpoint} to ${m.spec.targetNode}`);
    await this.writeStatus(name, (s) => ({ ...s, migrationId: started.id }));
    const report = await started.done.catch((err: unknown) => err);
    await this.writeStatus(name, (s) => {
      if (!report || typeof report !== 'object' || !('result' in report)) {
        return { ...s, phase: 'Failed', conditions: [...s.conditions, condition('Complete', 'True', 'Error', describeError(report), generation)] };
      }
      const r = report as HandoverReport;
      const message = r.result === 'success' ? `${r.name} runs on ${r.running_on}, frozen ${r.frozen_ms} ms` : `${r.reason ?? r.result}; it runs on ${r.running_on || 'no node'}`;
      return { ...s, phase: FINAL_PHASE[r.result], report: r, conditions: [...s.conditions, condition('Complete', 'True', FINAL_PHASE[r.result], message, generation)] };
    });
    this.running.delete(name);
  }

  private async orphaned(m: MigrationResource): Promise<void> {
    const name = m.metadata?.name ?? '';
    const where = this.d.whereIs(m.spec.endpoint);
    this.d.events.warn(`kubernetes: migration ${name} was running here when this agent stopped; ending it as failed (${m.spec.endpoint} runs on ${where || 'no node'})`);
    await this.writeStatus(name, (s) => ({
      ...s, phase: 'Failed',
      conditions: [...s.conditions, condition('Complete', 'True', 'AgentRestarted', `the agent of ${this.d.node} restarted during the move; ${m.spec.endpoint} runs on ${where || 'no node'}`, m.metadata?.generation)],
    }), m);
  }

  /**
   * Writes a status change on the newest copy: a 409 re-reads and applies
   * the change again (other writers only touch spec and metadata, or are
   * this node's own earlier writes).
   */
  private writeStatus(name: string, change: (s: MigrationResourceStatus) => MigrationResourceStatus, read?: MigrationResource): Promise<void> {
    // One write at a time per Migration, in the order asked: a later phase never lands before an earlier one.
    const next = (this.writes.get(name) ?? Promise.resolve()).then(() => this.writeNow(name, change, read));
    this.writes.set(name, next);
    void next.then(() => {
      if (this.writes.get(name) === next) this.writes.delete(name);
    });
    return next;
  }

  private async writeNow(name: string, change: (s: MigrationResourceStatus) => MigrationResourceStatus, read: MigrationResource | undefined): Promise<void> {
    let current = read;
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        current ??= await this.k.getCustom<MigrationResource>(MIGRATION_KIND, name);
        // A status someone else mangled is started afresh rather than carried on.
        const read = current.status;
        const before: MigrationResourceStatus = read && typeof read === 'object' ? read : { phase: 'Pending', conditions: [] };
        await this.k.replaceCustomStatus(MIGRATION_KIND, { ...current, status: change({ ...before, conditions: Array.isArray(before.conditions) ? before.conditions : [] }) });
        return;
      } catch (err) {
        current = undefined;
        if (isConflict(err)) continue;
        if (!isNotFound(err)) this.d.events.warn(`kubernetes: migration ${name} status: ${describeError(err)}`);
        return;
      }
    }
    this.d.events.warn(`kubernetes: migration ${name} status: still conflicting after 8 attempts`);
  }
}

function optional(spec: MigrationResource['spec']): { mode?: string; handover?: string; presync?: boolean } {
  return {
    ...(spec.mode !== undefined ? { mode: spec.mode } : {}),
    ...(spec.handover !== undefined ? { handover: spec.handover } : {}),
    ...(spec.presync !== undefined ? { presync: spec.presync } : {}),
  };
}

/** A condition reason (CamelCase) for a refusal's error code. */
function reasonFor(code: string): string {
  return code.toLowerCase().split('_').map((w) => `${w.charAt(0).toUpperCase()}${w.slice(1)}`).join('');
}
