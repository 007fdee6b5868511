/**
 * Undoing a migration that failed, source side (sequence.ts says which undo
 * each phase declares). Before the switch the service comes back here; the
 * target drops its half, or says it switched after all (then nothing may come
 * back here).
 */
import { rmSync } from 'node:fs';
import type { LazyDump } from '../checkpoint/checkpointer.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { HandoverCounts } from '../records/handover.js';
import { drainWhatWasKept } from '../handover/hold.js';
import { resumeService } from '../handover/resume.js';
import { tcpRepairOffTree } from '../sys/borrowed-tcp.js';
import { waitForShimExit } from '../sys/launch.js';
import { ungatePort } from '../sys/port-gate.js';
import { finish, type MoveContext, type SourceDeps } from './context.js';
import { recoverMigration, restoreOnSource } from './recovery.js';
import type { HandoverReport } from '../records/migration-report.js';
import type { TargetAgent } from './target-agent.js';

/** How a failure in a phase is undone (sequence.ts). */
export type Undo = 'resume-here' | 'ask-the-target' | 'none';

export async function undo(c: MoveContext, d: SourceDeps, how: Undo, reason: string): Promise<HandoverReport> {
  const { status } = c;
  if (c.switched || how === 'none') {
    // Past the decision point: the endpoint is the target's; what failed is only its finishing.
    d.events.error(`migration ${status.id} of ${status.name}: after the switch, ${reason}`);
    await d.manager.release(c.ep.name, { keepProcess: c.lazy !== undefined }).catch((e: unknown) => d.events.error(`migration ${status.id}: releasing ${c.ep.name} here failed too: ${describeError(e)}`));
    return finish(c, d, 'failed', status.to, `${reason} (the service runs on ${status.to})`);
  }
  if (how === 'ask-the-target') {
    // Only the target knows whether it took over. It is asked (again and again if it cannot be reached)
    // before anything is resumed here: never on two nodes.
    c.hold?.close();
    const r = await recoverMigration(c.journal, c.dir, {
      self: d.self, manager: d.manager, target: d.target, events: d.events, retryMs: 5000, why: `after the switch's answer was lost (${reason})`, pageTls: d.underlay.pageTls,
    });
    return finish(c, d, r.result, r.runningOn, r.reason);
  }
  if (c.lazy && c.dumped) return resumeInPlace(c, d, c.lazy, reason);
  // A page server gated for a dump that never served: its gate goes now (a serving one lifts its own).
  if (c.lazyServer && !c.lazy) ungatePort(c.lazyServer.port);
  return rollBack(c, d, reason);
}

/**
 * Before a rollback: the target drops its half of the migration, or says it
 * switched already. If it cannot be reached it is asked again in the
 * background; it cannot have switched, as only this node asks for the switch,
 * and it had not yet.
 */
async function dropTargetHalf(c: MoveContext, d: SourceDeps): Promise<'dropped' | 'switched' | 'unreachable'> {
  try {
    await d.target.abort(c.address, c.status.id);
    return 'dropped';
  } catch (err) {
    if (err instanceof RoamError && err.code === 'CONFLICT') return 'switched';
    d.events.warn(`migration ${c.status.id}: could not clean up on ${c.status.to} (${describeError(err)}); asking again in the background`);
    abortLater(d.target, d.events, c.address, c.status);
    return 'unreachable';
  }
}

/**
 * A target that could not be reached is asked to drop its half every 5 s, so
 * that a link that comes back gets cleaned up at once. (The target also gives
 * up an arrival nobody drives, and its restart removes leftovers: this is
 * only the quick way.)
 */
export function abortLater(target: Pick<TargetAgent, 'abort'>, events: SourceDeps['events'], address: string, m: { id: string; to: string }, attempts = 24): void {
  setTimeout(() => {
    target.abort(address, m.id).then(
      () => events.info(`migration ${m.id}: ${m.to} dropped its half`),
      () => {
        if (attempts > 1) abortLater(target, events, address, m, attempts - 1);
      },
    );
  }, 5000).unref();
}

/**
 * Post-copy, failed before the switch: the tree never left. It is here,
 * stopped, its connections in repair mode, its memory its own; it resumes
 * where it is once the target's half is gone and CRIU's page server ended.
 */
async function resumeInPlace(c: MoveContext, d: SourceDeps, lazy: LazyDump, reason: string): Promise<HandoverReport> {
  const { status, ep } = c;
  if ((await dropTargetHalf(c, d)) === 'switched') {
    c.hold?.close();
    return finish(c, d, 'failed', status.to, `${reason}; the target had already switched: the service runs on ${status.to}, its memory still being pulled from here`);
  }
  try {
    await lazy.cancel();
    tcpRepairOffTree(ep.pid);
    const counts = await resumeHere(c, d, ep.pid, true);
    d.manager.endOutgoing(ep.name);
    rmSync(c.dir, { recursive: true, force: true });
    return finish(c, d, 'rolled_back', status.from, `${reason}; the service resumed on ${status.from} where it was, with its connections`, counts);
  } catch (err) {
    c.hold?.close();
    d.events.error(`migration ${status.id}: resuming ${ep.name} on ${status.from} failed: ${describeError(err)}`);
    return finish(c, d, 'failed', '', `${reason}; resuming on ${status.from} failed too (${describeError(err)})`);
  }
}

async function rollBack(c: MoveContext, d: SourceDeps, reason: string): Promise<HandoverReport> {
  const { status, ep, dumped, imagesDir } = c;
  if ((await dropTargetHalf(c, d)) === 'switched') {
    // The target had switched after all: it owns the endpoint.
    c.hold?.close();
    await d.manager.release(ep.name).catch(() => undefined);
    return finish(c, d, 'failed', status.to, `${reason}; the target had already switched, the service runs on ${status.to}`);
  }
  if (!dumped) {
    // The process was never stopped (or CRIU resumed it when the dump failed, and the lock went with it).
    c.hold?.close();
    d.manager.endOutgoing(ep.name);
    rmSync(c.dir, { recursive: true, force: true });
    return finish(c, d, 'rolled_back', status.from, `${reason}; the service kept running on ${status.from}`);
  }
  try {
    await waitForShimExit(d.manager.dirOf(ep.name), ep.shimPid, 3000);
    const stopped = c.handover !== 'off';
    const restored = await restoreOnSource(d.manager, ep, imagesDir, dumped.pipeKeys, stopped);
    const counts = await resumeHere(c, d, restored.pid, stopped);
    d.manager.resumedLocally(ep.name, restored);
    rmSync(c.dir, { recursive: true, force: true });
    return finish(c, d, 'rolled_back', status.from, `${reason}; the service was restored on ${status.from} with its connections`, counts);
  } catch (err) {
    c.hold?.close();
    d.events.error(`migration ${status.id}: restoring ${ep.name} on ${status.from} failed: ${describeError(err)}; images kept in ${imagesDir}`);
    return finish(c, d, 'failed', '', `${reason}; restoring on ${status.from} failed too (${describeError(err)}); images kept in ${imagesDir}`);
  }
}

/** The tree back on this node: what its peers sent meanwhile is delivered, the dump's lock lifted, the tree continued. */
async function resumeHere(c: MoveContext, d: SourceDeps, pid: number, stopped: boolean): Promise<HandoverCounts> {
  const held = await drainWhatWasKept(c.hold, (m) => d.events.warn(`migration ${c.status.id}: ${m}`));
  return resumeService({
    netns: c.ep.netns, ip: c.ep.ip, mechanism: c.handover, held: held ? [held] : [], hold: c.hold, connections: c.dumped?.tcpConnections ?? 0, pid, stopped,
  });
}
