/**
 * Every message the agent accepts or sends: control API bodies and the
 * agent-to-agent wire protocol. Validation, types and (later) the OpenAPI
 * document all come from these.
 */
import { OciSpec, Volume } from '../container/spec.js';
import { IMAGE_ID_PATTERN } from '../container/image-store.js';
import { Type, type Static } from '@sinclair/typebox';
import { IpAddress, NodeName } from '../config/schema.js';
import { ENDPOINT_NAME_PATTERN } from '../endpoint/naming.js';
import { HandoverMechanismSchema } from '../handover/schemas.js';
import '../config/formats.js';
import { EndpointPolicy } from '../policy/schema.js';

export const EndpointName = Type.String({ pattern: ENDPOINT_NAME_PATTERN, description: 'endpoint name: lowercase letters, digits and dashes (DNS label)' });

export const EndpointRecord = Type.Object(
  {
    name: EndpointName,
    ip: IpAddress,
    mac: Type.String({ format: 'mac' }),
    node: NodeName,
    generation: Type.Integer({ minimum: 1 }),
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Undefined()]),
    netns: Type.Union([Type.String(), Type.Undefined()]),
    state: Type.Union([Type.Literal('running'), Type.Literal('exited')]),
  },
  { additionalProperties: false },
);

export const NodeAnnouncement = Type.Object(
  {
    node: NodeName,
    address: IpAddress,
    seq: Type.Integer({ minimum: 0 }),
    endpoints: Type.Array(EndpointRecord, { maxItems: 100000 }),
    draining: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const AnnounceResponse = Type.Object(
  {
    self: NodeAnnouncement,
    peers: Type.Array(Type.Object({ node: NodeName, address: IpAddress }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

/** Run the endpoint as an OCI container (runc): from a root filesystem folder, or an OCI bundle, on the node. */
export const ContainerRequest = Type.Object(
  {
    rootfs: Type.Optional(Type.String({ minLength: 1, pattern: '^/', description: 'a root filesystem folder on the node, absolute' })),
    bundle: Type.Optional(Type.String({ minLength: 1, pattern: '^/', description: 'an OCI bundle folder on the node, absolute' })),
    volumes: Type.Array(Volume, { maxItems: 64, default: [] }),
  },
  { additionalProperties: false },
);
export type ContainerRequest = Static<typeof ContainerRequest>;

export const CreateEndpointBody = Type.Object(
  {
    name: EndpointName,
    node: Type.Optional(NodeName),
    ip: Type.Optional(IpAddress),
    command: Type.Array(Type.String({ minLength: 1 }), { maxItems: 4096, description: "program and its arguments (a container from a bundle: empty keeps the bundle's)" }),
    container: Type.Optional(ContainerRequest),
    policy: Type.Optional(EndpointPolicy),
  },
  { additionalProperties: false },
);

/** A policy for one endpoint; without one it gets back the agents' default. */
export const PolicyBody = Type.Object({ policy: Type.Optional(EndpointPolicy) }, { additionalProperties: false });
export type PolicyBody = Static<typeof PolicyBody>;

export const NameParams = Type.Object({ name: EndpointName }, { additionalProperties: false });

export const LogsQuery = Type.Object(
  { maxBytes: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'how many bytes from the end' })) },
  { additionalProperties: false },
);

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

export const DrainBody = Type.Object({ draining: Type.Boolean() }, { additionalProperties: false });
export const NodeParams = Type.Object({ node: NodeName }, { additionalProperties: false });
export type DrainBody = Static<typeof DrainBody>;
export type NodeParams = Static<typeof NodeParams>;

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

export type EndpointRecordWire = Static<typeof EndpointRecord>;
export type NodeAnnouncementWire = Static<typeof NodeAnnouncement>;
export type AnnounceResponseWire = Static<typeof AnnounceResponse>;
export type CreateEndpointBody = Static<typeof CreateEndpointBody>;
export type NodeStatus = Static<typeof NodeStatus>;
export type NameParams = Static<typeof NameParams>;
export type LogsQuery = Static<typeof LogsQuery>;

// ---- migrations ----

export const MigrationId = Type.String({ pattern: '^m-[a-z0-9]+-[0-9a-f]{6}$', description: 'migration id' });

export const MigrateBody = Type.Object(
  {
    endpoint: EndpointName,
    to: NodeName,
    mode: Type.Optional(Type.String({ minLength: 1, maxLength: 32, description: 'auto (default: chosen from memory size, underlay rate and what the node can do), stop-copy, streamed (memory goes to the target while it is dumped), post-copy (resumes on the target first, memory pulled after) or cold (the baseline: nothing prepared ahead)' })),
    handover: Type.Optional(HandoverMechanismSchema),
    presync: Type.Optional(Type.Boolean({ description: "a container's files: copy them while it runs and send only what changed in the freeze (default), or send them all in the freeze" })),
  },
  { additionalProperties: false },
);

export const MigrationParams = Type.Object({ id: MigrationId }, { additionalProperties: false });
export const TreeParams = Type.Object({ id: MigrationId, tree: Type.String({ pattern: '^(rootfs|volume-[0-9]{1,2})$' }) }, { additionalProperties: false });
export const ImageParams = Type.Object({ image: Type.String({ pattern: IMAGE_ID_PATTERN }) }, { additionalProperties: false });
export const MigrationQuery = Type.Object({ from: Type.Optional(NodeName) }, { additionalProperties: false });

export const PrepareBody = Type.Object(
  {
    id: MigrationId,
    mode: Type.Optional(Type.String({ maxLength: 32 })),
    handover: Type.Optional(HandoverMechanismSchema),
    name: EndpointName,
    ip: IpAddress,
    prefixLength: Type.Integer({ minimum: 0, maximum: 128 }),
    mac: Type.String({ format: 'mac' }),
    generation: Type.Integer({ minimum: 1 }),
    command: Type.Array(Type.String(), { minItems: 1, maxItems: 4096 }),
    createdAt: Type.String({ maxLength: 64 }),
    container: Type.Optional(Type.Object(
      {
        image: Type.String({ pattern: IMAGE_ID_PATTERN }),
        spec: OciSpec,
        volumes: Type.Array(Type.Object({ destination: Type.String({ pattern: '^/' }) }, { additionalProperties: false }), { maxItems: 64 }),
      },
      { additionalProperties: false, description: 'a container: its image (sent beforehand), base configuration and volumes' },
    )),
    policy: Type.Optional(EndpointPolicy),
  },
  { additionalProperties: false },
);

export const PreparedAnswer = Type.Object(
  {
    prepared: MigrationId,
    pageServerPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'streamed mode: where the target\'s page server listens, on its underlay address' })),
  },
  { additionalProperties: false },
);


export const RestoreBody = Type.Object(
  {
    pipeKeys: Type.Array(Type.String({ pattern: '^pipe:\\[[0-9]+\\]$' }), { maxItems: 2 }),
    connections: Type.Optional(Type.Integer({ minimum: 0, description: 'established TCP connections the dump carried' })),
    lazySource: Type.Optional(Type.Object(
      { address: IpAddress, port: Type.Integer({ minimum: 1, maximum: 65535 }) },
      { additionalProperties: false, description: "post-copy: the source's lazy page server, which the target's lazy-pages daemon pulls the memory from" },
    )),
  },
  { additionalProperties: false },
);

/** How a post-copy pull ended, in the target's words (its lazy-pages daemon's exit and page count). */
export const PullAnswer = Type.Object(
  {
    complete: Type.Boolean(),
    exitCode: Type.Union([Type.Integer(), Type.Null()]),
    copiedPages: Type.Integer({ minimum: 0 }),
    totalPages: Type.Integer({ minimum: 0 }),
    durationMs: Type.Number({ minimum: 0 }),
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const UnlockBody = Type.Object(
  { frozenMs: Type.Number({ minimum: 0, description: 'how long the service has been frozen when the unlock is asked for' }) },
  { additionalProperties: false },
);

export type UnlockBody = Static<typeof UnlockBody>;
export type MigrateBody = Static<typeof MigrateBody>;
export type MigrationParams = Static<typeof MigrationParams>;
export type MigrationQuery = Static<typeof MigrationQuery>;
export type PrepareBody = Static<typeof PrepareBody>;
export type RestoreBody = Static<typeof RestoreBody>;
export type TreeParams = Static<typeof TreeParams>;
export type ImageParams = Static<typeof ImageParams>;
