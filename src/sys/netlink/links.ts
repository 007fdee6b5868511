/**
 * Link verbs: bridge, VXLAN and veth devices, up/down, master, MTU.
 * `ensure*` = create-or-verify (idempotent), `add*` = create-exclusive,
 * `delete*` = already-gone is success.
 */
import { ifla, rt } from 'netlink';
import { RoamError, isSysError } from '../../errors/roam-error.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { formatMac, parseMac } from '../../net/mac.js';
import { encodeAttrs, streamToBuffer, u8, be16 } from './attrs.js';
import { ADD, type RtnlSession } from './session.js';

export interface VxlanInfo {
  vni: number;
  local: string | undefined;
  port: number;
  learning: boolean;
  underlayIndex: number | undefined;
}

export interface LinkInfo {
  index: number;
  name: string;
  kind: string | undefined;
  mac: string | undefined;
  up: boolean;
  mtu: number | undefined;
  master: number | undefined;
  vxlan: VxlanInfo | undefined;
  /** bridge-port learning, when the link is enslaved to a bridge */
  portLearning: boolean | undefined;
  alias: string | undefined;
}

const VETH_INFO_PEER = 1;
const IFLA_BRPORT_LEARNING = 8;

function toLinkInfo(msg: { data: { index?: number; flags?: { up?: true } }; attrs: ifla.LinkAttrs }): LinkInfo {
  const info = msg.attrs.linkinfo ? ifla.parseInfo(msg.attrs.linkinfo) : undefined;
  let vxlan: VxlanInfo | undefined;
  if (info?.kind === 'vxlan' && info.data) {
    const v = ifla.parseVxlan(info.data);
    vxlan = {
      vni: v.id ?? 0,
      local: v.local ? formatIp(v.local) : v.local6 ? formatIp(v.local6) : undefined,
      port: v.port ? v.port.readUInt16BE(0) : 0,
      learning: (v.learning ?? 1) !== 0,
      underlayIndex: v.link,
    };
  }
  let portLearning: boolean | undefined;
  if (info?.slaveKind === 'bridge' && info.slaveData) {
    const port = ifla.parseBridgePort(info.slaveData);
    portLearning = port.learning === undefined ? undefined : port.learning !== 0;
  }
  return {
    index: msg.data.index ?? 0,
    name: msg.attrs.ifname ?? '',
    kind: info?.kind,
    mac: msg.attrs.address && msg.attrs.address.length === 6 ? formatMac(msg.attrs.address) : undefined,
    up: Boolean(msg.data.flags?.up),
    mtu: msg.attrs.mtu,
    master: msg.attrs.master,
    vxlan,
    portLearning,
    alias: msg.attrs.ifalias,
  };
}

export async function listLinks(s: RtnlSession): Promise<LinkInfo[]> {
  const msgs = await s.call('link.list', 'all', () => s.socket.getLinks(undefined, undefined, s.requestOptions()));
  return msgs.map(toLinkInfo);
}

export async function getLink(s: RtnlSession, name: string): Promise<LinkInfo | undefined> {
  try {
    const msgs = await s.call('link.get', name, () => s.socket.getLink({}, { ifname: name }, s.requestOptions()));
    return msgs[0] ? toLinkInfo(msgs[0]) : undefined;
  } catch (err) {
    if (isSysError(err, 'ENODEV')) return undefined;
    throw err;
  }
}

export async function requireLink(s: RtnlSession, name: string): Promise<LinkInfo> {
  const link = await getLink(s, name);
  if (!link) throw new RoamError('PRECONDITION', `link ${name} does not exist (netns ${s.netns})`, { link: name });
  return link;
}

export async function addBridge(s: RtnlSession, name: string, mtu: number): Promise<void> {
  const linkinfo = streamToBuffer(ifla.formatInfo({ kind: 'bridge' }));
  await s.call('link.add', `bridge ${name}`, () => s.socket.newLink({}, { ifname: name, mtu, linkinfo }, s.requestOptions(ADD)));
}

export interface VxlanSpec {
  name: string;
  vni: number;
  local: string;
  port: number;
  underlayIndex: number;
  mtu: number;
}

export async function addVxlan(s: RtnlSession, spec: VxlanSpec): Promise<void> {
  const local = parseIp(spec.local);
  const data = streamToBuffer(
    ifla.formatVxlan({
      id: spec.vni,
      ...(local.length === 4 ? { local: Buffer.from(local) } : { local6: Buffer.from(local) }),
      link: spec.underlayIndex,
      port: be16(spec.port),
      // Remote MACs are programmed explicitly; the kernel must never learn them.
      learning: 0,
      ttl: 64,
    }),
  );
  const linkinfo = streamToBuffer(ifla.formatInfo({ kind: 'vxlan', data }));
  await s.call('link.add', `vxlan ${spec.name} vni ${spec.vni}`, () =>
    s.socket.newLink({}, { ifname: spec.name, mtu: spec.mtu, linkinfo }, s.requestOptions(ADD)),
  );
}

export interface VethSpec {
  name: string;
  /** link alias of the local end */
  alias: string;
  peerName: string;
  peerMac: string;
  /** where the peer end is created (a pinned netns path) */
  peerNetns: string;
  peerNetnsFd: number;
  mtu: number;
}

/** Creates a veth pair whose peer end is born in another namespace with its final name and MAC. */
export async function addVeth(s: RtnlSession, spec: VethSpec): Promise<void> {
  const peer = Buffer.concat([
    rt.formatLink({}),
    streamToBuffer(ifla.formatLinkAttrs({ ifname: spec.peerName, address: Buffer.from(parseMac(spec.peerMac)), mtu: spec.mtu, netNsFd: spec.peerNetnsFd })),
  ]);
  const data = encodeAttrs([[VETH_INFO_PEER, peer]]);
  const linkinfo = streamToBuffer(ifla.formatInfo({ kind: 'veth', data }));
  await s.call('link.add', `veth ${spec.name} <-> ${spec.peerName}@${spec.peerNetns}`, () =>
    s.socket.newLink({}, { ifname: spec.name, mtu: spec.mtu, linkinfo }, s.requestOptions(ADD)),
  );
  // The kernel ignores IFLA_IFALIAS when creating a link; only setlink applies it.
  await setLinkAlias(s, await requireLink(s, spec.name), spec.alias);
}

export async function setLinkAlias(s: RtnlSession, link: LinkInfo, alias: string): Promise<void> {
  if (link.alias === alias) return;
  await s.call('link.alias', `${link.name} "${alias}"`, () => s.socket.setLink({ index: link.index }, { ifalias: alias }, s.requestOptions()));
}

export async function setLinkUp(s: RtnlSession, link: LinkInfo): Promise<void> {
  if (link.up) return;
  await s.call('link.up', link.name, () => s.socket.setLink({ index: link.index, flags: { up: true }, change: { up: true } }, {}, s.requestOptions()));
}

export async function setLinkMaster(s: RtnlSession, link: LinkInfo, masterIndex: number): Promise<void> {
  if (link.master === masterIndex) return;
  await s.call('link.master', `${link.name} -> ${masterIndex}`, () => s.socket.setLink({ index: link.index }, { master: masterIndex }, s.requestOptions()));
}

/** Turns MAC learning on a bridge port on or off (`bridge link set dev X learning off`). */
export async function setBridgePortLearning(s: RtnlSession, link: LinkInfo, learning: boolean): Promise<void> {
  if (link.portLearning === learning) return;
  const slaveData = encodeAttrs([[IFLA_BRPORT_LEARNING, u8(learning ? 1 : 0)]]);
  const linkinfo = streamToBuffer(ifla.formatInfo({ slaveKind: 'bridge', slaveData }));
  await s.call('bridge_port.learning', `${link.name} ${learning ? 'on' : 'off'}`, () =>
    s.socket.newLink({ index: link.index }, { linkinfo }, s.requestOptions()),
  );
}

export async function deleteLink(s: RtnlSession, name: string): Promise<void> {
  const link = await getLink(s, name);
  if (!link) return;
  try {
    await s.call('link.delete', name, () => s.socket.delLink({ index: link.index }, {}, s.requestOptions()));
  } catch (err) {
    if (isSysError(err, 'ENODEV')) return;
    throw err;
  }
}

