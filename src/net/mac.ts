/**
 * Stable endpoint MACs. An endpoint's MAC is derived from its overlay IP, so
 * "same IP" always means "same MAC" on every node and after every restart or
 * migration, and two endpoints can never collide on MAC without colliding on
 * IP first. 0x02 marks a locally administered unicast address; 0x72 ('r') is
 * roam's tag (the CNI bridge plugin does the same with 0a:58).
 */
import { parseIp } from './ip.js';

const PREFIX = [0x02, 0x72];

export function macForIp(ip: string): string {
  const bytes = parseIp(ip);
  const tail = bytes.length === 4 ? bytes : bytes.slice(12);
  return formatMac(Uint8Array.from([...PREFIX, ...tail]));
}

export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export function parseMac(text: string): Uint8Array {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(text)) throw new TypeError(`not a MAC address: ${JSON.stringify(text)}`);
  return Uint8Array.from(text.split(':').map((h) => parseInt(h, 16)));
}

export const ZERO_MAC = '00:00:00:00:00:00';

/** True for MACs roam derives for its endpoints (and so manages in FDBs). */
export function isEndpointMac(mac: string): boolean {
  return mac.startsWith('02:72:');
}
