/**
 * Sending whole IPv4 packets, headers included, from inside a network
 * namespace. Packets addressed to the namespace's own address loop back and
 * are received as if they had come in from the network: that is how held
 * packets are delivered again. Each packet carries `mark`, so a lock that
 * lets that mark through passes them.
 *
 * The addon sends them in batches (sendmmsg). The raw-socket package was
 * measured first: it sends one packet per event-loop turn, about 16 us each
 * here, which put 70 ms into the frozen window for 4400 held packets.
 */
import { SysError, errnoNameOf } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';

export interface RawSendResult {
  sent: number;
  failed: number;
  /** the first refusal, as errno name (EPERM, EMSGSIZE, ...) */
  firstError?: string;
}

export function sendIpv4Packets(netns: string, packets: readonly Buffer[], mark: number): RawSendResult {
  if (packets.length === 0) return { sent: 0, failed: 0 };
  try {
    const r = native().rawSendIpv4(netns, packets, mark);
    return { sent: r.sent, failed: r.failed, ...(r.errno ? { firstError: errnoNameOf(r.errno) } : {}) };
  } catch (err) {
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op: 'raw.send', target: netns }, { cause: err });
    throw err;
  }
}
