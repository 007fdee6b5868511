/**
 * A gate in front of a CRIU page server's port, in this agent's own
 * network namespace: only the migration's other end (and this node itself)
 * may open a connection to it; anyone else is reset before a byte of TLS.
 * CRIU's TLS checks that a client's certificate is the cluster CA's, not
 * whose it is, so without the gate any node of the cluster could connect
 * first and read a service's memory (post-copy) or spoil its dump. One
 * nftables table per port (`roam_gate_PORT`), so that a gate is put and
 * lifted alone; lifting one that is gone is a success.
 */
import { readFileSync } from 'node:fs';
import { isIpAddress, parseIp } from '../net/ip.js';
import { listTables, nftRun } from './nft.js';

const SELF = '/proc/self/ns/net';
const PREFIX = 'roam_gate_';

/** Lets only `allowed` (IP addresses, of one family with each other) connect to TCP `port` here. */
export function gatePort(port: number, allowed: readonly string[]): void {
  const v6 = allowed.filter((a) => isIpAddress(a) && parseIp(a).length === 16);
  const v4 = allowed.filter((a) => isIpAddress(a) && parseIp(a).length === 4);
  const table = `inet ${PREFIX}${port}`;
  nftRun(SELF, 'nft.gate', [
    `add table ${table}`,
    `flush table ${table}`,
    `add chain ${table} in { type filter hook input priority -5 ; policy accept ; }`,
    // Each family: a source not in the list is reset; a family with nobody in it, entirely.
    `add rule ${table} in meta nfproto ipv4 tcp dport ${port} ${v4.length ? `ip saddr != { ${v4.join(', ')} } ` : ''}reject with tcp reset`,
    `add rule ${table} in meta nfproto ipv6 tcp dport ${port} ${v6.length ? `ip6 saddr != { ${v6.join(', ')} } ` : ''}reject with tcp reset`,
  ].join('\n'));
}

export function ungatePort(port: number): void {
  nftRun(SELF, 'nft.ungate', `add table inet ${PREFIX}${port}\ndelete table inet ${PREFIX}${port}`);
}

/** The ports gated here now. */
export function gatedPorts(): number[] {
  return listTables(SELF).flatMap((t) => {
    const m = new RegExp(`^inet ${PREFIX}(\\d+)$`).exec(t);
    return m ? [Number(m[1])] : [];
  });
}

/** TCP ports something listens on in this namespace (/proc/self/net/tcp and tcp6, state LISTEN). */
export function listeningPorts(): Set<number> {
  return localPortsIn('0A');
}

/** Whether a connection to (or from) local TCP `port` is established in this namespace. */
export function hasConnectionOn(port: number): boolean {
  return localPortsIn('01').has(port);
}

/** The local ports of this namespace's TCP sockets in kernel state `state` (hex, as /proc/net/tcp writes it). */
function localPortsIn(state: string): Set<number> {
  const ports = new Set<number>();
  for (const file of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6 here
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === state) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** Lifts the gates of ports nothing listens on any more (a page server that ended while no agent was there); returns them. */
export function liftStaleGates(): number[] {
  const listening = listeningPorts();
  const stale = gatedPorts().filter((p) => !listening.has(p));
  for (const p of stale) ungatePort(p);
  return stale;
}
