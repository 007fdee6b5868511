/** Names an endpoint's pieces get on a node. Pure. */
import { createHash } from 'node:crypto';

/** Host-side veth name: IFNAMSIZ allows 15 characters, endpoint names are longer. */
export function hostVethName(endpoint: string): string {
  return `ve-${createHash('sha1').update(endpoint).digest('hex').slice(0, 10)}`;
}

export const ENDPOINT_INTERFACE = 'eth0';

/** Inside a pod, which has its own eth0 from the cluster's network, the overlay's interface is this one. */
export const POD_INTERFACE = 'roam0';

/** The endpoint a pod becomes: namespace-name, hashed down to a DNS label where that is longer. */
export function podEndpointName(namespace: string, pod: string): string {
  const name = `${namespace}-${pod}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  if (name.length <= 63) return name;
  return `${name.slice(0, 54).replace(/-+$/, '')}-${createHash('sha1').update(`${namespace}/${pod}`).digest('hex').slice(0, 8)}`;
}
