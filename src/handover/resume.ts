/**
 * Bringing a restored service back on the network, in the order that loses
 * nothing. The tree was restored stopped, so it wrote nothing into the
 * locked network; its namespace is still locked both ways.
 *
 *  1. Deliver what the locks kept (the source's, then the target's), before
 *     any live packet can overtake it: the lock still drops everything but
 *     the delivered packets. The restored sockets' ACKs stay behind the lock:
 *     a client that heard one now would answer into the lock, and that
 *     answer would be lost. (With `replay` alone there is no kick to say it
 *     later, so the output opens first.) Whatever reached the lock during the
 *     delivery is drained from the hold and delivered too.
 *  2. Lift the lock.
 *  3. Kick every connection: each client hears, once, a challenge ACK with
 *     the restored socket's state after the delivery, and can answer into an
 *     open network.
 *  4. Continue the tree.
 */
import type { PacketHold } from '../sys/packet-hold.js';
import { openLockOutput, unlockNetns } from '../sys/nft.js';
import { continueTree } from '../sys/proc.js';
import { describeError } from '../errors/roam-error.js';
import type { HeldPackets } from '../sys/packet-hold.js';
import type { HandoverCounts } from '../records/handover.js';
import { kick, kicks, replay, replays, startHandover, type DeliverSpec } from './deliver.js';

export interface ResumeSpec extends DeliverSpec {
  /** what the locks kept and was drained already, oldest first (the source's before the target's) */
  held: HeldPackets[];
  /** the hold still running here, if any: drained once more if clients can answer during the delivery, then closed */
  hold?: PacketHold | undefined;
  /** root of the restored tree */
  pid: number;
  /** the tree was restored stopped and must be continued */
  stopped: boolean;
}

export async function resumeService(spec: ResumeSpec): Promise<HandoverCounts> {
  const progress = startHandover(spec);
  try {
    const answersGoOut = replays(spec.mechanism) && !kicks(spec.mechanism);
    if (answersGoOut) openLockOutput(spec.netns);
    replay(spec, progress, spec.held);
    // What reached the lock here during the delivery: clients answering (replay alone), or retransmitting.
    if (replays(spec.mechanism) && spec.hold) {
      try {
        replay(spec, progress, [await spec.hold.drain()]);
      } catch (err) {
        progress.counts.notes.push(`what clients answered during the delivery is lost: ${describeError(err)}`);
      }
    }
  } finally {
    spec.hold?.close();
  }
  unlockNetns(spec.netns);
  await kick(spec, progress);
  if (spec.stopped) continueTree(spec.pid);
  return progress.counts;
}
