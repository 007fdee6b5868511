/**
 * A policy's decision about an endpoint (policy/engine.ts makes them): as the
 * agent keeps and emits it, and as the control API and the peers carry it.
 */
import { Type, type Static } from '@sinclair/typebox';
import { EndpointName, NodeName } from './names.js';
import type { PolicyKind } from './policy.js';

export type DecisionOutcome = 'moved' | 'prepared' | 'withdrawn' | 'declined';

/** Why, in one word (a metric label), with the sentence beside it. */
export type DecisionCode =
  | 'client-moved' | 'latency-above-target' | 'node-draining' | 'predicted' | 'prediction-faded'
  | 'dwell' | 'policy-keeps' | 'no-better-node' | 'target-draining' | 'target-unreachable' | 'no-node' | 'retry-wait';

export interface Decision {
  at: number;
  endpoint: string;
  policy: PolicyKind;
  outcome: DecisionOutcome;
  to?: string;
  code: DecisionCode;
  reason: string;
  /** a move: the migration it started */
  migration?: string;
}

/** A policy's decision, as the control API gives it. */
export const DecisionWire = Type.Object({
  at: Type.String({ description: 'ISO time' }),
  node: NodeName,
  endpoint: EndpointName,
  policy: Type.String(),
  outcome: Type.String({ description: 'moved, prepared, withdrawn or declined' }),
  to: Type.Optional(NodeName),
  code: Type.String({ description: 'why, in one word' }),
  reason: Type.String(),
  migration: Type.Optional(Type.String({ description: 'a move: the migration it started' })),
}, { additionalProperties: false });
export type DecisionWire = Static<typeof DecisionWire>;
export const DecisionList = Type.Array(DecisionWire, { maxItems: 100000 });
