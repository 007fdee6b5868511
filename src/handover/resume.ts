/**
 * Bringing a restored service back on the network, in the order that loses
 * nothing: what its peers sent during the freeze is delivered first, then
 * its sockets may answer (the lock's output half opens) and each connection
 * is kicked, then the lock goes, and only then does the tree run again (it
 * was restored stopped, so it wrote nothing into a locked network).
 *
 * With the kick, the acknowledgements the sockets send while held packets
 * are delivered stay behind the lock: each connection's challenge ACK
 * carries the same (cumulative, with SACK) information once, which saves a
 * trip through the overlay per delivered packet inside the frozen window.
 * Without the kick, the output opens first so that those ACKs go out.
 */
import { openLockOutput, unlockNetns } from '../sys/nft.js';
import { continueTree } from '../sys/proc.js';
import { kick, kicks, replay, startCounts, type DeliverSpec, type HandoverCounts } from './deliver.js';

export interface ResumeSpec extends DeliverSpec {
  /** root of the restored tree */
  pid: number;
  /** the tree was restored stopped and must be continued */
  stopped: boolean;
}

export async function resumeService(spec: ResumeSpec): Promise<HandoverCounts> {
  const counts = startCounts(spec);
  const answersStayBehind = kicks(spec.mechanism);
  if (!answersStayBehind) openLockOutput(spec.netns);
  replay(spec, counts);
  if (answersStayBehind) openLockOutput(spec.netns);
  await kick(spec, counts);
  unlockNetns(spec.netns);
  if (spec.stopped) continueTree(spec.pid);
  return counts;
}
