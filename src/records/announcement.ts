/** A node's announcement of its own endpoints (cluster/locations.ts merges them), and a peer's answer to one. */
import { Type, type Static } from '@sinclair/typebox';
import { EndpointRecord } from './endpoint.js';
import { IpAddress, NodeName } from './names.js';

export const NodeAnnouncement = Type.Object(
  {
    node: NodeName,
    /** the node's underlay address: its VTEP and its agent's peer address */
    address: IpAddress,
    seq: Type.Integer({ minimum: 0 }),
    endpoints: Type.Array(EndpointRecord, { maxItems: 100000 }),
    /** marked for maintenance: its endpoints leave, and no policy sends one there (absent: not draining) */
    draining: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type NodeAnnouncement = Static<typeof NodeAnnouncement>;

/** The answer to an announcement: the peer's own, and the peers it knows. */
export const AnnounceResponse = Type.Object(
  {
    self: NodeAnnouncement,
    peers: Type.Array(Type.Object({ node: NodeName, address: IpAddress }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type AnnounceResponse = Static<typeof AnnounceResponse>;
