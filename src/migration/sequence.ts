/**
 * A migration, driven by the node the endpoint lives on, is this list of
 * phases run in order over one context (phases.ts says what each does). Each
 * phase declares how a failure in it is undone:
 *
 *  - resume-here: before the switch, the service comes back on this node
 *    (restored from its own images if it was dumped, resumed in place if its
 *    memory was being served for a pull), the target's half is dropped, and
 *    the report says rolled_back and why;
 *  - ask-the-target: the switch was asked for and its answer lost; only the
 *    target knows whether it took over, and it is asked before anything runs
 *    here (recovery.ts), so the service never runs on two nodes;
 *  - none: past the switch the endpoint is the target's; a failure is only
 *    its finishing, and the report says so.
 *
 * The service never runs on two nodes at once: the source tree is gone from
 * the moment its dump succeeds, and comes back only if the target never
 * switched.
 */
import { describeError } from '../errors/roam-error.js';
import { finish, journal, round, type MoveContext } from './context.js';
import * as phase from './phases.js';
import type { PhaseDeps } from './phases.js';
import type { HandoverReport, Phase } from '../records/migration-report.js';
import { undo, type Undo } from './rollback.js';

interface Step {
  /** the report's phase it is timed as; none: untimed work between two phases */
  phase?: Phase;
  /** whether it runs in this migration (default: always) */
  when?: (c: MoveContext) => boolean;
  run: (c: MoveContext, d: PhaseDeps) => Promise<void>;
  undo: Undo;
}

/** Whether the target is built before the freeze (every mode but the cold baseline; auto never picks that). */
const preparesEarly = (c: MoveContext) => c.strategy?.preparesBeforeFreeze ?? true;

const SEQUENCE: readonly Step[] = [
  { phase: 'prepare', when: preparesEarly, run: phase.prepare, undo: 'resume-here' },
  { run: phase.freeze, undo: 'resume-here' },
  { phase: 'dump', run: phase.dump, undo: 'resume-here' },
  { phase: 'prepare', when: (c) => !preparesEarly(c), run: phase.prepare, undo: 'resume-here' },
  { phase: 'transfer', run: phase.transfer, undo: 'resume-here' },
  { phase: 'restore', run: phase.restore, undo: 'resume-here' },
  { phase: 'switch', run: phase.switchOver, undo: 'ask-the-target' },
  { phase: 'unlock', run: phase.unlock, undo: 'none' },
  { phase: 'cleanup', run: phase.cleanup, undo: 'none' },
  { phase: 'pull', when: (c) => c.lazy !== undefined, run: phase.pull, undo: 'none' },
  // The move is over: the next one here may start while the clients' stall is observed.
  { run: async (c) => c.slot.free(), undo: 'none' },
  { run: phase.observe, undo: 'none' },
  { run: phase.settle, undo: 'none' },
];

export async function runSequence(c: MoveContext, d: PhaseDeps): Promise<HandoverReport> {
  journal(c, {});
  let current: Step | undefined;
  try {
    for (const step of SEQUENCE) {
      if (step.when && !step.when(c)) continue;
      current = step;
      await (step.phase ? timed(c, d, step.phase, step.run) : step.run(c, d));
    }
    if (c.pull?.result === 'incomplete') {
      return finish(c, d, 'failed', '', `pull: ${c.pull.reason ?? 'incomplete'}; the service is lost (the target's copy lacked memory and was ended)`);
    }
    return finish(c, d, 'success', c.status.to);
  } catch (err) {
    c.releaseHostSlot?.(); // idempotent: the dump releases it itself once CRIU is done with the tree
    if (c.frozenAt) c.frozenMs = performance.now() - c.frozenAt;
    return undo(c, d, current?.undo ?? 'resume-here', `${c.status.phase}: ${describeError(err)}`);
  }
}

async function timed(c: MoveContext, d: PhaseDeps, name: Phase, run: Step['run']): Promise<void> {
  const { status } = c;
  status.phase = name;
  // A phase mark: recovery acts on no phase, so it is not flushed (writeJournal).
  journal(c, { phase: name, mode: status.mode }, false);
  d.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'started', ms: 0 });
  const t0 = performance.now();
  await run(c, d);
  const ms = round(performance.now() - t0);
  c.phases[`${name}_ms`] = ms;
  status.completed.push({ phase: name, ms });
  d.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'done', ms });
}
