/** The handover report and the live status of a migration (its modes, phases, pull and mode choice), as TypeBox schemas: API output, events, the Kubernetes status. */
import { Type, type Static } from '@sinclair/typebox';
import { HandoverCounts } from './handover.js';

/**
 * The ways memory can move (src/migration/modes/ has one file for each, which
 * says what it does); a migration asks for one of them or for 'auto'.
 */
export const MOVE_MODES = ['stop-copy', 'streamed', 'post-copy', 'cold'] as const;
export type MoveMode = (typeof MOVE_MODES)[number];
export const MIGRATION_MODES = ['auto', ...MOVE_MODES] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];
export const MoveModeSchema = Type.Union(MOVE_MODES.map((m) => Type.Literal(m)));
export const MigrationModeSchema = Type.Union(MIGRATION_MODES.map((m) => Type.Literal(m)), {
  description: 'auto (default: chosen from memory size, underlay rate and what the node can do), stop-copy, streamed (memory goes to the target while it is dumped), post-copy (resumes on the target first, memory pulled after) or cold (the baseline: nothing prepared ahead)',
});

export const PHASES = ['prepare', 'dump', 'transfer', 'restore', 'switch', 'unlock', 'cleanup', 'pull'] as const;
export type Phase = (typeof PHASES)[number];

export const MigrationResult = Type.Union([Type.Literal('success'), Type.Literal('rolled_back'), Type.Literal('failed')]);

export const PullReport = Type.Object({
  /** complete: the target has every page; incomplete: it does not, and the service is lost (see reason) */
  result: Type.Union([Type.Literal('complete'), Type.Literal('incomplete')]),
  /** memory the dump kept back for the pull */
  lazy_bytes: Type.Integer({ minimum: 0 }),
  /** what the target acknowledged receiving (from the page server's TCP state) */
  pulled_bytes: Type.Integer({ minimum: 0 }),
  /** pages fetched, of pages_total kept back; ranges the service freed meanwhile are dropped, not fetched (CRIU's own account, known once the pull ends cleanly) */
  pages_copied: Type.Integer({ minimum: 0 }),
  pages_total: Type.Integer({ minimum: 0 }),
  duration_ms: Type.Number(),
  /** the rate the pull was held to (a share of the configured underlay rate); absent: unpaced */
  paced_mbit: Type.Optional(Type.Number()),
  reason: Type.Optional(Type.String()),
});

export const ModeChoice = Type.Object({
  chosen: MoveModeSchema,
  /** the endpoint's resident memory when it was chosen */
  memory_bytes: Type.Integer({ minimum: 0 }),
  underlay_mbit: Type.Number(),
  /** what the node can run, probed (CRIU's feature check, host limits) */
  post_copy_available: Type.Boolean(),
  pre_copy_available: Type.Boolean(),
  /** estimated time to move the memory at the underlay rate */
  memory_transfer_ms: Type.Number(),
  reasons: Type.Array(Type.String()),
});

export const HandoverReport = Type.Object({
  id: Type.String(),
  name: Type.String(),
  from: Type.String(),
  to: Type.String(),
  /** the mode it ran in ('auto' until the choice is made) */
  mode: MigrationModeSchema,
  result: MigrationResult,
  /** why it did not succeed, and where the service runs now */
  reason: Type.Optional(Type.String()),
  /** node the service runs on after the migration ('' if nowhere) */
  running_on: Type.String(),
  frozen_ms: Type.Number(),
  phases: Type.Object({
    prepare_ms: Type.Number(),
    dump_ms: Type.Number(),
    transfer_ms: Type.Number(),
    restore_ms: Type.Number(),
    switch_ms: Type.Number(),
    unlock_ms: Type.Number(),
    /** post-copy: from the unlock until the target had every page (the service runs meanwhile) */
    pull_ms: Type.Number(),
    cleanup_ms: Type.Number(),
  }),
  image_bytes: Type.Integer(),
  tcp_connections: Type.Integer(),
  /** what the dumped connections had in flight at the freeze (from CRIU's images) */
  tcp_in_flight: Type.Optional(Type.Object({
    /** connections with data sent to the client and not yet acknowledged */
    unacked_to_client: Type.Integer({ minimum: 0 }),
    unacked_bytes: Type.Integer({ minimum: 0 }),
    /** connections with data from the client the service had not read yet */
    unread_from_client: Type.Integer({ minimum: 0 }),
    timestamps: Type.Integer({ minimum: 0 }),
    sack: Type.Integer({ minimum: 0 }),
  })),
  /** what the handover delivered and kicked when the service came back (absent if it never did) */
  handover: Type.Optional(HandoverCounts),
  /**
   * What the clients felt, per connection that had data to send: the frozen
   * window plus the time until its next data reached the restored socket.
   */
  client_stall: Type.Optional(Type.Object({
    connections: Type.Integer({ minimum: 0 }),
    idle: Type.Integer({ minimum: 0 }),
    p50_ms: Type.Number(),
    p95_ms: Type.Number(),
    max_ms: Type.Number(),
  })),
  /** post-copy: the memory the target pulled after the service had resumed there */
  pull: Type.Optional(PullReport),
  /** the automatic mode: what it chose and why */
  mode_choice: Type.Optional(ModeChoice),
  /** a container: its files (root filesystem changes, volumes), sent while it ran and in the freeze */
  files: Type.Optional(Type.Object({
    /** copied while the service ran (proactive sync) */
    presync_bytes: Type.Integer({ minimum: 0 }),
    /** changed since, or everything without proactive sync: sent in the frozen window */
    frozen_bytes: Type.Integer({ minimum: 0 }),
    /** entries sent in the frozen window (new or changed), and removed */
    frozen_changed: Type.Integer({ minimum: 0 }),
    frozen_deleted: Type.Integer({ minimum: 0 }),
  })),
  /** the target was prepared ahead of the move (a policy predicted it): this long before the move began */
  prepared_ahead_ms: Type.Optional(Type.Number({ minimum: 0 })),
  /** how long it waited for a slot behind this node's other migrations (migration.maxConcurrent) */
  queued_ms: Type.Optional(Type.Number()),
  started_at: Type.String(),
});

export const MigrationStatus = Type.Object({
  id: Type.String(),
  name: Type.String(),
  from: Type.String(),
  to: Type.String(),
  mode: MigrationModeSchema,
  state: Type.Union([Type.Literal('running'), MigrationResult]),
  phase: Type.String(),
  /** phases finished so far, in order, with their durations */
  completed: Type.Array(Type.Object({ phase: Type.String(), ms: Type.Number() })),
  /** post-copy, while the target pulls the memory: how far it got */
  pull: Type.Optional(Type.Object({ lazy_bytes: Type.Integer({ minimum: 0 }), pulled_bytes: Type.Integer({ minimum: 0 }) })),
  report: Type.Optional(HandoverReport),
});

export type HandoverReport = Static<typeof HandoverReport>;

/** Every phase at 0 ms: what a report starts from (and stays at for a migration recovered after a restart). */
export function noPhases(): HandoverReport['phases'] {
  return { prepare_ms: 0, dump_ms: 0, transfer_ms: 0, restore_ms: 0, switch_ms: 0, unlock_ms: 0, pull_ms: 0, cleanup_ms: 0 };
}
export type MigrationStatus = Static<typeof MigrationStatus>;
export type MigrationResult = Static<typeof MigrationResult>;
export type PullReport = Static<typeof PullReport>;
export type ModeChoice = Static<typeof ModeChoice>;
