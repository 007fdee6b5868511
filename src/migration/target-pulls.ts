/**
 * Post-copy, target side: the verdict on each pull, for the source to ask.
 * Once the lazy-pages daemon ends, the restored tree either has all of its
 * memory or must not run on. Without its daemon, a missing page would read
 * as zeros (userfaultfd unregisters when its last holder closes it): the
 * tree is ended at once, and the source learns why.
 */
import { rmSync } from 'node:fs';
import type { PullOutcome } from '../checkpoint/checkpointer.js';
import { RoamError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { processStartTime, stopProcess } from '../sys/proc.js';
import type { Arrival } from './arrival.js';

export class PullVerdicts {
  private readonly verdicts = new Map<string, Promise<PullOutcome>>();

  /** `keepMs`: how long a verdict stays to be asked for after the pull ended. */
  constructor(private readonly keepMs: number, private readonly events?: EventBus) {}

  /** Follows the pull of an arrival whose lazy-pages daemon runs; `open`: whether the arrival still owns its folder. */
  watch(a: Arrival, open: () => boolean): void {
    const verdict = a.lazyPages!.outcome.then(async (o) => {
      if (!o.complete && a.restored) {
        await stopProcess(a.restored.pid, processStartTime(a.restored.pid) ?? 0, 0);
        this.events?.error(`migration ${a.id}: the pull of ${a.name}'s memory failed (${o.reason ?? 'incomplete'}); its restored copy was ended rather than run on missing memory`);
      }
      // The images (and the daemon's log) were kept for the daemon; an arrival still open removes them itself.
      if (!open()) rmSync(a.dir, { recursive: true, force: true });
      return o;
    });
    this.verdicts.set(a.id, verdict);
    void verdict.finally(() => setTimeout(() => this.verdicts.delete(a.id), this.keepMs).unref());
  }

  /** How the pull of `id` ended (waits for it). */
  of(id: string): Promise<PullOutcome> {
    const p = this.verdicts.get(id);
    if (!p) return Promise.reject(new RoamError('NOT_FOUND', `no post-copy pull for migration ${id} here`));
    return p;
  }
}
