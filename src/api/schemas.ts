/**
 * Messages of the control API that are not shared records: those
 * (endpoints, announcements, endpoint requests, decisions, reports) are in
 * records/. Validation, types and the OpenAPI document all come from these.
 */
import { Type, type Static } from '@sinclair/typebox';
import { IpAddress, NodeName } from '../records/names.js';

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }),
});

export const NodeStatus = Type.Object({
  node: NodeName,
  address: IpAddress,
  reachable: Type.Boolean(),
  endpoints: Type.Integer(),
  lastHeardMs: Type.Union([Type.Number(), Type.Null()]),
  draining: Type.Boolean(),
});
export type NodeStatus = Static<typeof NodeStatus>;

export const DrainBody = Type.Object({ draining: Type.Boolean() }, { additionalProperties: false });
export const NodeParams = Type.Object({ node: NodeName }, { additionalProperties: false });
export type DrainBody = Static<typeof DrainBody>;
export type NodeParams = Static<typeof NodeParams>;

// ---- migrations (the bodies shared with the peer protocol are in peer/schemas.ts) ----

export const MigrationQuery = Type.Object({ from: Type.Optional(NodeName) }, { additionalProperties: false });
export type MigrationQuery = Static<typeof MigrationQuery>;
