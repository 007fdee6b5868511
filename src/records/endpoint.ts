/** The endpoint record: where an endpoint runs, as every node's location table, the control API and the wire carry it. */
import { Type, type Static } from '@sinclair/typebox';
import { EndpointName, IpAddress, NodeName } from './names.js';

export const EndpointRecord = Type.Object(
  {
    name: EndpointName,
    ip: IpAddress,
    mac: Type.String({ format: 'mac' }),
    node: NodeName,
    /** grows by one every time the endpoint moves or is re-created */
    generation: Type.Integer({ minimum: 1 }),
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Undefined()]),
    netns: Type.Union([Type.String(), Type.Undefined()]),
    state: Type.Union([Type.Literal('running'), Type.Literal('exited')]),
  },
  { additionalProperties: false },
);
export type EndpointRecord = Static<typeof EndpointRecord>;
