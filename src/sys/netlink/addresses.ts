/** Interface address verbs. */
import { rt } from 'netlink';
import { isSysError } from '../../errors/roam-error.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { ENSURE, type RtnlSession } from './session.js';
import type { LinkInfo } from './links.js';

const AF_INET = 2;
const AF_INET6 = 10;

export interface InterfaceAddress {
  address: string;
  prefixLength: number;
}

export async function listAddresses(s: RtnlSession, link: LinkInfo): Promise<InterfaceAddress[]> {
  const msgs = await s.call('address.list', link.name, () => s.socket.getAddresses(undefined, undefined, s.requestOptions()));
  return msgs
    .filter((m) => m.data.index === link.index && (m.attrs.local ?? m.attrs.address))
    .map((m) => ({ address: formatIp((m.attrs.local ?? m.attrs.address)!), prefixLength: m.data.prefixlen ?? 0 }));
}

/** Adds the address, or leaves it as it is when already there. */
export async function ensureAddress(s: RtnlSession, link: LinkInfo, addr: InterfaceAddress): Promise<void> {
  const bytes = Buffer.from(parseIp(addr.address));
  const family = bytes.length === 4 ? AF_INET : AF_INET6;
  const data: rt.Address = { family, prefixlen: addr.prefixLength, index: link.index };
  const attrs: rt.AddressAttrs = bytes.length === 4 ? { local: bytes, address: bytes } : { address: bytes };
  if (family === AF_INET6) data.flags = { nodad: true };
  try {
    await s.call('address.ensure', `${link.name} ${addr.address}/${addr.prefixLength}`, () => s.socket.newAddress(data, attrs, s.requestOptions(ENSURE)));
  } catch (err) {
    if (isSysError(err, 'EEXIST')) return;
    throw err;
  }
}
