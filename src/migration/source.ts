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
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dumpTree, restoreUnderShim, type DumpResult } from '../checkpoint/executor.js';
import type { LocationTable } from '../cluster/locations.js';
import type { EndpointManager } from '../endpoint/manager.js';
import { waitForShimExit } from '../sys/launch.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { removeCriuLockTables } from '../sys/nft.js';
import type { HandoverReport, MigrationStatus, Phase } from './report.js';
import type { PrepareRequest } from './target.js';

/** What the source needs of the target agent (the peer protocol, or a fake). */
export interface TargetAgent {
  prepare(address: string, body: PrepareRequest): Promise<void>;
  sendImages(address: string, id: string, imagesDir: string, parallel: number): Promise<number>;
  restore(address: string, id: string, pipeKeys: string[]): Promise<{ pid: number; restore_ms: number }>;
  switchOver(address: string, id: string): Promise<void>;
  unlock(address: string, id: string, frozenMs: number): Promise<void>;
  abort(address: string, id: string): Promise<void>;
}

export interface MigrateRequest {
  name: string;
  to: string;
  mode: string | undefined;
}

/**
 * stop-copy: the target is prepared (locked namespace, IP, MAC, bridge port)
 *   before the freeze; images stream in parallel.
 * cold: the research-prototype sequence, kept as the baseline the bench
 *   measures against: freeze and dump first, then build the target, then
 *   one transfer stream; everything inside the frozen window.
 */
const MODES = ['stop-copy', 'cold'] as const;
const KEEP_STATUSES = 200;

export class MigrationSource {
  private readonly statuses = new Map<string, MigrationStatus>();
  private readonly moving = new Map<string, string>();

  constructor(
    private readonly self: string,
    private readonly stateDir: string,
    private readonly manager: EndpointManager,
    private readonly table: LocationTable,
    private readonly target: TargetAgent,
    private readonly events: EventBus,
  ) {}

  status(id: string): MigrationStatus | undefined {
    const s = this.statuses.get(id);
    return s ? structuredClone(s) : undefined;
  }

  inFlight(): number {
    return this.moving.size;
  }

  /** Checks the request, then runs the migration in the background; returns its id at once. */
  start(req: MigrateRequest): { id: string; done: Promise<HandoverReport> } {
    const mode = req.mode ?? 'stop-copy';
    if (!(MODES as readonly string[]).includes(mode)) throw new RoamError('INPUT_INVALID', `mode: ${JSON.stringify(mode)} is not one of ${MODES.join(', ')}`);
    const busy = this.moving.get(req.name);
    if (busy) throw new RoamError('CONFLICT', `endpoint ${req.name} is already moving (migration ${busy})`);
    if (!this.manager.has(req.name)) throw new RoamError('NOT_FOUND', `endpoint ${req.name} is not on node ${this.self}`);
    if (req.to === this.self) throw new RoamError('INPUT_INVALID', `to: endpoint ${req.name} is already on ${this.self}`);
    const peer = this.table.node(req.to);
    if (!peer) throw new RoamError('NOT_FOUND', `to: unknown node ${req.to}`);
    if (!peer.reachable) throw new RoamError('PEER_UNREACHABLE', `to: node ${req.to} is not reachable right now`);
    const record = this.manager.beginOutgoing(req.name);
    const id = `m-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    this.moving.set(req.name, id);
    const status: MigrationStatus = { id, name: req.name, from: this.self, to: req.to, mode, state: 'running', phase: 'prepare', completed: [] };
    this.statuses.set(id, status);
    while (this.statuses.size > KEEP_STATUSES) this.statuses.delete(this.statuses.keys().next().value!);
    const done = this.run(status, peer.address, record).finally(() => this.moving.delete(req.name));
    return { id, done };
  }

  private async run(status: MigrationStatus, address: string, ep: ReturnType<EndpointManager['beginOutgoing']>): Promise<HandoverReport> {
    const startedAt = new Date().toISOString();
    const dir = join(this.stateDir, 'migrations', status.id);
    const imagesDir = join(dir, 'images');
    mkdirSync(imagesDir, { recursive: true });
    const phases = { prepare_ms: 0, dump_ms: 0, transfer_ms: 0, restore_ms: 0, switch_ms: 0, unlock_ms: 0, cleanup_ms: 0 };
    let dumped: DumpResult | undefined;
    let frozenAt = 0;
    let frozenMs = 0;
    let switched = false;

    const phase = async <T>(name: Phase, work: () => Promise<T>): Promise<T> => {
      status.phase = name;
      this.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'started', ms: 0 });
      const t0 = performance.now();
      const result = await work();
      const ms = round(performance.now() - t0);
      phases[`${name}_ms`] = ms;
      status.completed.push({ phase: name, ms });
      this.events.emit('migration.phase', { id: status.id, name: status.name, phase: name, state: 'done', ms });
      return result;
    };

    const finish = (result: HandoverReport['result'], runningOn: string, reason?: string): HandoverReport => {
      const report: HandoverReport = {
        id: status.id, name: status.name, from: status.from, to: status.to, mode: status.mode, result,
        ...(reason ? { reason } : {}), running_on: runningOn,
        frozen_ms: round(frozenMs), phases, image_bytes: dumped?.imageBytes ?? 0, tcp_connections: dumped?.tcpConnections ?? 0, started_at: startedAt,
      };
      status.state = result;
      status.report = report;
      this.events.emit('migration.finished', { report });
      return report;
    };

    const cold = status.mode === 'cold';
    const prepare = () => phase('prepare', () => this.target.prepare(address, {
      id: status.id, mode: status.mode, name: ep.name, ip: ep.ip, prefixLength: ep.prefixLength, mac: ep.mac,
      generation: ep.generation + 1, command: ep.command, createdAt: ep.createdAt,
    }));
    try {
      if (!cold) await prepare();
      frozenAt = performance.now();
      dumped = await phase('dump', () => dumpTree({ pid: ep.pid, netns: ep.netns, imagesDir }));
      if (cold) await prepare();
      await phase('transfer', () => this.target.sendImages(address, status.id, imagesDir, cold ? 1 : 3));
      await phase('restore', () => this.target.restore(address, status.id, dumped!.pipeKeys));
      await phase('switch', async () => {
        await this.target.switchOver(address, status.id);
        switched = true;
        // The target announced itself the owner; here the endpoint's local traces go and the FDB re-points.
        await this.manager.release(ep.name);
      });
      await phase('unlock', () => this.target.unlock(address, status.id, performance.now() - frozenAt));
      frozenMs = performance.now() - frozenAt;
      await phase('cleanup', async () => rmSync(dir, { recursive: true, force: true }));
      return finish('success', status.to);
    } catch (err) {
      const reason = `${status.phase}: ${describeError(err)}`;
      if (frozenAt) frozenMs = performance.now() - frozenAt;
      if (switched) {
        // Past the decision point: the endpoint is the target's; what failed is only its finishing.
        this.events.error(`migration ${status.id} of ${status.name}: after the switch, ${reason}`);
        return finish('failed', status.to, `${reason} (the service runs on ${status.to})`);
      }
      return this.rollBack(status, address, ep, imagesDir, dir, dumped, reason, finish);
    }
  }

  private async rollBack(
    status: MigrationStatus,
    address: string,
    ep: ReturnType<EndpointManager['beginOutgoing']>,
    imagesDir: string,
    dir: string,
    dumped: DumpResult | undefined,
    reason: string,
    finish: (result: HandoverReport['result'], runningOn: string, reason?: string) => HandoverReport,
  ): Promise<HandoverReport> {
    try {
      await this.target.abort(address, status.id);
    } catch (err) {
      if (err instanceof RoamError && err.code === 'CONFLICT') {
        // The target had switched after all: it owns the endpoint.
        await this.manager.release(ep.name).catch(() => undefined);
        return finish('failed', status.to, `${reason}; the target had already switched, the service runs on ${status.to}`);
      }
      this.events.warn(`migration ${status.id}: could not clean up on ${status.to} (${describeError(err)}); its agent removes the leftovers when it restarts`);
    }
    if (!dumped) {
      // The process was never stopped (or CRIU resumed it when the dump failed).
      this.manager.endOutgoing(ep.name);
      rmSync(dir, { recursive: true, force: true });
      return finish('rolled_back', status.from, `${reason}; the service kept running on ${status.from}`);
    }
    try {
      const endpointDir = this.manager.dirOf(ep.name);
      await waitForShimExit(endpointDir, ep.shimPid, 3000);
      const restored = await restoreUnderShim({ dir: endpointDir, netns: ep.netns, imagesDir, pipeKeys: dumped.pipeKeys });
      removeCriuLockTables(ep.netns);
      this.manager.resumedLocally(ep.name, restored);
      rmSync(dir, { recursive: true, force: true });
      return finish('rolled_back', status.from, `${reason}; the service was restored on ${status.from} with its connections`);
    } catch (err) {
      this.events.error(`migration ${status.id}: restoring ${ep.name} on ${status.from} failed: ${describeError(err)}; images kept in ${imagesDir}`);
      return finish('failed', '', `${reason}; restoring on ${status.from} failed too (${describeError(err)}); images kept in ${imagesDir}`);
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
