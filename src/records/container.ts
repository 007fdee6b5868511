/** The container request: what `roam run` asks for when the endpoint is to run as an OCI container (runc). */
import { Type, type Static } from '@sinclair/typebox';

/** A data volume: a host folder at a path in the container. */
export const Volume = Type.Object(
  {
    source: Type.String({ minLength: 1, pattern: '^/', description: 'the folder on the node, absolute' }),
    destination: Type.String({ minLength: 2, pattern: '^/', description: 'where the container sees it, absolute' }),
  },
  { additionalProperties: false },
);
export type Volume = Static<typeof Volume>;

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
