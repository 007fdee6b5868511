/**
 * The overlay dataplane on the real kernel, through sys/netlink only.
 * ensureDevices follows "ensure, then verify": an existing device that
 * matches is adopted untouched (an agent restart must not disturb traffic);
 * one that does not match is recreated, and the reason is logged.
 */
import { RoamError } from '../errors/roam-error.js';
import { isEndpointMac, ZERO_MAC } from '../net/mac.js';
import { listAddresses } from '../sys/netlink/addresses.js';
import { deleteFdb, ensureFdb, listFdb } from '../sys/netlink/fdb.js';
import {
  addBridge, addVxlan, deleteLink, getLink, listLinks, requireLink, setBridgePortLearning, setLinkMaster, setLinkUp, type LinkInfo,
} from '../sys/netlink/links.js';
import type { RtnlSession } from '../sys/netlink/session.js';
import type { ManagedFdbEntry, OverlayDataplane, OverlayDevices } from './dataplane.js';
import { endpointOfAlias } from './port-alias.js';

export interface KernelDataplaneOptions {
  bridge: string;
  vxlan: string;
  vni: number;
  vxlanPort: number;
  underlayAddress: string;
  underlayInterface: string | undefined;
  mtu: number;
  log: (message: string) => void;
}

export class KernelDataplane implements OverlayDataplane {
  constructor(private readonly s: RtnlSession, private readonly o: KernelDataplaneOptions) {}

  async ensureDevices(): Promise<OverlayDevices> {
    const underlay = await this.findUnderlay();
    let bridge = await getLink(this.s, this.o.bridge);
    if (bridge && bridge.kind !== 'bridge') {
      throw new RoamError('PRECONDITION', `link ${this.o.bridge} exists but is a ${bridge.kind ?? 'plain'} device, not a bridge; rename devices.bridge or remove it`);
    }
    if (!bridge) {
      await addBridge(this.s, this.o.bridge, this.o.mtu);
      bridge = await requireLink(this.s, this.o.bridge);
    }
    let vxlan = await getLink(this.s, this.o.vxlan);
    const mismatch = vxlan ? this.vxlanMismatch(vxlan, underlay) : undefined;
    if (vxlan && mismatch) {
      this.o.log(`recreating ${this.o.vxlan}: ${mismatch}`);
      await deleteLink(this.s, this.o.vxlan);
      vxlan = undefined;
    }
    if (!vxlan) {
      await addVxlan(this.s, { name: this.o.vxlan, vni: this.o.vni, local: this.o.underlayAddress, port: this.o.vxlanPort, underlayIndex: underlay.index, mtu: this.o.mtu });
      vxlan = await requireLink(this.s, this.o.vxlan);
    }
    await setLinkMaster(this.s, vxlan, bridge.index);
    vxlan = await requireLink(this.s, this.o.vxlan);
    await setBridgePortLearning(this.s, vxlan, false);
    await setLinkUp(this.s, vxlan);
    await setLinkUp(this.s, bridge);
    return { bridgeIndex: bridge.index, vxlanIndex: vxlan.index, vxlanName: vxlan.name };
  }

  private vxlanMismatch(link: LinkInfo, underlay: LinkInfo): string | undefined {
    const v = link.vxlan;
    if (link.kind !== 'vxlan' || !v) return `it is a ${link.kind ?? 'plain'} device, not vxlan`;
    if (v.vni !== this.o.vni) return `vni ${v.vni} != ${this.o.vni}`;
    if (v.local !== this.o.underlayAddress) return `local ${v.local} != ${this.o.underlayAddress}`;
    if (v.port !== this.o.vxlanPort) return `dstport ${v.port} != ${this.o.vxlanPort}`;
    if (v.learning) return 'learning is on';
    if (v.underlayIndex !== underlay.index) return `underlay device ${v.underlayIndex} != ${underlay.index}`;
    return undefined;
  }

  private async findUnderlay(): Promise<LinkInfo> {
    if (this.o.underlayInterface) return requireLink(this.s, this.o.underlayInterface);
    for (const link of await listLinks(this.s)) {
      const addrs = await listAddresses(this.s, link);
      if (addrs.some((a) => a.address === this.o.underlayAddress)) return link;
    }
    throw new RoamError('PRECONDITION', `no interface holds underlay.address ${this.o.underlayAddress} (netns ${this.s.netns})`);
  }

  async endpointPorts(): Promise<Map<string, { ifindex: number; name: string }>> {
    const links = await listLinks(this.s);
    const bridge = links.find((l) => l.name === this.o.bridge);
    const ports = new Map<string, { ifindex: number; name: string }>();
    for (const l of links) {
      const owner = endpointOfAlias(l.alias);
      if (owner && bridge && l.master === bridge.index) ports.set(owner, { ifindex: l.index, name: l.name });
    }
    return ports;
  }

  async listManagedFdb(devices: OverlayDevices): Promise<ManagedFdbEntry[]> {
    const links = await listLinks(this.s);
    const bridgePorts = new Map(links.filter((l) => l.master === devices.bridgeIndex).map((l) => [l.index, l.name]));
    const out: ManagedFdbEntry[] = [];
    for (const e of await listFdb(this.s)) {
      const onVxlan = e.ifindex === devices.vxlanIndex;
      if (onVxlan && e.table === 'self' && (e.mac === ZERO_MAC || isEndpointMac(e.mac))) out.push({ entry: e, deviceName: devices.vxlanName });
      else if (e.table === 'master' && isEndpointMac(e.mac) && bridgePorts.has(e.ifindex)) out.push({ entry: e, deviceName: bridgePorts.get(e.ifindex)! });
    }
    return out;
  }

  ensureFdb(change: ManagedFdbEntry): Promise<void> {
    return ensureFdb(this.s, change.entry, change.deviceName);
  }

  deleteFdb(change: ManagedFdbEntry): Promise<void> {
    return deleteFdb(this.s, change.entry, change.deviceName);
  }
}
