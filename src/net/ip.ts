/**
 * IP addresses and prefixes as byte arrays, one code path for IPv4 and IPv6.
 * Pure functions; no kernel involved.
 */
import { isIP } from 'node:net';

export type Family = 4 | 6;

export interface Prefix {
  readonly family: Family;
  readonly address: Uint8Array; // network address (host bits zero)
  readonly length: number;
}

export function parseIp(text: string): Uint8Array {
  const family = isIP(text);
  if (family === 4) return Uint8Array.from(text.split('.').map(Number));
  if (family === 6) return parseIpv6(text);
  throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
}

function parseIpv6(text: string): Uint8Array {
  let head = text;
  let tailV4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tailV4 = text.slice(lastColon + 1).split('.').map(Number);
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftParts = left ? left.split(':') : [];
  const rightParts = right !== undefined && right !== '' ? right.split(':') : [];
  const missing = 8 - leftParts.length - rightParts.length;
  const groups = [...leftParts, ...Array<string>(right !== undefined ? missing : 0).fill('0'), ...rightParts];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  });
  if (tailV4.length === 4) bytes.set(tailV4, 12);
  return bytes;
}

export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

export function familyOf(text: string): Family {
  const f = isIP(text);
  if (f !== 4 && f !== 6) throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  return f;
}

export function isIpAddress(text: string): boolean {
  return isIP(text) !== 0;
}

export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf('/');
  if (slash < 0) throw new TypeError(`not a prefix (missing /length): ${JSON.stringify(text)}`);
  const address = parseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  const length = Number(lengthText);
  const max = address.length * 8;
  if (!/^\d+$/.test(lengthText) || length > max) throw new TypeError(`prefix length must be 0..${max}: ${JSON.stringify(text)}`);
  return { family: address.length === 4 ? 4 : 6, address: mask(address, length), length };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIp(p.address)}/${p.length}`;
}

function mask(address: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(address.length);
  for (let i = 0; i < address.length; i++) {
    const bits = Math.max(0, Math.min(8, length - i * 8));
    out[i] = address[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

export function prefixContains(p: Prefix, ip: Uint8Array): boolean {
  if (ip.length !== p.address.length) return false;
  const masked = mask(ip, p.length);
  return masked.every((b, i) => b === p.address[i]);
}

export function prefixWithin(inner: Prefix, outer: Prefix): boolean {
  return inner.family === outer.family && inner.length >= outer.length && prefixContains(outer, inner.address);
}

/** The address `offset` positions after the network address of `p`. */
export function addressAt(p: Prefix, offset: bigint): Uint8Array {
  let value = bytesToBigInt(p.address) + offset;
  const out = new Uint8Array(p.address.length);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

export function prefixSize(p: Prefix): bigint {
  return 1n << BigInt(p.address.length * 8 - p.length);
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}
