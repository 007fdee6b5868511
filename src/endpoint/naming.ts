/** Names an endpoint's pieces get on a node. Pure. */
import { createHash } from 'node:crypto';

export const ENDPOINT_NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

/** Host-side veth name: IFNAMSIZ allows 15 characters, endpoint names are longer. */
export function hostVethName(endpoint: string): string {
  return `ve-${createHash('sha1').update(endpoint).digest('hex').slice(0, 10)}`;
}

export const ENDPOINT_INTERFACE = 'eth0';
