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
    // An empty argument is a valid one (`redis-server --save ''`); only the program itself must be named (EndpointManager.create).
    command: Type.Array(Type.String({ maxLength: 131072 }), { maxItems: 4096, description: "program and its arguments, any of which may be empty but the program (a container from a bundle: empty keeps the bundle's)" }),
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
