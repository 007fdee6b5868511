/**
 * String formats used by every schema (config, API, wire). Registered once,
 * at import, with TypeBox's format registry so Value.Check enforces them.
 */
import { FormatRegistry } from '@sinclair/typebox';
import { isIP } from 'node:net';
import { parsePrefix } from '../net/ip.js';

function isPrefix(text: string): boolean {
  try {
    parsePrefix(text);
    return true;
  } catch {
    return false;
  }
}

function isHostPort(text: string): boolean {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!m) return false;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  return isIP(host) !== 0 && port >= 1 && port <= 65535;
}

if (!FormatRegistry.Has('ip')) FormatRegistry.Set('ip', (v) => isIP(v) !== 0);
if (!FormatRegistry.Has('prefix')) FormatRegistry.Set('prefix', isPrefix);
if (!FormatRegistry.Has('hostport')) FormatRegistry.Set('hostport', isHostPort);
if (!FormatRegistry.Has('mac')) FormatRegistry.Set('mac', (v) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(v));

export function splitHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new TypeError(`not ADDRESS:PORT: ${text}`);
  return { host: m[1] ?? m[2] ?? '', port: Number(m[3]) };
}
