/**
 * Targets prepared ahead of a move a policy predicts, while the service
 * runs: the target's locked namespace and interface, a container's image and
 * files, the mode choice. A move there later takes the preparation over and
 * pays only the rest; a move elsewhere, a changed policy, or a prediction
 * that faded gives it up (the target drops its half).
 */
import { describeError } from '../errors/roam-error.js';
import type { HandoverMechanism } from '../records/handover.js';
import { ContainerFilesMove } from './container-files.js';
import type { PreparedTarget, TakenAhead } from './context.js';
import type { PhaseDeps } from './phases.js';
import { prepareTarget } from './prepare-target.js';
import type { MigrationMode } from '../records/migration-report.js';
import { abortLater } from './rollback.js';
import { newMigrationId } from './target-agent.js';

/** How often a prepared-ahead arrival is said to be still wanted (the target gives up idle ones after a minute). */
const KEEP_AHEAD_MS = 20000;

interface Ahead extends TakenAhead {
  id: string;
  to: string;
  address: string;
  keepAlive: NodeJS.Timeout;
  /** the endpoint's policy as the target was told it (it moves with the endpoint) */
  policy: string;
}

export class PreparationsAhead {
  private readonly ahead = new Map<string, Ahead>();
  /** preparations being given up: a new one for the same endpoint waits, or the target would still hold its name */
  private readonly withdrawals = new Map<string, Promise<void>>();

  constructor(private readonly d: Omit<PhaseDeps, 'withdrawn'>) {}

  /** Resolves once no preparation of `name` is being given up. */
  withdrawn(name: string): Promise<void> {
    return this.withdrawals.get(name) ?? Promise.resolve();
  }

  /** `address`: the target agent's, already checked as a move's would be. */
  prepare(name: string, to: string, address: string): { id: string; ready: Promise<void> } {
    const existing = this.ahead.get(name);
    if (existing?.to === to) return { id: existing.id, ready: existing.ready.then(() => undefined) };
    if (existing) this.withdraw(name);
    const { manager, target, events } = this.d;
    const ep = manager.stored(name)!;
    const id = newMigrationId();
    const files = ep.container ? new ContainerFilesMove(manager.containers, manager.dirOf(name), ep.container) : undefined;
    const ready: Promise<PreparedTarget> = prepareTarget({ ...this.d, withdrawn: (n) => this.withdrawn(n) }, { id, mode: 'auto', handover: 'full', ep, address, files, presync: true });
    const keepAlive = setInterval(() => {
      target.keep(address, id).catch((err: unknown) => events.warn(`prepared move ${id} of ${name} to ${to}: ${describeError(err)}`));
    }, KEEP_AHEAD_MS);
    keepAlive.unref();
    const entry: Ahead = { id, to, address, files, ready, keepAlive, at: performance.now(), policy: JSON.stringify(ep.policy ?? null) };
    this.ahead.set(name, entry);
    ready.catch((err: unknown) => {
      if (this.ahead.get(name) !== entry) return;
      events.warn(`preparing ${to} ahead for ${name} failed: ${describeError(err)}`);
      this.withdraw(name);
    });
    return { id, ready: ready.then(() => undefined) };
  }

  /** Gives up a preparation made ahead: the target drops its half. */
  withdraw(name: string): void {
    const a = this.ahead.get(name);
    if (!a) return;
    this.ahead.delete(name);
    clearInterval(a.keepAlive);
    const { target, events } = this.d;
    const done: Promise<void> = a.ready.catch(() => undefined).then(() => target.abort(a.address, a.id)).catch(() => abortLater(target, events, a.address, { id: a.id, to: a.to }));
    this.withdrawals.set(name, done);
    void done.finally(() => {
      if (this.withdrawals.get(name) === done) this.withdrawals.delete(name);
    });
  }

  list(): { name: string; to: string; id: string }[] {
    return [...this.ahead].map(([name, a]) => ({ name, to: a.to, id: a.id }));
  }

  /** A preparation this move can use, taken out of the waiting list; any other is given up. */
  take(name: string, to: string, mode: MigrationMode, handover: HandoverMechanism, presync: boolean): (TakenAhead & { id: string }) | undefined {
    const a = this.ahead.get(name);
    if (!a) return undefined;
    // A policy changed since would arrive as it was: the target is prepared again, with the new one.
    const policy = JSON.stringify(this.d.manager.stored(name)?.policy ?? null);
    if (a.to !== to || mode !== 'auto' || handover !== 'full' || !presync || a.policy !== policy) {
      this.withdraw(name);
      return undefined;
    }
    this.ahead.delete(name);
    clearInterval(a.keepAlive);
    return a;
  }
}
