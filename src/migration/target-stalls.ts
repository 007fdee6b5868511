/**
 * What each client waited, measured by the target after its unlock from the
 * restored sockets (handover/stall-meter.ts), kept a while for the source to
 * ask and said on the bus.
 */
import { RoamError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { measureResume } from '../handover/stall-meter.js';
import type { ResumeMeasurement } from '../records/handover.js';

export class StallMeasurements {
  private readonly measured = new Map<string, Promise<ResumeMeasurement>>();

  constructor(private readonly keepMs: number, private readonly events?: EventBus) {}

  /**
   * Starts measuring an arrival just unlocked. A client waited: frozen until the unlock was asked for
   * (`frozenMs`), then the handover (`asked` to `unlockedAt`), then until its data came.
   */
  start(a: { id: string; name: string; netns: string }, frozenMs: number, asked: number, unlockedAt: number): void {
    const stall = measureResume(a.netns, unlockedAt).then((m) => ({ ...m, resumedAfterMs: m.resumedAfterMs.map((r) => r + (unlockedAt - asked)) }));
    this.measured.set(a.id, stall);
    setTimeout(() => this.measured.delete(a.id), this.keepMs).unref();
    stall.then(
      (m) => this.events?.emit('migration.stall', { id: a.id, name: a.name, stallsMs: m.resumedAfterMs.map((r) => frozenMs + r), idle: m.idle }),
      (err) => this.events?.warn(`migration ${a.id}: could not read the restored connections' TCP state: ${String(err)}`),
    );
  }

  /** The per-connection resume delays after the unlock of `id` (waits for the measurement to end). */
  of(id: string): Promise<ResumeMeasurement> {
    const m = this.measured.get(id);
    if (!m) return Promise.reject(new RoamError('NOT_FOUND', `no stall measurement for migration ${id} here`));
    return m;
  }
}
