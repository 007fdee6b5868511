/**
 * What any agent accepts about an endpoint, from the CLI over the control
 * API or forwarded by the peer that received it: create it, set its policy,
 * name it, read its log.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ContainerRequest } from './container.js';
import { EndpointName, IpAddress, NodeName } from './names.js';
import { EndpointPolicy } from './policy.js';

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
export type CreateEndpointBody = Static<typeof CreateEndpointBody>;

/** A policy for one endpoint; without one it gets back the agents' default. */
export const PolicyBody = Type.Object({ policy: Type.Optional(EndpointPolicy) }, { additionalProperties: false });
export type PolicyBody = Static<typeof PolicyBody>;

export const NameParams = Type.Object({ name: EndpointName }, { additionalProperties: false });
export type NameParams = Static<typeof NameParams>;

export const LogsQuery = Type.Object(
  { maxBytes: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'how many bytes from the end' })) },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;
