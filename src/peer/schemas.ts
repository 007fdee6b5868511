/**
 * The agent-to-agent protocol's messages that are its own: a migration's
 * steps as the target serves them, and the forwarding of a move to the node
 * the endpoint lives on. The bodies the target's steps take are the
 * migration port's own schemas (migration/target-agent.ts), so the wire
 * checks exactly the types the code uses; records/ holds the records other
 * layers share (announcements, endpoints, reports).
 */
import { Type, type Static } from '@sinclair/typebox';
import { PullOutcome } from '../checkpoint/lazy-pages.js';
import { IMAGE_ID_PATTERN } from '../container/image-store.js';
import { MigrationId, Prepared, PrepareRequest, Restored, RestoreRequest } from '../migration/target-agent.js';
import { HandoverMechanismSchema } from '../records/handover.js';
import { MigrationModeSchema } from '../records/migration-report.js';
import { EndpointName, NodeName } from '../records/names.js';

export { MigrationId };

/** Move an endpoint (control API; forwarded as is to the node it lives on). */
export const MigrateBody = Type.Object(
  {
    endpoint: EndpointName,
    to: NodeName,
    mode: Type.Optional(MigrationModeSchema),
    handover: Type.Optional(HandoverMechanismSchema),
    presync: Type.Optional(Type.Boolean({ description: "a container's files: copy them while it runs and send only what changed in the freeze (default), or send them all in the freeze" })),
  },
  { additionalProperties: false },
);
export type MigrateBody = Static<typeof MigrateBody>;

export const MigrationParams = Type.Object({ id: MigrationId }, { additionalProperties: false });
export type MigrationParams = Static<typeof MigrationParams>;
export const TreeParams = Type.Object({ id: MigrationId, tree: Type.String({ pattern: '^(rootfs|volume-[0-9]{1,2})$' }) }, { additionalProperties: false });
export type TreeParams = Static<typeof TreeParams>;
export const ImageParams = Type.Object({ image: Type.String({ pattern: IMAGE_ID_PATTERN }) }, { additionalProperties: false });
export type ImageParams = Static<typeof ImageParams>;

export const PrepareBody = PrepareRequest;
export const PreparedAnswer = Type.Composite([Type.Object({ prepared: MigrationId }), Prepared], { additionalProperties: false });
export const RestoreBody = RestoreRequest;
export const RestoredAnswer = Restored;
export const PullAnswer = PullOutcome;

export const UnlockBody = Type.Object(
  { frozenMs: Type.Number({ minimum: 0, description: 'how long the service has been frozen when the unlock is asked for' }) },
  { additionalProperties: false },
);
export type UnlockBody = Static<typeof UnlockBody>;

export const StartedAnswer = Type.Object({ id: MigrationId, from: NodeName }, { additionalProperties: false });
export type StartedAnswer = Static<typeof StartedAnswer>;
