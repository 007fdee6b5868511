/**
 * Where each local endpoint's traffic enters the overlay, counted by the
 * kernel in the agent's own namespace: one nftables table per family, both
 * named roam_observe.
 *
 *  - inet: VXLAN packets arriving from a peer's VTEP are counted, before
 *    decapsulation, by outer source address and inner destination address
 *    (raw payload offsets past the UDP and VXLAN headers: nft 1.0.6 has no
 *    VXLAN inner-header matching). One chain per endpoint, one rule per peer.
 *  - bridge: frames from a local port (not the VXLAN device) to the
 *    endpoint's MAC, i.e. clients on this same node.
 *
 * Every counting rule carries the comment "ENDPOINT VIA" (VIA is a node name
 * or "local"), which is how its counter is read back. Rewriting the tables
 * resets their counters: whoever rewrites reads first (policy/observer.ts).
 * IPv4 endpoints only: an IPv6 inner destination does not fit one raw
 * payload match on this nft.
 */
import { isIPv4 } from 'node:net';
import { LOCAL_VIA } from '../records/traffic.js';
import { nftRun } from './nft.js';

export const OBSERVE_TABLE = 'roam_observe';

export interface IngressRuleSet {
  vxlanPort: number;
  vxlanDevice: string;
  endpoints: { name: string; ip: string; mac: string }[];
  peers: { node: string; address: string }[];
}

export interface IngressCount {
  endpoint: string;
  /** the node whose VTEP sent it, or LOCAL_VIA */
  via: string;
  packets: number;
  bytes: number;
}

/** Bits from the UDP header's start to the inner IPv4 destination: UDP 8 + VXLAN 8 + Ethernet 14 + 16 bytes. */
const INNER_IPV4_DADDR_BITS = (8 + 8 + 14 + 16) * 8;
/** ... and to the inner EtherType: UDP 8 + VXLAN 8 + 12 bytes of MACs */
const INNER_ETHERTYPE_BITS = (8 + 8 + 12) * 8;

function hexIpv4(ip: string): string {
  return `0x${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')}`;
}

/** The whole rule set as one nft script: replaces whatever was there, in one transaction. */
export function ingressScript(set: IngressRuleSet): string {
  const lines = [
    `add table inet ${OBSERVE_TABLE}`,
    `delete table inet ${OBSERVE_TABLE}`,
    `add table bridge ${OBSERVE_TABLE}`,
    `delete table bridge ${OBSERVE_TABLE}`,
    `add table inet ${OBSERVE_TABLE}`,
    `add chain inet ${OBSERVE_TABLE} vxlan_in { type filter hook prerouting priority -300 ; policy accept ; }`,
    `add table bridge ${OBSERVE_TABLE}`,
    `add chain bridge ${OBSERVE_TABLE} local_in { type filter hook forward priority -300 ; policy accept ; }`,
    `add rule bridge ${OBSERVE_TABLE} local_in iifname "${set.vxlanDevice}" return`,
  ];
  set.endpoints.forEach((ep, i) => {
    lines.push(`add rule bridge ${OBSERVE_TABLE} local_in ether daddr ${ep.mac} counter comment "${ep.name} ${LOCAL_VIA}"`);
    if (!isIPv4(ep.ip)) return;
    const chain = `ep${i}`;
    lines.push(`add chain inet ${OBSERVE_TABLE} ${chain}`);
    for (const p of set.peers) {
      lines.push(`add rule inet ${OBSERVE_TABLE} ${chain} ${isIPv4(p.address) ? 'ip' : 'ip6'} saddr ${p.address} counter comment "${ep.name} ${p.node}"`);
    }
    lines.push(
      `add rule inet ${OBSERVE_TABLE} vxlan_in udp dport ${set.vxlanPort} @th,${INNER_ETHERTYPE_BITS},16 0x0800 @th,${INNER_IPV4_DADDR_BITS},32 ${hexIpv4(ep.ip)} jump ${chain}`,
    );
  });
  return lines.join('\n');
}

export function writeIngressCounters(netns: string, set: IngressRuleSet): void {
  nftRun(netns, 'observe.write', ingressScript(set));
}

/** Reads only (no transaction each round); a table someone removed is an error, and the caller writes the rules again. */
export function readIngressCounters(netns: string): IngressCount[] {
  // One list per call: nft 1.0.6 does not find the second table of two lists in one buffer.
  return ['inet', 'bridge'].flatMap((family) => parseIngressCounters(nftRun(netns, 'observe.read', `list table ${family} ${OBSERVE_TABLE}`)));
}

export function parseIngressCounters(listing: string): IngressCount[] {
  const out: IngressCount[] = [];
  for (const m of listing.matchAll(/counter packets (\d+) bytes (\d+) comment "([a-z0-9-]+) ([a-z0-9-]+)"/g)) {
    out.push({ endpoint: m[3]!, via: m[4]!, packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

export function removeIngressCounters(netns: string): void {
  nftRun(netns, 'observe.remove', [
    `add table inet ${OBSERVE_TABLE}`, `delete table inet ${OBSERVE_TABLE}`,
    `add table bridge ${OBSERVE_TABLE}`, `delete table bridge ${OBSERVE_TABLE}`,
  ].join('\n'));
}
