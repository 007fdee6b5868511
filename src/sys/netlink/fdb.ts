/**
 * Forwarding-database verbs (what `bridge fdb` does), on AF_BRIDGE neighbors.
 *  - `self` entries live in the VXLAN device: MAC -> remote VTEP.
 *  - `master` entries live in the bridge: MAC -> bridge port.
 * The all-zero MAC with several `self` destinations is the flood list: each
 * peer is one entry, added with APPEND (the kernel keys those by dst too).
 *
 * State matters: on a bridge, NUD_PERMANENT marks a *local* address (frames
 * to it are delivered to the host, not forwarded), so `master` entries are
 * written NUD_NOARP ("static"); VXLAN `self` entries are NUD_PERMANENT.
 */
import { rt } from 'netlink';
import { isSysError } from '../../errors/roam-error.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { ZERO_MAC, formatMac, parseMac } from '../../net/mac.js';
import { ENSURE, NlFlags, type RtnlSession } from './session.js';

const AF_BRIDGE = 7;

export type FdbTable = 'self' | 'master';

export interface FdbEntry {
  /** the device the entry is attached to: the VXLAN device or a bridge port */
  ifindex: number;
  mac: string;
  table: FdbTable;
  /** remote VTEP, for `self` entries on a VXLAN device */
  dst: string | undefined;
  /** written by us in the state its table needs: static (master) or permanent (self) */
  pinned: boolean;
}

export function fdbKey(e: Pick<FdbEntry, 'ifindex' | 'mac' | 'table' | 'dst'>): string {
  return `${e.table}|${e.ifindex}|${e.mac}|${e.dst ?? ''}`;
}

function describe(e: Pick<FdbEntry, 'ifindex' | 'mac' | 'table' | 'dst'>, devName: string): string {
  return `${devName} ${e.mac}${e.dst ? ` -> ${e.dst}` : ''} (${e.table})`;
}

export async function listFdb(s: RtnlSession): Promise<FdbEntry[]> {
  const msgs = await s.call('fdb.list', 'all', () => s.socket.getNeighbors({ family: AF_BRIDGE }, undefined, s.requestOptions()));
  const out: FdbEntry[] = [];
  for (const m of msgs) {
    if (m.data.family !== AF_BRIDGE || !m.attrs.lladdr || m.attrs.lladdr.length !== 6) continue;
    out.push({
      ifindex: m.data.ifindex ?? 0,
      mac: formatMac(m.attrs.lladdr),
      table: m.data.flags?.master || m.attrs.master !== undefined ? 'master' : 'self',
      dst: m.attrs.dst ? formatIp(m.attrs.dst) : undefined,
      pinned: m.data.flags?.master || m.attrs.master !== undefined
        ? Boolean(m.data.state?.noarp) && !m.data.state?.permanent
        : Boolean(m.data.state?.permanent),
    });
  }
  return out;
}

function request(e: Pick<FdbEntry, 'ifindex' | 'mac' | 'table' | 'dst'>): { data: rt.Neighbor; attrs: rt.NeighborAttrs } {
  const data: rt.Neighbor = {
    family: AF_BRIDGE,
    ifindex: e.ifindex,
    state: e.table === 'master' ? { noarp: true } : { permanent: true },
    flags: e.table === 'master' ? { master: true } : { self: true },
  };
  const attrs: rt.NeighborAttrs = { lladdr: Buffer.from(parseMac(e.mac)) };
  if (e.dst) attrs.dst = Buffer.from(parseIp(e.dst));
  return { data, attrs };
}

/**
 * Creates or replaces the entry. Flood entries (all-zero MAC) are appended:
 * REPLACE would overwrite the one already there for another peer.
 */
export async function ensureFdb(s: RtnlSession, e: FdbEntry, devName: string): Promise<void> {
  const { data, attrs } = request(e);
  const flood = e.mac === ZERO_MAC;
  const flags = flood ? NlFlags.CREATE | NlFlags.APPEND : ENSURE;
  try {
    await s.call(`fdb.${flood ? 'append' : 'replace'}`, describe(e, devName), () => s.socket.newNeighbor(data, attrs, s.requestOptions(flags)));
  } catch (err) {
    if (flood && isSysError(err, 'EEXIST')) return;
    throw err;
  }
}

export async function deleteFdb(s: RtnlSession, e: FdbEntry, devName: string): Promise<void> {
  const { data, attrs } = request(e);
  try {
    await s.call('fdb.delete', describe(e, devName), () => s.socket.delNeighbor(data, attrs, s.requestOptions()));
  } catch (err) {
    if (isSysError(err, 'ENOENT') || isSysError(err, 'ENODEV')) return;
    throw err;
  }
}
