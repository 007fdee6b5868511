/**
 * Keeping what a lock drops, for one side of one migration. A hold that
 * cannot start costs the replay, not the migration: the lock then only
 * drops, and TCP's retransmission covers it, as it would without roam.
 */
import { describeError } from '../errors/roam-error.js';
import { HOLD_GROUP } from '../sys/nft.js';
import { PacketHold, type HeldPackets } from '../sys/packet-hold.js';

/** What a lock may keep at once, per side of a migration. */
export const HOLD_BUDGET_BYTES = 64 * 1024 * 1024;

export async function holdWhatTheLockDrops(netns: string, warn: (message: string) => void): Promise<PacketHold | undefined> {
  try {
    return await PacketHold.start(netns, HOLD_GROUP, HOLD_BUDGET_BYTES);
  } catch (err) {
    warn(`packets dropped by the lock in ${netns} will not be kept: ${describeError(err)}`);
    return undefined;
  }
}

/** What a hold kept so far; a hold that cannot answer costs its packets, not the migration. */
export async function drainWhatWasKept(hold: PacketHold | undefined, warn: (message: string) => void): Promise<HeldPackets | undefined> {
  if (!hold) return undefined;
  try {
    return await hold.drain();
  } catch (err) {
    warn(`the packets kept in ${hold.netns} are lost: ${describeError(err)}`);
    return undefined;
  }
}
