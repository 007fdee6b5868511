/**
 * A source agent that died mid-migration finishes or rolls back, at its next
 * start, what its journal says it was doing. The outcome is decided where it
 * always is: at the switch, and the target is the one that knows whether it
 * switched. So the source asks it first, by asking it to abort: an abort is
 * refused (409) exactly when the target took over, even across a restart of
 * the target (EndpointManager records which migration brought an endpoint).
 *
 *  - The target switched: the migration is finished. The target is asked to
 *    unlock (its own watchdog may have done so already), a post-copy pull is
 *    left to end, and this node's copy and traces go.
 *  - It did not (and has now dropped its half): the service comes back here.
 *    A tree that is still alive (the dump never finished, or CRIU let it go)
 *    is unlocked, taken out of TCP repair and continued. A tree that was
 *    dumped is restored from its images, with its connections.
 *  - The target cannot be asked: nothing is done, and it is asked again,
 *    because acting without its answer could put the service on two nodes.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessRef, RestoreResult } from '../checkpoint/checkpointer.js';
import { dumpFinished } from '../checkpoint/dump-images.js';
import { endLazyPageServer } from '../checkpoint/lazy-dump.js';
import type { PageServerTls } from '../checkpoint/page-server-tls.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { resumeService } from '../handover/resume.js';
import { tcpRepairOffTree } from '../sys/borrowed-tcp.js';
import { waitForShimExit } from '../sys/launch.js';
import { unlockNetns } from '../sys/nft.js';
import { continueTree, isSameProcessAlive, stopProcess, waitForProcessEnd } from '../sys/proc.js';
import { checkpointerFor } from './checkpointer-for.js';
import { writeJournal, type SourceJournal } from './journal.js';
import type { MigrationResult } from '../records/migration-report.js';
import type { TargetAgent } from './target-agent.js';

/** What recovery needs of the target agent. */
export type RecoveryTarget = Pick<TargetAgent, 'abort' | 'unlock' | 'settled'>;

export interface RecoveryDeps {
  self: string;
  manager: EndpointManager;
  target: RecoveryTarget;
  events: EventBus;
  /** how long to wait between attempts to reach the target */
  retryMs: number;
  /** why the migration is being recovered, for the report: "after node1's agent restarted" */
  why: string;
  /** how this node's page servers speak (to end one nobody will pull from) */
  pageTls: PageServerTls | undefined;
}

export interface Recovered {
  result: MigrationResult;
  runningOn: string;
  reason: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `p` has ended, up to `ms`; then ends it. */
function waitForEnd(p: ProcessRef, ms: number): Promise<void> {
  return waitForProcessEnd(p.pid, p.startTime, ms, 100);
}

/** Asks the target to drop its half; true if it refuses because it took over. Retries until it answers. */
async function targetTookOver(j: SourceJournal, d: RecoveryDeps): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      await d.target.abort(j.toAddress, j.id);
      return false;
    } catch (err) {
      if (err instanceof RoamError && err.code === 'CONFLICT') return true;
      if (attempt % 12 === 0) {
        d.events.warn(`migration ${j.id}: cannot ask ${j.to} whether it took over ${j.name} (${describeError(err)}); nothing is done here until it answers`);
      }
      await sleep(d.retryMs);
    }
  }
}

export async function recoverMigration(j: SourceJournal, dir: string, d: RecoveryDeps): Promise<Recovered> {
  const after = d.why;
  // The journal says the switch was answered: the target took over, whatever it says now (it may have moved the endpoint on).
  if (j.switched === true || (await targetTookOver(j, d))) {
    try {
      await d.target.unlock(j.toAddress, j.id, 0);
    } catch (err) {
      // Unlocked already: by the source before it died, or by the target's own watchdog.
      if (!(err instanceof RoamError && (err.code === 'NOT_FOUND' || err.code === 'CONFLICT'))) {
        d.events.warn(`migration ${j.id}: could not ask ${j.to} to unlock ${j.name} (${describeError(err)}); its watchdog will`);
      }
    }
    // Post-copy: the pull runs on without this agent; the stopped tree goes once CRIU has served every page.
    if (j.criu && j.lazyServer !== undefined) await waitForEnd(j.criu, 24 * 3600 * 1000);
    await stopProcess(j.root.pid, j.root.startTime, 0);
    await d.manager.release(j.name).catch((err: unknown) => d.events.warn(`migration ${j.id}: releasing ${j.name} here: ${describeError(err)}`));
    rmSync(dir, { recursive: true, force: true });
    await d.target.settled(j.toAddress, j.id).catch((err: unknown) => d.events.warn(`migration ${j.id}: ${j.to} not told the migration is settled: ${describeError(err)}`));
    return { result: 'success', runningOn: j.to, reason: `${j.to} had taken over; finished ${after}` };
  }

  // The target has dropped its half. Let the dump's CRIU end first: it may still hold the tree.
  if (j.criu) {
    if (j.lazyServer !== undefined && isSameProcessAlive(j.criu.pid, j.criu.startTime)) await endLazyPageServer(j.lazyServer.address, j.lazyServer.port, d.pageTls);
    await waitForEnd(j.criu, 30000);
  }
  const ep = d.manager.stored(j.name);
  if (!ep) {
    rmSync(dir, { recursive: true, force: true });
    return { result: 'failed', runningOn: '', reason: `${j.name} has no record here any more; nothing to resume ${after}` };
  }
  if (isSameProcessAlive(j.root.pid, j.root.startTime)) {
    // Never dumped, or CRIU let it go: it is here, perhaps stopped, perhaps behind the lock taken at the freeze.
    tcpRepairOffTree(j.root.pid);
    unlockNetns(ep.netns);
    continueTree(j.root.pid);
    d.manager.endOutgoing(j.name);
    rmSync(dir, { recursive: true, force: true });
    return { result: 'rolled_back', runningOn: d.self, reason: `the tree was never taken from ${d.self}; it runs on ${after}` };
  }
  const imagesDir = join(dir, 'images');
  if (!j.dump || !dumpFinished(imagesDir)) {
    writeJournal(dir, { ...j, phase: 'failed' });
    return { result: 'failed', runningOn: '', reason: `${j.name} is gone and its dump did not finish; images kept in ${imagesDir} ${after}` };
  }
  try {
    const endpointDir = d.manager.dirOf(j.name);
    await waitForShimExit(endpointDir, ep.shimPid, 3000);
    const restored = await restoreOnSource(d.manager, ep, imagesDir, j.dump.pipeKeys, true);
    // What clients sent while the agent was down was dropped by the lock: the kick has them send it again at once.
    await resumeService({ netns: ep.netns, ip: ep.ip, mechanism: 'kick', held: [], connections: j.dump.tcpConnections, pid: restored.pid, stopped: true });
    d.manager.resumedLocally(j.name, restored);
    rmSync(dir, { recursive: true, force: true });
    return { result: 'rolled_back', runningOn: d.self, reason: `restored on ${d.self} from its images with its connections ${after}` };
  } catch (err) {
    writeJournal(dir, { ...j, phase: 'failed' });
    return { result: 'failed', runningOn: '', reason: `restoring ${j.name} on ${d.self} failed (${describeError(err)}); images kept in ${imagesDir} ${after}` };
  }
}

/** The endpoint back on the source from its own images, after a dump whose migration failed. */
export function restoreOnSource(manager: EndpointManager, ep: StoredEndpoint, imagesDir: string, pipeKeys: string[], leaveStopped: boolean): Promise<RestoreResult> {
  return checkpointerFor(manager, ep).restore({ netns: ep.netns, imagesDir, pipeKeys, leaveStopped });
}
