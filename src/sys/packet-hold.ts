/**
 * What a network lock drops, kept: roam-hold bound to the lock's nflog group
 * inside the endpoint's namespace (see native/src/hold.c for the protocol).
 * drain() takes what was kept so far and the hold goes on keeping; close()
 * ends it. If the agent dies, roam-hold sees its stdin close and exits; the
 * packets are then simply dropped, as the lock alone would have done.
 */
import { RoamError, SysError } from '../errors/roam-error.js';
import { spawnPacketHold } from './launch.js';

export interface HoldStats {
  kept: number;
  bytes: number;
  /** packets past the byte budget: dropped, left to the sender's retransmission */
  overBudget: number;
  /** packets the kernel logged but could not queue to roam-hold */
  lost: number;
  overruns: number;
}

export interface HeldPackets {
  packets: Buffer[];
  stats: HoldStats;
}

const READY_TIMEOUT_MS = 5000;
const DRAIN_TIMEOUT_MS = 5000;

export class PacketHold {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private exited = false;
  private stderr = '';

  private constructor(private readonly child: ReturnType<typeof spawnPacketHold>, readonly netns: string) {
    child.stdout.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.waiter?.();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    child.stdin.on('error', () => undefined);
    child.once('close', () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  /** Binds nflog `group` in the netns at `netns`; resolves once packets are being kept. */
  static async start(netns: string, group: number, maxBytes: number): Promise<PacketHold> {
    const hold = new PacketHold(spawnPacketHold(netns, group, maxBytes), netns);
    const ready = await hold.until(() => hold.buffered.length >= 1, READY_TIMEOUT_MS);
    if (!ready || hold.buffered[0] !== 0x52 /* R */) {
      hold.close();
      throw new SysError({ errno: 0, syscall: 'nflog_bind_group', op: 'hold.start', target: `${netns} group ${group}` }, { cause: new Error(hold.stderr.trim() || 'roam-hold did not report ready') });
    }
    hold.buffered = hold.buffered.subarray(1);
    return hold;
  }

  /** Everything kept since the last drain, in arrival order; the hold goes on keeping. */
  async drain(): Promise<HeldPackets> {
    if (this.exited) throw new RoamError('SYSCALL_FAILED', `roam-hold in ${this.netns} has ended: ${this.stderr.trim()}`);
    this.child.stdin.write('D');
    let parsed: { held: HeldPackets; length: number } | undefined;
    const done = await this.until(() => (parsed = tryParseHoldOutput(this.buffered)) !== undefined, DRAIN_TIMEOUT_MS);
    if (!done || !parsed) throw new RoamError('SYSCALL_FAILED', `roam-hold in ${this.netns} did not answer a drain: ${this.stderr.trim()}`);
    this.buffered = this.buffered.subarray(parsed.length);
    return parsed.held;
  }

  /** Ends the hold; what it kept and was not drained is dropped. */
  close(): void {
    this.child.stdin.end();
    setTimeout(() => {
      if (!this.exited) this.child.kill('SIGKILL');
    }, 1000).unref();
  }

  private async until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!check()) {
      if (this.exited || performance.now() > deadline) return check();
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, Math.max(1, deadline - performance.now())).unref();
      });
      this.waiter = undefined;
    }
    return true;
  }
}

/** A whole drain answer at the start of `out`, and its length; undefined while it is incomplete. */
function tryParseHoldOutput(out: Buffer): { held: HeldPackets; length: number } | undefined {
  let off = 0;
  for (;;) {
    if (off + 4 > out.length) return undefined;
    const len = out.readUInt32LE(off);
    off += 4;
    if (len === 0) break;
    off += len;
  }
  if (off + 20 > out.length) return undefined;
  return { held: parseHoldOutput(out.subarray(0, off + 20)), length: off + 20 };
}

export function parseHoldOutput(out: Buffer): HeldPackets {
  const packets: Buffer[] = [];
  let off = 0;
  for (;;) {
    if (off + 4 > out.length) throw new RoamError('SYSCALL_FAILED', 'roam-hold output ends before its terminator');
    const len = out.readUInt32LE(off);
    off += 4;
    if (len === 0) break;
    if (off + len > out.length) throw new RoamError('SYSCALL_FAILED', 'roam-hold output ends inside a packet');
    packets.push(out.subarray(off, off + len));
    off += len;
  }
  if (off + 20 > out.length) throw new RoamError('SYSCALL_FAILED', 'roam-hold output lacks its counters');
  const n = (i: number) => out.readUInt32LE(off + 4 * i);
  return { packets, stats: { kept: n(0), bytes: n(1), overBudget: n(2), lost: n(3), overruns: n(4) } };
}

/** The inverse of parseHoldOutput: how kept packets travel to the node that delivers them. */
export function serializeHeld(h: HeldPackets): Buffer {
  const parts: Buffer[] = [];
  for (const p of h.packets) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(p.length);
    parts.push(len, p);
  }
  const tail = Buffer.alloc(24);
  [0, h.stats.kept, h.stats.bytes, h.stats.overBudget, h.stats.lost, h.stats.overruns].forEach((v, i) => tail.writeUInt32LE(Math.min(v, 0xffffffff), 4 * i));
  parts.push(tail);
  return Buffer.concat(parts);
}
