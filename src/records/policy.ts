/**
 * What an endpoint asks of the agents that host it: when to move on its own.
 * One schema for the config's default, the control API and the wire (a
 * policy travels with its endpoint).
 */
import { Type, type Static } from '@sinclair/typebox';

export const FollowClientPolicy = Type.Object(
  {
    share: Type.Number({
      exclusiveMinimum: 0.5, maximum: 1, default: 0.7,
      description: "share of the endpoint's incoming bytes that must enter the overlay at one other node for it to move there (above one half, so two nodes can never both win)",
    }),
    prepareShare: Type.Number({
      exclusiveMinimum: 0, maximum: 1, default: 0.55,
      description: 'share at which that node is predicted and prepared, before the move is decided',
    }),
    sustainMs: Type.Integer({ minimum: 0, maximum: 3600000, default: 3000, description: 'how long the share must stay at or above `share` without a break' }),
    windowMs: Type.Integer({ minimum: 1000, maximum: 300000, default: 5000, description: 'the traffic the shares are computed over: this much of the recent past' }),
    minBytesPerSecond: Type.Integer({ minimum: 0, default: 1000, description: 'below this incoming rate the traffic is too thin to say where the clients are' }),
  },
  { additionalProperties: false, description: 'follow the client: move to the node where most of the traffic enters' },
);

export const LatencyPolicy = Type.Object(
  {
    targetMs: Type.Number({ exclusiveMinimum: 0, maximum: 60000, description: "the clients' round-trip time (median smoothed RTT of the endpoint's TCP connections) to stay under" }),
    sustainMs: Type.Integer({ minimum: 0, maximum: 3600000, default: 5000, description: 'how long it must stay above the target before a move' }),
  },
  { additionalProperties: false, description: 'move when the clients\' latency stays above a target and a node nearer to them exists' },
);

export const EndpointPolicy = Type.Object(
  {
    followClient: Type.Optional(FollowClientPolicy),
    latency: Type.Optional(LatencyPolicy),
    drain: Type.Boolean({ default: true, description: 'move off a node marked for maintenance (drained, or cordoned on Kubernetes)' }),
    minDwellMs: Type.Integer({
      minimum: 0, maximum: 86400000, default: 30000,
      description: 'after arriving on a node, stay at least this long before follow-client or latency move it again (a drain does not wait)',
    }),
    prepare: Type.Boolean({ default: true, description: 'prepare a predicted target ahead of the move (its namespace, the connection to its agent, a container\'s files)' }),
  },
  { additionalProperties: false },
);

export type EndpointPolicy = Static<typeof EndpointPolicy>;
export type FollowClientPolicy = Static<typeof FollowClientPolicy>;
export type LatencyPolicy = Static<typeof LatencyPolicy>;

export const POLICY_KINDS = ['follow-client', 'latency', 'drain'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];
