/**
 * What each phase of a migration does at the source, over the migration's
 * context. Their order, and how a failure in each is undone, is in
 * sequence.ts; where a mode differs, the phase asks the mode (modes/).
 */
import { rmSync } from 'node:fs';
import { dumpSlot } from '../checkpoint/dump-slot.js';
import { describeError, RoamError } from '../errors/roam-error.js';
import { replays } from '../handover/deliver.js';
import { drainWhatWasKept, holdWhatTheLockDrops } from '../handover/hold.js';
import { gatePort } from '../sys/port-gate.js';
import { freePort } from '../sys/ports.js';
import { serializeHeld } from '../sys/packet-hold.js';
import { checkpointerFor } from './checkpointer-for.js';
import { journal, round, type MoveContext, type SourceDeps } from './context.js';
import { prepareTarget, type ModeChooser } from './prepare-target.js';
import { followPull, paceThePull } from './pull.js';
import { reportPageServerRefusal } from './page-server-refusal.js';

/** What the phases need of the node beyond the deps every migration shares. */
export type PhaseDeps = SourceDeps & { chooser: ModeChooser; withdrawn: (name: string) => Promise<void> };

const warnOf = (c: MoveContext, d: PhaseDeps) => (m: string) => d.events.warn(`migration ${c.status.id}: ${m}`);

/** The target made ready (or what is left of a preparation made ahead, waited for). */
export async function prepare(c: MoveContext, d: PhaseDeps): Promise<void> {
  const t = await (c.ahead?.ready ?? prepareTarget(d, {
    id: c.status.id, mode: c.status.mode, handover: c.handover, ep: c.ep, address: c.address, files: c.files, presync: c.presync,
  }));
  c.strategy = t.strategy;
  c.modeChoice = t.modeChoice;
  c.prepared = t.prepared;
  c.status.mode = t.strategy.name;
}

/**
 * Right before the freeze, and not counted in it: the packet hold binds (from
 * the lock on, what the peers send is kept, not lost), and this host's dump
 * slot is waited for (another dump on this host is not this one's frozen time).
 */
export async function freeze(c: MoveContext, d: PhaseDeps): Promise<void> {
  if (replays(c.handover)) c.hold = await holdWhatTheLockDrops(c.ep.netns, warnOf(c, d));
  // Post-copy: where the memory will be served, recorded for a restart, and gated so that only the target
  // (and this node) reach it (sys/port-gate.ts): all before the freeze, none of it in the frozen window.
  if (c.strategy?.servesMemory) {
    const lazyServer = { address: d.underlay.address, port: await freePort(d.underlay.address) };
    journal(c, { lazyServer });
    gatePort(lazyServer.port, [c.address, lazyServer.address]);
    c.lazyServer = lazyServer;
  }
  c.releaseHostSlot = await dumpSlot();
  c.frozenAt = performance.now();
}

/** Freeze and dump, the memory leaving the mode's way; the tree is gone (or stopped for a pull) once it succeeds. */
export async function dump(c: MoveContext, d: PhaseDeps): Promise<void> {
  const strategy = modeOf(c);
  const dumped = await strategy.dump({
    checkpointer: checkpointerFor(d.manager, c.ep),
    request: {
      netns: c.ep.netns, imagesDir: c.imagesDir, slot: c.releaseHostSlot!,
      ...(d.underlay.pageTls ? { tls: d.underlay.pageTls } : {}),
      onStarted: (s) => journal(c, { criu: s.dumper, dump: { pipeKeys: s.pipeKeys, tcpConnections: s.tcpConnections } }),
    },
    prepared: c.prepared,
    targetAddress: c.address,
    lazyServer: () => {
      if (!c.lazyServer) throw new RoamError('MIGRATION_FAILED', `migration ${c.status.id}: no lazy page server was set up before the freeze`);
      return { ...c.lazyServer, gated: true, onRefusal: (r) => reportPageServerRefusal(d.events, `migration ${c.status.id}: the lazy page server`, r) };
    },
  });
  c.dumped = dumped.result;
  c.lazy = dumped.lazy;
  if (c.lazy) c.pacedMbit = paceThePull(d, c.status, c.lazy);
}

/** The images to the target (a container's: with what its files became since the proactive copy). */
export async function transfer(c: MoveContext, d: PhaseDeps): Promise<void> {
  if (c.files) await c.files.writeFrozenDelta(c.imagesDir);
  await d.target.sendImages(c.address, c.status.id, c.imagesDir);
}

export async function restore(c: MoveContext, d: PhaseDeps): Promise<void> {
  const dumped = c.dumped!;
  const lazySource = c.lazy ? { address: c.lazy.address, port: c.lazy.port } : undefined;
  await d.target.restore(c.address, c.status.id, { pipeKeys: dumped.pipeKeys, connections: dumped.tcpConnections, ...(lazySource ? { lazySource } : {}) });
}

/** The point of no return: the target adopts and announces the endpoint; what this node's lock kept is drained for it. */
export async function switchOver(c: MoveContext, d: PhaseDeps): Promise<void> {
  await d.target.switchOver(c.address, c.status.id);
  c.switched = true;
  // Should this agent die from here on, its next start finishes the migration (post-copy: CRIU serves on without it).
  journal(c, { switched: true });
  // Peers now send to the target, whose lock keeps what arrives; what this lock kept goes there.
  c.held = await drainWhatWasKept(c.hold, warnOf(c, d));
  c.hold?.close();
  c.hold = undefined;
}

/** What this lock kept goes to the target, which delivers it, kicks the connections, lifts its lock and continues the tree. */
export async function unlock(c: MoveContext, d: PhaseDeps): Promise<void> {
  if (c.held) await d.target.sendHeld(c.address, c.status.id, serializeHeld(c.held));
  c.frozenWhenAsked = performance.now() - c.frozenAt;
  c.handoverCounts = await d.target.unlock(c.address, c.status.id, c.frozenWhenAsked);
  c.frozenMs = performance.now() - c.frozenAt;
}

/**
 * Outside the frozen window, once the clients are back on the target: the
 * endpoint's traces here go (post-copy: all but the stopped tree, whose
 * memory is still being pulled).
 */
export async function cleanup(c: MoveContext, d: PhaseDeps): Promise<void> {
  await d.manager.release(c.ep.name, { keepProcess: c.lazy !== undefined });
  if (!c.lazy) rmSync(c.dir, { recursive: true, force: true });
}

/** Post-copy: the target pulls the memory; the stopped tree here goes once it has every page. */
export async function pull(c: MoveContext, d: PhaseDeps): Promise<void> {
  c.pull = await followPull(d, c.status, c.address, c.lazy!, c.dumped!.lazyBytes, c.pacedMbit);
  rmSync(c.dir, { recursive: true, force: true });
}

/**
 * Nothing of the migration is left here: the target may forget that it took
 * it over (it kept that durably, for a source that restarts and asks). Best
 * effort: a target that does not hear it forgets on its own, much later.
 */
export async function settle(c: MoveContext, d: PhaseDeps): Promise<void> {
  await d.target.settled(c.address, c.status.id).catch((err: unknown) => warnOf(c, d)(`${c.status.to} not told the migration is settled: ${describeError(err)}`));
}

/** What the clients felt, measured by the target from the restored sockets (ends once every active one resumed). */
export async function observe(c: MoveContext, d: PhaseDeps): Promise<void> {
  c.status.phase = 'observe';
  try {
    const m = await d.target.clientStall(c.address, c.status.id);
    const stalls = m.resumedAfterMs.map((r) => c.frozenWhenAsked + r).sort((a, b) => a - b);
    const at = (q: number) => (stalls.length === 0 ? 0 : round(stalls[Math.min(stalls.length - 1, Math.ceil(q * stalls.length) - 1)]!));
    c.clientStall = { connections: stalls.length, idle: m.idle, p50_ms: at(0.5), p95_ms: at(0.95), max_ms: at(1) };
  } catch (err) {
    d.events.warn(`migration ${c.status.id}: no client stall measurement from ${c.status.to}: ${describeError(err)}`);
  }
}

function modeOf(c: MoveContext) {
  if (!c.strategy) throw new Error(`migration ${c.status.id}: no mode before the prepare phase`);
  return c.strategy;
}
