/** Handover mechanisms and what a handover reports, as TypeBox schemas: the wire between agents and the handover report. */
import { Type, type Static } from '@sinclair/typebox';

export const HANDOVER_MECHANISMS = ['full', 'replay', 'kick', 'off'] as const;
export type HandoverMechanism = (typeof HANDOVER_MECHANISMS)[number];

export const HandoverMechanismSchema = Type.Union(HANDOVER_MECHANISMS.map((m) => Type.Literal(m)), {
  description: 'full (default): replay what the locks kept and kick every connection; replay or kick alone; off: plain retransmission',
});

const Count = Type.Integer({ minimum: 0 });

export const HandoverCounts = Type.Object({
  mechanism: HandoverMechanismSchema,
  /** packets the locks kept (source and target) */
  packets_held: Count,
  packets_replayed: Count,
  /** kept but not delivered: not the endpoint's, not exact, or refused by the kernel */
  packets_refused: Count,
  /** dropped without being kept: past the byte budget, or lost on the way to the keeper */
  packets_not_held: Count,
  connections_replayed: Count,
  connections_kicked: Count,
  /** connections left to plain retransmission: their state could not be reached */
  connections_fallback: Count,
  /** time spent delivering held packets and kicking, inside the frozen window */
  replay_ms: Type.Number({ minimum: 0 }),
  kick_ms: Type.Number({ minimum: 0 }),
  /** why something fell back, if it did */
  notes: Type.Array(Type.String({ maxLength: 500 }), { maxItems: 20 }),
});
export type HandoverCounts = Static<typeof HandoverCounts>;

export const ResumeMeasurement = Type.Object({
  /** per active connection: ms from the unlock request (the handover included) to the first data from its peer after the lock went */
  resumedAfterMs: Type.Array(Type.Number({ minimum: 0 })),
  /** connections whose peer sent nothing within the window */
  idle: Count,
});
export type ResumeMeasurement = Static<typeof ResumeMeasurement>;
