/**
 * roam's Kubernetes resources, as TypeBox schemas: the agent validates what
 * it reads from the API server with them, and the CRDs' openAPIV3Schema is
 * generated from them (crds.ts), so the two cannot drift apart.
 *  - Migration: a request to move an endpoint (spec), and how it went (status);
 *  - RoamEndpoint: where an endpoint lives, with its stable IP and MAC.
 * Both are cluster-scoped: the overlay and its endpoints span the cluster.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { EndpointName, IpAddress, NodeName } from '../records/names.js';
import { HandoverMechanismSchema } from '../records/handover.js';
import { HandoverReport, MIGRATION_MODES } from '../records/migration-report.js';

export const GROUP = 'roam.dev';
export const API_VERSION = 'v1alpha1';

/** Node annotations each agent publishes on its own Node (node-discovery.ts). */
export const ANNOTATIONS = {
  /** the node's underlay address: its VTEP and its agent's peer endpoint */
  vtep: `${GROUP}/vtep`,
  /** the overlay range this node allocates endpoint addresses from */
  range: `${GROUP}/range`,
  /** the roam version of the agent that wrote them */
  version: `${GROUP}/agent-version`,
} as const;

/** Pod annotations: how a pod opts in (pod-endpoints.ts). */
export const POD_ANNOTATIONS = {
  /** "true": give the pod an overlay interface with a mobile IP */
  mobileIp: `${GROUP}/mobile-ip`,
  /** the Service whose EndpointSlice names that IP (default: the pod's name) */
  service: `${GROUP}/service`,
} as const;

/** The managed-by label value of the EndpointSlices roam writes (the EndpointSlice controller leaves those alone). */
export const SLICE_MANAGER = `roam-agent.${GROUP}`;

export const MigrationSpec = Type.Object(
  {
    endpoint: EndpointName,
    targetNode: NodeName,
    mode: Type.Optional(Type.Union(MIGRATION_MODES.map((m) => Type.Literal(m)), { description: 'how to move it (default auto: chosen from its memory, the underlay rate and what the node can do)' })),
    handover: Type.Optional(HandoverMechanismSchema),
    presync: Type.Optional(Type.Boolean({ description: "a container's files: copied while it runs and only the changes sent in the freeze (default true)" })),
  },
  { additionalProperties: false },
);

/** Where a Migration is: waiting for its endpoint's node, each phase of the move, and how it ended. */
export const MIGRATION_PHASES = ['Pending', 'Queued', 'Prepare', 'Dump', 'Transfer', 'Restore', 'Switch', 'Unlock', 'Cleanup', 'Pull', 'Succeeded', 'RolledBack', 'Failed'] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];
export const TERMINAL_PHASES: readonly MigrationPhase[] = ['Succeeded', 'RolledBack', 'Failed'];

/** A Kubernetes condition, as metav1.Condition has it. */
export const Condition = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 316 }),
    status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')]),
    reason: Type.String({ minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' }),
    message: Type.String({ maxLength: 32768 }),
    lastTransitionTime: Type.String({ format: 'date-time' }),
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type Condition = Static<typeof Condition>;

export const MigrationResourceStatus = Type.Object(
  {
    phase: Type.Union(MIGRATION_PHASES.map((p) => Type.Literal(p))),
    /** the node that runs it: the endpoint's node when it was picked up */
    sourceNode: Type.Optional(NodeName),
    /** the agents' id for it (roam migrate's), for their logs and metrics */
    migrationId: Type.Optional(Type.String({ maxLength: 64 })),
    /** the spec generation this status is about */
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
    report: Type.Optional(HandoverReport),
    conditions: Type.Array(Condition, { maxItems: 16, default: [] }),
  },
  { additionalProperties: false },
);

export const RoamEndpointSpec = Type.Object(
  {
    ip: IpAddress,
    mac: Type.String({ format: 'mac', pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$' }),
  },
  { additionalProperties: false, description: "the endpoint's identity on the overlay, the same wherever it runs" },
);

export const RoamEndpointStatus = Type.Object(
  {
    node: NodeName,
    /** grows by one every time the endpoint moves or is re-created */
    generation: Type.Integer({ minimum: 1 }),
    state: Type.Union([Type.Literal('running'), Type.Literal('exited')]),
    container: Type.Boolean({ description: 'an OCI container run by runc, rather than a process' }),
    pod: Type.Optional(Type.Object(
      { namespace: Type.String({ minLength: 1, maxLength: 63 }), name: Type.String({ minLength: 1, maxLength: 253 }) },
      { additionalProperties: false, description: 'the pod that has this address on its roam0 interface' },
    )),
  },
  { additionalProperties: false },
);

export interface MigrationResource {
  apiVersion: string;
  kind: 'Migration';
  metadata: V1ObjectMeta;
  spec: Static<typeof MigrationSpec>;
  status?: Static<typeof MigrationResourceStatus>;
}

export interface RoamEndpointResource {
  apiVersion: string;
  kind: 'RoamEndpoint';
  metadata: V1ObjectMeta;
  spec: Static<typeof RoamEndpointSpec>;
  status?: Static<typeof RoamEndpointStatus>;
}

export type MigrationSpec = Static<typeof MigrationSpec>;
export type MigrationResourceStatus = Static<typeof MigrationResourceStatus>;
export type RoamEndpointSpec = Static<typeof RoamEndpointSpec>;
export type RoamEndpointStatus = Static<typeof RoamEndpointStatus>;

export interface CustomResourceKind {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  spec: TSchema;
  status: TSchema;
  /** columns kubectl get shows */
  columns: { name: string; type: 'string' | 'integer' | 'number' | 'date'; jsonPath: string; description: string }[];
}

export const MIGRATION_KIND: CustomResourceKind = {
  kind: 'Migration',
  plural: 'migrations',
  singular: 'migration',
  shortNames: ['rmig'],
  spec: MigrationSpec,
  status: MigrationResourceStatus,
  columns: [
    { name: 'Endpoint', type: 'string', jsonPath: '.spec.endpoint', description: 'the endpoint to move' },
    { name: 'From', type: 'string', jsonPath: '.status.sourceNode', description: 'where it ran' },
    { name: 'To', type: 'string', jsonPath: '.spec.targetNode', description: 'where it goes' },
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'where the migration is' },
    { name: 'Frozen-ms', type: 'number', jsonPath: '.status.report.frozen_ms', description: 'how long the service was frozen' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'when it was asked for' },
  ],
};

export const ENDPOINT_KIND: CustomResourceKind = {
  kind: 'RoamEndpoint',
  plural: 'roamendpoints',
  singular: 'roamendpoint',
  shortNames: ['rep'],
  spec: RoamEndpointSpec,
  status: RoamEndpointStatus,
  columns: [
    { name: 'IP', type: 'string', jsonPath: '.spec.ip', description: 'its overlay address, the same on every node' },
    { name: 'MAC', type: 'string', jsonPath: '.spec.mac', description: 'its MAC, the same on every node' },
    { name: 'Node', type: 'string', jsonPath: '.status.node', description: 'where it runs now' },
    { name: 'Generation', type: 'integer', jsonPath: '.status.generation', description: 'grows with every move' },
    { name: 'State', type: 'string', jsonPath: '.status.state', description: 'running or exited' },
  ],
};

export const CUSTOM_KINDS = [MIGRATION_KIND, ENDPOINT_KIND] as const;
