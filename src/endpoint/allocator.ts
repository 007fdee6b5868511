/**
 * Picks an endpoint's overlay IP: the lowest free address of this node's
 * range, or the one asked for, which must lie in the overlay subnet and be
 * free cluster-wide. Pure: "taken" is whatever the caller knows of the cluster.
 */
import { RoamError } from '../errors/roam-error.js';
import { addressAt, formatIp, parseIp, parsePrefix, prefixContains, prefixSize } from '../net/ip.js';

export interface AllocationRequest {
  subnet: string;
  range: string;
  taken: ReadonlySet<string>;
  requested: string | undefined;
}

export function allocateIp(req: AllocationRequest): string {
  const subnet = parsePrefix(req.subnet);
  if (req.requested !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = parseIp(req.requested);
    } catch {
      throw new RoamError('INPUT_INVALID', `ip: ${JSON.stringify(req.requested)} is not an IP address`);
    }
    const ip = formatIp(bytes);
    if (!prefixContains(subnet, bytes)) throw new RoamError('INPUT_INVALID', `ip: ${ip} is outside the overlay subnet ${req.subnet}`);
    if (isReserved(subnet, bytes)) throw new RoamError('INPUT_INVALID', `ip: ${ip} is the network or broadcast address of ${req.subnet}`);
    if (req.taken.has(ip)) throw new RoamError('CONFLICT', `ip: ${ip} is already used by another endpoint`);
    return ip;
  }
  const range = parsePrefix(req.range);
  const size = prefixSize(range);
  for (let offset = 1n; offset < size; offset++) {
    const bytes = addressAt(range, offset);
    if (!prefixContains(subnet, bytes) || isReserved(subnet, bytes)) continue;
    const ip = formatIp(bytes);
    if (!req.taken.has(ip)) return ip;
  }
  throw new RoamError('ADDRESS_EXHAUSTED', `no free address left in ${req.range}`);
}

function isReserved(subnet: ReturnType<typeof parsePrefix>, bytes: Uint8Array): boolean {
  const first = formatIp(addressAt(subnet, 0n));
  const last = formatIp(addressAt(subnet, prefixSize(subnet) - 1n));
  const ip = formatIp(bytes);
  return ip === first || (subnet.family === 4 && ip === last);
}
