/**
 * At start, what a previous run of this agent left of arrivals. Those not
 * switched can never complete: their endpoint state goes with
 * EndpointManager.adopt(), their images here. Those switched to but never
 * unlocked are this node's endpoints, waiting stopped behind the lock.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointManager } from '../endpoint/manager.js';
import type { EventBus } from '../events/bus.js';
import { resumeService } from '../handover/resume.js';
import { isSameProcessAlive } from '../sys/proc.js';
import { SWITCHED_FILE } from './arrival.js';
import { JOURNAL_FILE } from './journal.js';
import { Takeovers } from './takeovers.js';

/** Removes the images of unfinished arrivals (a source keeps its own images after a failed rollback: those have a dump log), and takeover records long unsettled. */
export function removeArrivalLeftovers(stateDir: string, log: (m: string) => void): void {
  for (const id of new Takeovers(stateDir).expire()) log(`forgot that migration ${id} was taken over here: its source never settled it`);
  const root = join(stateDir, 'migrations');
  if (!existsSync(root)) return;
  for (const id of readdirSync(root)) {
    // A source's own migrations (its journal) are recovered by MigrationSource; switched arrivals by resumeSwitchedArrivals.
    if (existsSync(join(root, id, JOURNAL_FILE)) || existsSync(join(root, id, 'images', 'dump.log')) || existsSync(join(root, id, SWITCHED_FILE))) continue;
    rmSync(join(root, id), { recursive: true, force: true });
    log(`removed the images of unfinished arrival ${id}`);
  }
}

/**
 * After the endpoints are adopted: arrivals switched to but never unlocked
 * are brought back with a kick (what the locks kept is gone with that run;
 * the clients send it again).
 */
export async function resumeSwitchedArrivals(stateDir: string, manager: EndpointManager, events: EventBus): Promise<void> {
  const root = join(stateDir, 'migrations');
  if (!existsSync(root)) return;
  for (const id of readdirSync(root)) {
    const marker = join(root, id, SWITCHED_FILE);
    if (!existsSync(marker)) continue;
    const { name } = JSON.parse(readFileSync(marker, 'utf8')) as { name: string };
    const r = manager.stored(name);
    try {
      if (r && isSameProcessAlive(r.pid, r.startTime)) {
        await manager.bridgeIncoming(name);
        await resumeService({ netns: r.netns, ip: r.ip, mechanism: 'kick', held: [], connections: 0, pid: r.pid, stopped: true });
        events.warn(`migration ${id}: ${name} had been switched to here but not unlocked; it is back, its clients kicked`);
      }
    } catch (err) {
      events.error(`migration ${id}: resuming ${name} here failed: ${String(err)}`);
    }
    rmSync(join(root, id), { recursive: true, force: true });
  }
}
