/**
 * Names and addresses as every schema spells them (records, config, API,
 * wire). Importing this registers their string formats (formats.ts).
 */
import { Type } from '@sinclair/typebox';
import './formats.js';

export const ENDPOINT_NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

export const EndpointName = Type.String({ pattern: ENDPOINT_NAME_PATTERN, description: 'endpoint name: lowercase letters, digits and dashes (DNS label)' });

export const NodeName = Type.String({
  pattern: '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$',
  description: 'DNS-label style node name: lowercase letters, digits and dashes, 1-32 characters',
});

export const IpAddress = Type.String({ format: 'ip', description: 'IPv4 or IPv6 address' });
