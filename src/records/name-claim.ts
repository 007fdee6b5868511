/** A node's claim of an endpoint name before it creates the endpoint, and a peer's answer (cluster/name-claims.ts). */
import { Type, type Static } from '@sinclair/typebox';
import { EndpointName, NodeName } from './names.js';

export const NameClaimBody = Type.Object({ name: EndpointName, node: NodeName }, { additionalProperties: false });
export type NameClaimBody = Static<typeof NameClaimBody>;

export const NameClaimAnswer = Type.Object(
  {
    granted: Type.Boolean(),
    /** who has the name, when not granted */
    holder: Type.Optional(NodeName),
    /** true: an endpoint of that name runs on the holder; false: the holder is creating one */
    exists: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type NameClaimAnswer = Static<typeof NameClaimAnswer>;
