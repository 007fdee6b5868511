/** The handover report and the live status of a migration, as TypeBox schemas (API output). */
import { Type, type Static } from '@sinclair/typebox';
import { HandoverCounts } from '../handover/schemas.js';

export const PHASES = ['prepare', 'dump', 'transfer', 'restore', 'switch', 'unlock', 'cleanup'] as const;
export type Phase = (typeof PHASES)[number];

export const MigrationResult = Type.Union([Type.Literal('success'), Type.Literal('rolled_back'), Type.Literal('failed')]);

export const HandoverReport = Type.Object({
  id: Type.String(),
  name: Type.String(),
  from: Type.String(),
  to: Type.String(),
  mode: Type.String(),
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
  started_at: Type.String(),
});

export const MigrationStatus = Type.Object({
  id: Type.String(),
  name: Type.String(),
  from: Type.String(),
  to: Type.String(),
  mode: Type.String(),
  state: Type.Union([Type.Literal('running'), MigrationResult]),
  phase: Type.String(),
  /** phases finished so far, in order, with their durations */
  completed: Type.Array(Type.Object({ phase: Type.String(), ms: Type.Number() })),
  report: Type.Optional(HandoverReport),
});

export type HandoverReport = Static<typeof HandoverReport>;
export type MigrationStatus = Static<typeof MigrationStatus>;
export type MigrationResult = Static<typeof MigrationResult>;
