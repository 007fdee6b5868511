/**
 * What a network lock drops, kept: roam-hold bound to the lock's nflog group
 * inside the endpoint's namespace (see native/src/hold.c for the protocol).
 * If the agent dies, roam-hold sees its stdin close and exits; the packets
 * are then simply dropped, as the lock alone would have done.
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

export class PacketHold {
  private readonly chunks: Buffer[] = [];
  private readonly ended: Promise<number | null>;
  private stderr = '';

  private constructor(private readonly child: ReturnType<typeof spawnPacketHold>, readonly netns: string) {
    child.stdout.on('data', (d: Buffer) => this.chunks.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    child.stdin.on('error', () => undefined);
    this.ended = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** Binds nflog `group` in the netns at `netns`; resolves once packets are being kept. */
  static async start(netns: string, group: number, maxBytes: number): Promise<PacketHold> {
    const hold = new PacketHold(spawnPacketHold(netns, group, maxBytes), netns);
    const ready = await Promise.race([
      new Promise<boolean>((resolve) => {
        const check = () => {
          if (Buffer.concat(hold.chunks).subarray(0, 1).toString() === 'R') resolve(true);
          else hold.child.stdout.once('data', check);
        };
        check();
      }),
      hold.ended.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), READY_TIMEOUT_MS).unref()),
    ]);
    if (!ready) {
      hold.cancel();
      throw new SysError({ errno: 0, syscall: 'nflog_bind_group', op: 'hold.start', target: `${netns} group ${group}` }, { cause: new Error(hold.stderr.trim() || 'roam-hold did not report ready') });
    }
    hold.chunks.splice(0, hold.chunks.length, Buffer.concat(hold.chunks).subarray(1));
    return hold;
  }

  /** Everything kept so far, in arrival order; the hold ends. */
  async drain(): Promise<HeldPackets> {
    this.child.stdin.end('D');
    const code = await this.ended;
    if (code !== 0) throw new RoamError('SYSCALL_FAILED', `roam-hold in ${this.netns} failed (exit ${code}): ${this.stderr.trim()}`);
    return parseHoldOutput(Buffer.concat(this.chunks));
  }

  /** Ends the hold; what it kept is dropped. */
  cancel(): void {
    this.child.stdin.end();
    this.child.kill('SIGKILL');
  }
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
