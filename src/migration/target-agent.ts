/**
 * The one door from a migration's source to its target agent: the port the
 * sequence drives (src/peer/ carries it over the wire; tests use fakes). The
 * messages it takes and gives are TypeBox schemas, so the wire validates
 * exactly the types the code uses: there is no second, hand-written shape.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import '../records/formats.js';
import { EndpointName, IpAddress } from '../records/names.js';
import { OciSpec } from '../container/spec.js';
import { IMAGE_ID_PATTERN } from '../container/image-store.js';
import { HandoverMechanismSchema, type HandoverCounts, type ResumeMeasurement } from '../records/handover.js';
import { EndpointPolicy } from '../records/policy.js';
import type { PullOutcome } from '../checkpoint/checkpointer.js';
import { MoveModeSchema } from '../records/migration-report.js';

export const MigrationId = Type.String({ pattern: '^m-[a-z0-9]+-[0-9a-f]{6}$', description: 'migration id' });

export function newMigrationId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** What the target builds the arrival from: the endpoint's identity, and a container's image, configuration and volumes. */
export const PrepareRequest = Type.Object(
  {
    id: MigrationId,
    mode: MoveModeSchema,
    handover: HandoverMechanismSchema,
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
    /** the endpoint's own policy, which moves with it */
    policy: Type.Optional(EndpointPolicy),
  },
  { additionalProperties: false },
);
export type PrepareRequest = Static<typeof PrepareRequest>;

/** What the target tells the source once it is prepared. */
export const Prepared = Type.Object(
  {
    pageServerPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "streamed mode: where the target's page server listens, on its underlay address" })),
  },
  { additionalProperties: false },
);
export type Prepared = Static<typeof Prepared>;

/** A post-copy source's lazy page server, which the target's lazy-pages daemon pulls the memory from. */
export const LazySource = Type.Object(
  { address: IpAddress, port: Type.Integer({ minimum: 1, maximum: 65535 }) },
  { additionalProperties: false, description: "post-copy: the source's lazy page server, which the target's lazy-pages daemon pulls the memory from" },
);
export type LazySource = Static<typeof LazySource>;

export const RestoreRequest = Type.Object(
  {
    pipeKeys: Type.Array(Type.String({ pattern: '^pipe:\\[[0-9]+\\]$' }), { maxItems: 2 }),
    connections: Type.Integer({ minimum: 0, default: 0, description: 'established TCP connections the dump carried' }),
    lazySource: Type.Optional(LazySource),
  },
  { additionalProperties: false },
);
export type RestoreRequest = Static<typeof RestoreRequest>;

export const Restored = Type.Object({ pid: Type.Integer({ minimum: 1 }), restore_ms: Type.Number({ minimum: 0 }) }, { additionalProperties: false });
export type Restored = Static<typeof Restored>;

/** What the source needs of the target agent, in the order a migration asks for it. */
export interface TargetAgent {
  /** a container's image: whether the target has it, and sending it (before prepare) */
  hasImage(address: string, image: string): Promise<boolean>;
  sendImage(address: string, image: string, archive: Readable): Promise<void>;
  prepare(address: string, body: PrepareRequest): Promise<Prepared>;
  /** a container's files, copied while it runs (proactive sync) into the arrival's tree */
  sendTree(address: string, id: string, tree: string, archive: Readable): Promise<void>;
  /** an arrival prepared ahead is still wanted (else the target gives it up when idle) */
  keep(address: string, id: string): Promise<void>;
  /** every image of the dump; resolves with the bytes sent */
  sendImages(address: string, id: string, imagesDir: string): Promise<number>;
  restore(address: string, id: string, body: RestoreRequest): Promise<Restored>;
  switchOver(address: string, id: string): Promise<void>;
  /** what the lock here kept (roam-hold's format), for the target to deliver at the unlock */
  sendHeld(address: string, id: string, held: Buffer): Promise<void>;
  unlock(address: string, id: string, frozenMs: number): Promise<HandoverCounts>;
  clientStall(address: string, id: string): Promise<ResumeMeasurement>;
  /** post-copy: how the target's pull ended (waits for its end) */
  pullResult(address: string, id: string): Promise<PullOutcome>;
  /** drops the target's half; refused (CONFLICT) once it switched, for as long as the migration is not settled */
  abort(address: string, id: string): Promise<void>;
  /** the source has recorded the outcome: the target may forget that it took the migration over */
  settled(address: string, id: string): Promise<void>;
}
