/** Traffic-control verbs: a token-bucket rate limit on a link (`tc qdisc replace ... tbf`). */
import { isSysError } from '../../errors/roam-error.js';
import { encodeAttrs, u32, u64 } from './attrs.js';
import { ENSURE, type RtnlSession } from './session.js';
import type { LinkInfo } from './links.js';

const TC_H_ROOT = 0xffffffff;
const TCA_TBF_PARMS = 1;
const TCA_TBF_RATE64 = 4;
const TCA_TBF_BURST = 6;
const TC_LINKLAYER_ETHERNET = 1;
const ROOT_HANDLE = (0x8001 << 16) >>> 0;

export interface RateLimit {
  bitsPerSecond: bigint;
}

/** struct tc_tbf_qopt: rate, peakrate (tc_ratespec, 12 bytes each), limit, buffer, mtu. */
function tbfParms(bytesPerSecond: bigint, limitBytes: number): Buffer {
  const b = Buffer.alloc(36);
  // tc_ratespec: cell_log u8, linklayer u8, overhead u16, cell_align s16, mpu u16, rate u32
  b.writeUInt8(TC_LINKLAYER_ETHERNET, 1);
  b.writeUInt32LE(bytesPerSecond > 0xffffffffn ? 0xffffffff : Number(bytesPerSecond), 8);
  b.writeUInt32LE(limitBytes, 24);
  return b;
}

export async function ensureRateLimit(s: RtnlSession, link: LinkInfo, limit: RateLimit): Promise<void> {
  const bytesPerSecond = limit.bitsPerSecond / 8n;
  // A burst of ~4 ms of traffic (at least 64 KiB) keeps TSO-sized bursts flowing; a queue of ~50 ms.
  const burst = Number(bytesPerSecond / 250n > 65536n ? bytesPerSecond / 250n : 65536n);
  const queue = burst + Number(bytesPerSecond / 20n);
  const options = encodeAttrs([
    [TCA_TBF_PARMS, tbfParms(bytesPerSecond, queue)],
    [TCA_TBF_RATE64, u64(bytesPerSecond)],
    [TCA_TBF_BURST, u32(burst)],
  ]);
  await s.call('qdisc.replace', `${link.name} tbf ${limit.bitsPerSecond} bit/s`, () =>
    s.socket.newQdisc({ family: 0, ifindex: link.index, handle: ROOT_HANDLE, parent: TC_H_ROOT }, { kind: 'tbf', options }, s.requestOptions(ENSURE)),
  );
}

export async function deleteRootQdisc(s: RtnlSession, link: LinkInfo): Promise<void> {
  try {
    await s.call('qdisc.delete', link.name, () => s.socket.delQdisc({ family: 0, ifindex: link.index, handle: 0, parent: TC_H_ROOT }, {}, s.requestOptions()));
  } catch (err) {
    if (isSysError(err, 'ENOENT') || isSysError(err, 'EINVAL')) return;
    throw err;
  }
}

/** Parses "1gbit", "100mbit", "500kbit", "2000000" (bit/s). */
export function parseRate(text: string): bigint | undefined {
  const m = /^(\d+)(k|m|g)?(bit|bps)?$/i.exec(text.trim());
  if (!m) return undefined;
  const mult = { k: 1000n, m: 1000_000n, g: 1000_000_000n }[(m[2] ?? '').toLowerCase() as 'k' | 'm' | 'g'] ?? 1n;
  const bits = BigInt(m[1]!) * mult * ((m[3] ?? '').toLowerCase() === 'bps' ? 8n : 1n);
  return bits > 0n ? bits : undefined;
}
