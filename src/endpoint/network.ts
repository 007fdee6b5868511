/**
 * An endpoint's network: a pinned namespace with loopback and eth0 (its
 * stable IP and MAC), joined by a veth to the node's bridge. Built in an
 * order that can be undone step by step; `removeEndpointNetwork` removes
 * whatever exists and treats the rest as already gone.
 */
import { closeSync, openSync } from 'node:fs';
import { portAlias } from '../overlay/port-alias.js';
import { ensureAddress } from '../sys/netlink/addresses.js';
import { addVeth, deleteLink, requireLink, setLinkMaster, setLinkUp } from '../sys/netlink/links.js';
import { RtnlSession } from '../sys/netlink/session.js';
import { createNetns, removeNetns } from '../sys/netns/netns.js';
import { lockNetns } from '../sys/nft.js';
import { ENDPOINT_INTERFACE } from './naming.js';

export interface EndpointNetworkSpec {
  name: string;
  netns: string;
  hostVeth: string;
  ip: string;
  prefixLength: number;
  mac: string;
  mtu: number;
  bridgeIndex: number;
  /** lock the namespace (drop all IP traffic) before its interface exists: a migration target */
  locked?: boolean;
}

export async function createEndpointNetwork(node: RtnlSession, spec: EndpointNetworkSpec): Promise<void> {
  createNetns(spec.netns);
  try {
    // A namespace with a borrowed IP and MAC must never answer or reset anyone until it owns them.
    if (spec.locked) lockNetns(spec.netns);
    const fd = openSync(spec.netns, 'r');
    try {
      await addVeth(node, { name: spec.hostVeth, alias: portAlias(spec.name), peerName: ENDPOINT_INTERFACE, peerMac: spec.mac, peerNetns: spec.netns, peerNetnsFd: fd, mtu: spec.mtu });
    } finally {
      closeSync(fd);
    }
    const inside = RtnlSession.open(spec.netns);
    try {
      await setLinkUp(inside, await requireLink(inside, 'lo'));
      const eth = await requireLink(inside, ENDPOINT_INTERFACE);
      await ensureAddress(inside, eth, { address: spec.ip, prefixLength: spec.prefixLength });
      await setLinkUp(inside, eth);
    } finally {
      inside.close();
    }
    const host = await requireLink(node, spec.hostVeth);
    await setLinkMaster(node, host, spec.bridgeIndex);
    await setLinkUp(node, host);
  } catch (err) {
    await removeEndpointNetwork(node, spec).catch(() => undefined);
    throw err;
  }
}

export async function removeEndpointNetwork(node: RtnlSession, spec: Pick<EndpointNetworkSpec, 'netns' | 'hostVeth'>): Promise<void> {
  await deleteLink(node, spec.hostVeth);
  removeNetns(spec.netns);
}
