/**
 * An endpoint's network: a pinned namespace with loopback and eth0 (its
 * stable IP and MAC), joined by a veth to the node's bridge; or, for a pod,
 * the pod's own namespace given roam0 beside the cluster's eth0. Built in an
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
import { ENDPOINT_INTERFACE, POD_INTERFACE } from './naming.js';

export interface EndpointNetworkSpec {
  name: string;
  netns: string;
  hostVeth: string;
  ip: string;
  prefixLength: number;
  mac: string;
  mtu: number;
  bridgeIndex: number;
  /**
   * lock the namespace (drop all IP traffic) before its interface exists, and keep its port off the
   * bridge until the switch (bridgePort): a migration target
   */
  locked?: boolean;
}

export async function createEndpointNetwork(node: RtnlSession, spec: EndpointNetworkSpec): Promise<void> {
  createNetns(spec.netns);
  try {
    // A namespace with a borrowed IP and MAC must never answer or reset anyone until it owns them.
    if (spec.locked) lockNetns(spec.netns);
    await joinBridge(node, spec, ENDPOINT_INTERFACE, true, !spec.locked);
  } catch (err) {
    await removeEndpointNetwork(node, spec).catch(() => undefined);
    throw err;
  }
}

/**
 * Gives a namespace someone else made (a pod's) an overlay interface, beside
 * what it has: the namespace is not roam's, only the veth is, and a failure
 * takes away the veth alone.
 */
export async function attachEndpointNetwork(node: RtnlSession, spec: EndpointNetworkSpec): Promise<void> {
  try {
    await joinBridge(node, spec, POD_INTERFACE, false, true);
  } catch (err) {
    await detachEndpointNetwork(node, spec).catch(() => undefined);
    throw err;
  }
}

/**
 * Adds the veth whose inner end (`inner`) carries the endpoint's IP and MAC in its namespace, its outer end
 * on the bridge (`bridged`) or, for an arrival, beside it until the switch.
 */
async function joinBridge(node: RtnlSession, spec: EndpointNetworkSpec, inner: string, loopbackUp: boolean, bridged: boolean): Promise<void> {
  const fd = openSync(spec.netns, 'r');
  try {
    await addVeth(node, { name: spec.hostVeth, alias: portAlias(spec.name), peerName: inner, peerMac: spec.mac, peerNetns: spec.netns, peerNetnsFd: fd, mtu: spec.mtu });
  } finally {
    closeSync(fd);
  }
  const inside = RtnlSession.open(spec.netns);
  try {
    if (loopbackUp) await setLinkUp(inside, await requireLink(inside, 'lo'));
    const link = await requireLink(inside, inner);
    await ensureAddress(inside, link, { address: spec.ip, prefixLength: spec.prefixLength });
    await setLinkUp(inside, link);
  } finally {
    inside.close();
  }
  const host = await requireLink(node, spec.hostVeth);
  if (bridged) await setLinkMaster(node, host, spec.bridgeIndex);
  await setLinkUp(node, host);
}

/**
 * Puts an arrival's port on the bridge, at the switch. Before it, the port is kept off: ARP is not IP, so
 * the lock does not stop the namespace answering who has the endpoint's address, and the bridge would
 * learn the endpoint's MAC on this port and send this node's clients of the still-running source into
 * the locked namespace, for as long as the arrival is prepared (seconds, when prepared ahead).
 */
export async function bridgePort(node: RtnlSession, hostVeth: string, bridgeIndex: number): Promise<void> {
  await setLinkMaster(node, await requireLink(node, hostVeth), bridgeIndex);
}

export async function removeEndpointNetwork(node: RtnlSession, spec: Pick<EndpointNetworkSpec, 'netns' | 'hostVeth'>): Promise<void> {
  await deleteLink(node, spec.hostVeth);
  removeNetns(spec.netns);
}

/** Takes the veth away (both ends go together); the namespace stays its owner's. */
export async function detachEndpointNetwork(node: RtnlSession, spec: Pick<EndpointNetworkSpec, 'hostVeth'>): Promise<void> {
  await deleteLink(node, spec.hostVeth);
}
