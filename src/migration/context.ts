/**
 * One migration on its way, source side: what it was asked (fixed at the
 * start), what its phases have produced so far (filled in as they run), and
 * what it needs of the node (the deps, shared by every migration here). The
 * phases (sequence.ts), the rollback (rollback.ts) and the report read and
 * write this one object; nothing else carries a migration's state.
 */
import { existsSync } from 'node:fs';
import type { DumpResult, LazyDump } from '../checkpoint/checkpointer.js';
import type { PageServerTls } from '../checkpoint/page-server-tls.js';
import type { LocationTable } from '../cluster/locations.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import type { EventBus } from '../events/bus.js';
import type { HandoverCounts, HandoverMechanism } from '../records/handover.js';
import type { HeldPackets, PacketHold } from '../sys/packet-hold.js';
import type { ContainerFilesMove } from './container-files.js';
import { writeJournal, type SourceJournal } from './journal.js';
import type { ModeStrategy } from './modes/index.js';
import { noPhases, type HandoverReport, type MigrationResult, type MigrationStatus, type ModeChoice, type PullReport } from '../records/migration-report.js';
import type { Prepared, TargetAgent } from './target-agent.js';

/** What the source knows of the underlay for planning a move, and how its page traffic goes. */
export interface UnderlayPlan {
  /** where the target reaches this node's lazy page servers (post-copy), which listen there only */
  address: string;
  /** as configured; the automatic mode assumes an edge link without it, and the pull goes unpaced */
  rateMbit?: number;
  /** of rateMbit, what a post-copy pull may use (config underlay.pullShare) */
  pullShare: number;
  /** page-server connections over TLS (the cluster's, from the config's tls); plain without */
  pageTls?: PageServerTls;
}

/** What every migration driven from this node needs of it. */
export interface SourceDeps {
  self: string;
  stateDir: string;
  manager: EndpointManager;
  table: LocationTable;
  target: TargetAgent;
  events: EventBus;
  underlay: UnderlayPlan;
}

/** A target made ready before the freeze: what the prepare phase produced. */
export interface PreparedTarget {
  prepared: Prepared;
  strategy: ModeStrategy;
  modeChoice: ModeChoice | undefined;
}

/** A predicted move's preparation, as the move that uses it takes it over (ahead.ts). */
export interface TakenAhead {
  files: ContainerFilesMove | undefined;
  ready: Promise<PreparedTarget>;
  /** when the preparation began */
  at: number;
}

export interface MoveContext {
  // ---- asked ----
  readonly status: MigrationStatus;
  readonly ep: StoredEndpoint;
  /** the target agent's peer address */
  readonly address: string;
  readonly handover: HandoverMechanism;
  /** a container's files: copied while it runs, only the changes in the freeze */
  readonly presync: boolean;
  readonly files: ContainerFilesMove | undefined;
  readonly ahead: TakenAhead | undefined;
  /** this migration's slot among the node's (frees it once the move is over, before the clients are observed) */
  readonly slot: { free: () => void; queuedMs?: number };
  /** the migration's folder, and the images in it */
  readonly dir: string;
  readonly imagesDir: string;
  /** what a restarted agent needs to finish or roll back this migration (recovery.ts) */
  readonly journal: SourceJournal;
  readonly startedAt: string;
  readonly phases: HandoverReport['phases'];

  // ---- produced by the phases, in order ----
  /** the mode, once known (an automatic one is chosen at prepare) */
  strategy: ModeStrategy | undefined;
  modeChoice: ModeChoice | undefined;
  prepared: Prepared;
  /** keeps what the lock drops from the freeze on (replaying handovers) */
  hold: PacketHold | undefined;
  /** this host's dump slot, held from just before the freeze until CRIU is done with the tree */
  releaseHostSlot: (() => void) | undefined;
  frozenAt: number;
  frozenMs: number;
  /** frozen so far when the unlock was asked for: the target measures the stall from there */
  frozenWhenAsked: number;
  dumped: DumpResult | undefined;
  /** post-copy: where the page server will listen, gated before the freeze */
  lazyServer: { address: string; port: number } | undefined;
  /** post-copy: the page server that still serves the memory */
  lazy: LazyDump | undefined;
  pacedMbit: number | undefined;
  /** what this node's lock kept, drained at the switch for the target */
  held: HeldPackets | undefined;
  /** the target took over: the one point of no return */
  switched: boolean;
  handoverCounts: HandoverCounts | undefined;
  pull: PullReport | undefined;
  clientStall: HandoverReport['client_stall'];
}

export function newContext(asked: Pick<MoveContext, 'status' | 'ep' | 'address' | 'handover' | 'presync' | 'files' | 'ahead' | 'slot' | 'dir' | 'imagesDir'>): MoveContext {
  const { status, ep } = asked;
  return {
    ...asked,
    journal: { id: status.id, name: status.name, to: status.to, toAddress: asked.address, mode: status.mode, handover: asked.handover, phase: 'prepare', root: { pid: ep.pid, startTime: ep.startTime } },
    startedAt: new Date().toISOString(),
    phases: noPhases(),
    strategy: undefined, modeChoice: undefined, prepared: {}, hold: undefined, releaseHostSlot: undefined,
    frozenAt: 0, frozenMs: 0, frozenWhenAsked: 0, dumped: undefined, lazyServer: undefined, lazy: undefined, pacedMbit: undefined, held: undefined,
    switched: false, handoverCounts: undefined, pull: undefined, clientStall: undefined,
  };
}

/** Records a change in the journal (atomically, and durably unless told otherwise: journal.ts), while the migration's folder exists. */
export function journal(c: MoveContext, change: Partial<SourceJournal>, durable = true): void {
  Object.assign(c.journal, change);
  if (existsSync(c.dir)) writeJournal(c.dir, c.journal, durable);
}

/** The migration's end: its report, in its status and on the bus. `handover`: a rollback's own handover. */
export function finish(c: MoveContext, d: SourceDeps, result: MigrationResult, runningOn: string, reason?: string, handover?: HandoverCounts): HandoverReport {
  c.handoverCounts ??= handover;
  const { status, dumped } = c;
  const report: HandoverReport = {
    id: status.id, name: status.name, from: status.from, to: status.to, mode: status.mode, result,
    ...(reason ? { reason } : {}), running_on: runningOn,
    frozen_ms: round(c.frozenMs), phases: c.phases, image_bytes: dumped?.imageBytes ?? 0, tcp_connections: dumped?.tcpConnections ?? 0,
    ...(dumped ? { tcp_in_flight: inFlightOf(dumped) } : {}),
    ...(c.handoverCounts ? { handover: c.handoverCounts } : {}), ...(c.clientStall ? { client_stall: c.clientStall } : {}),
    ...(c.pull ? { pull: c.pull } : {}), ...(c.modeChoice ? { mode_choice: c.modeChoice } : {}),
    ...(c.files ? { files: c.files.report() } : {}),
    ...(c.slot.queuedMs !== undefined ? { queued_ms: c.slot.queuedMs } : {}),
    ...(c.ahead ? { prepared_ahead_ms: round(performance.now() - c.ahead.at) } : {}), started_at: c.startedAt,
  };
  status.state = result;
  status.report = report;
  d.events.emit('migration.finished', { report });
  return report;
}

function inFlightOf(d: DumpResult): NonNullable<HandoverReport['tcp_in_flight']> {
  const f = d.tcpInFlight;
  return { unacked_to_client: f.unackedToPeer, unacked_bytes: f.unackedBytes, unread_from_client: f.unreadFromPeer, timestamps: f.timestamps, sack: f.sack };
}

export function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
