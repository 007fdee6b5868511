/**
 * The overlay's desired state, computed purely from who the peers are and
 * where each endpoint lives. No kernel here: the same functions drive the
 * real dataplane and the fake one in unit tests.
 *
 * On every node, for every endpoint MAC:
 *  - living elsewhere: a `self` entry on the VXLAN device (MAC -> that node's
 *    VTEP) and a `master` entry on the bridge pointing at the VXLAN port, so
 *    the bridge never floods a known MAC;
 *  - living here: a `master` entry on the endpoint's own bridge port.
 * Plus one all-zero `self` entry per peer: the head-end replication list for
 * broadcast (ARP) and unknown unicast.
 */
import { ZERO_MAC } from '../net/mac.js';

export interface PeerNode {
  node: string;
  vtep: string;
}

export interface EndpointLocation {
  name: string;
  mac: string;
  node: string;
  generation: number;
}

export interface DesiredFdb {
  /** 'vxlan' = the VXLAN device; otherwise the endpoint name whose bridge port holds the MAC */
  device: { kind: 'vxlan' } | { kind: 'endpoint-port'; endpoint: string };
  mac: string;
  table: 'self' | 'master';
  dst: string | undefined;
}

export interface OverlayInputs {
  self: string;
  peers: readonly PeerNode[];
  endpoints: readonly EndpointLocation[];
  /** endpoints whose bridge port exists on this node right now */
  localPorts: ReadonlySet<string>;
}

/** Where each MAC lives: the newest generation wins (a move in progress shows twice). */
export function resolveLocations(endpoints: readonly EndpointLocation[]): Map<string, EndpointLocation> {
  const byMac = new Map<string, EndpointLocation>();
  for (const ep of endpoints) {
    const seen = byMac.get(ep.mac);
    if (!seen || ep.generation > seen.generation || (ep.generation === seen.generation && ep.node < seen.node)) byMac.set(ep.mac, ep);
  }
  return byMac;
}

export function desiredFdb(inputs: OverlayInputs): DesiredFdb[] {
  const vtepOf = new Map(inputs.peers.filter((p) => p.node !== inputs.self).map((p) => [p.node, p.vtep]));
  const out: DesiredFdb[] = [];
  for (const vtep of new Set(vtepOf.values())) {
    out.push({ device: { kind: 'vxlan' }, mac: ZERO_MAC, table: 'self', dst: vtep });
  }
  for (const ep of resolveLocations(inputs.endpoints).values()) {
    if (ep.node === inputs.self) {
      if (inputs.localPorts.has(ep.name)) out.push({ device: { kind: 'endpoint-port', endpoint: ep.name }, mac: ep.mac, table: 'master', dst: undefined });
      continue;
    }
    const vtep = vtepOf.get(ep.node);
    if (!vtep) continue; // a node we cannot reach yet: the flood list will do until it announces itself
    out.push({ device: { kind: 'vxlan' }, mac: ep.mac, table: 'self', dst: vtep });
    out.push({ device: { kind: 'vxlan' }, mac: ep.mac, table: 'master', dst: undefined });
  }
  return out;
}
