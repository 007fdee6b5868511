/**
 * TCP state of the sockets in a network namespace, through sock_diag
 * (NETLINK_SOCK_DIAG, inet_diag with INET_DIAG_INFO = struct tcp_info): what
 * `ss -ti` shows, read without a program. Used to measure, not to guess,
 * what the peers of restored connections went through.
 */
import { createNetlink, type NetlinkMessage } from 'netlink';
import { SysError, errnoOf } from '../../errors/roam-error.js';
import { formatIp } from '../../net/ip.js';
import { inNetns } from '../netns/netns.js';

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_DUMP = 0x300;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const TCP_ESTABLISHED = 1;
const INET_DIAG_INFO = 2;
const INET_DIAG_MSG_LENGTH = 72;
const TCPI_OPT_TIMESTAMPS = 1;
const TCPI_OPT_SACK = 2;

export interface SocketAddress {
  ip: string;
  port: number;
}

export interface TcpConnection {
  local: SocketAddress;
  remote: SocketAddress;
  /** kernel-reported, milliseconds since the last data segment arrived from the peer */
  lastDataRecvMs: number;
  lastDataSentMs: number;
  rtoMs: number;
  /** tcpi_rtt: the smoothed round-trip time */
  rttMs: number;
  retransmits: number;
  totalRetrans: number;
  /** tcpi_options: negotiated timestamps and SACK */
  timestamps: boolean;
  sack: boolean;
  /** tcpi_bytes_acked / tcpi_bytes_received (0 on kernels too old to say) */
  bytesAcked: number;
  bytesReceived: number;
}

function request(family: number): Buffer {
  const b = Buffer.alloc(56); // struct inet_diag_req_v2
  b.writeUInt8(family, 0);
  b.writeUInt8(IPPROTO_TCP, 1);
  b.writeUInt8(1 << (INET_DIAG_INFO - 1), 2);
  b.writeUInt32LE(1 << TCP_ESTABLISHED, 4);
  return b;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** A dual-stack socket's IPv4-mapped address is given as the IPv4 it is on the wire. */
function endpoint(family: number, id: Buffer, portOffset: number, addrOffset: number): SocketAddress {
  const port = id.readUInt16BE(portOffset);
  const raw = id.subarray(addrOffset, addrOffset + (family === AF_INET ? 4 : 16));
  const v4mapped = family === AF_INET6 && raw.subarray(0, 12).equals(V4_MAPPED_PREFIX);
  return { ip: formatIp(v4mapped ? raw.subarray(12) : raw), port };
}

function parse(msg: NetlinkMessage): TcpConnection | undefined {
  const d = msg.data;
  if (msg.type !== SOCK_DIAG_BY_FAMILY || d.length < INET_DIAG_MSG_LENGTH) return undefined;
  const family = d.readUInt8(0);
  const id = d.subarray(4, 52); // struct inet_diag_sockid
  let info: Buffer | undefined;
  for (let off = INET_DIAG_MSG_LENGTH; off + 4 <= d.length; ) {
    const len = d.readUInt16LE(off);
    const type = d.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4) break;
    if (type === INET_DIAG_INFO) info = d.subarray(off + 4, off + len);
    off += (len + 3) & ~3;
  }
  if (!info || info.length < 104) return undefined;
  return {
    local: endpoint(family, id, 0, 4),
    remote: endpoint(family, id, 2, 20),
    retransmits: info.readUInt8(2),
    rtoMs: info.readUInt32LE(8) / 1000,
    rttMs: info.readUInt32LE(68) / 1000,
    lastDataSentMs: info.readUInt32LE(44),
    lastDataRecvMs: info.readUInt32LE(52),
    totalRetrans: info.readUInt32LE(100),
    timestamps: (info.readUInt8(5) & TCPI_OPT_TIMESTAMPS) !== 0,
    sack: (info.readUInt8(5) & TCPI_OPT_SACK) !== 0,
    bytesAcked: info.length >= 136 ? Number(info.readBigUInt64LE(120)) : 0,
    bytesReceived: info.length >= 136 ? Number(info.readBigUInt64LE(128)) : 0,
  };
}

/** Established TCP connections of the namespace at `netns`, with their tcp_info. */
export async function listTcpConnections(netns: string): Promise<TcpConnection[]> {
  const socket = inNetns(netns, () => createNetlink(NETLINK_SOCK_DIAG));
  try {
    const out: TcpConnection[] = [];
    for (const family of [AF_INET, AF_INET6]) {
      let msgs: NetlinkMessage[];
      try {
        [msgs] = await socket.request(SOCK_DIAG_BY_FAMILY, request(family), { flags: NLM_F_DUMP, timeout: 5000 });
      } catch (err) {
        const m = /Request rejected: (E[A-Z0-9]+)/.exec((err as Error).message);
        if (m?.[1] === 'ENOENT' && family === AF_INET6) continue;
        throw new SysError({ errno: m ? (errnoOf(m[1]!) ?? 0) : 0, syscall: 'sock_diag', op: 'tcp.list', target: netns }, { cause: err });
      }
      for (const msg of msgs) {
        const c = parse(msg);
        if (c) out.push(c);
      }
    }
    return out;
  } finally {
    socket.close();
  }
}
