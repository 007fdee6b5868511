/**
 * nftables, only through libnftables in the addon (never the nft binary).
 * The network lock of an endpoint namespace lives here: a table that drops
 * every IP packet in and out, so the namespace can neither answer nor reset
 * anyone until the agent lifts it. The same lock serves both ends of a
 * migration: the source's from the moment CRIU has frozen the tree, the
 * target's from before its interface exists. Two holes, both for the
 * handover: incoming TCP can be logged to an nflog group as it is dropped
 * (kept by roam-hold, delivered later), and packets carrying DELIVERY_MARK
 * (the agent delivering those again) pass.
 */
import { RoamError, SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';

export const LOCK_TABLE = 'roam_lock';
/** skb mark of packets the agent itself delivers through a lock ("roam") */
export const DELIVERY_MARK = 0x726f616d;

export function nftRun(netns: string, op: string, commands: string): string {
  try {
    return native().nftRun(netns, commands);
  } catch (err) {
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op, target: netns }, { cause: err });
    const message = (err as { nftMessage?: string }).nftMessage ?? String(err);
    throw new RoamError('SYSCALL_FAILED', `${op} ${netns}: nft refused: ${message.trim()}`, { netns, nft: message });
  }
}

/**
 * The nflog group the lock logs dropped incoming TCP to. With nobody bound to
 * it (no migration keeping packets) logging costs a lookup and nothing else.
 */
export const HOLD_GROUP = 4711;

/**
 * Drops all IP traffic of the namespace, both ways. One transaction, and
 * idempotent without a listing first (flushing an existing lock before
 * writing it again): at the source it runs inside the frozen window.
 */
export function lockNetns(netns: string): void {
  nftRun(netns, 'nft.lock', [
    `add table inet ${LOCK_TABLE}`,
    `flush table inet ${LOCK_TABLE}`,
    `add chain inet ${LOCK_TABLE} in { type filter hook input priority -300 ; policy drop ; }`,
    `add chain inet ${LOCK_TABLE} out { type filter hook output priority -300 ; policy drop ; }`,
    `add rule inet ${LOCK_TABLE} in meta mark ${DELIVERY_MARK} accept`,
    `add rule inet ${LOCK_TABLE} out meta mark ${DELIVERY_MARK} accept`,
    `add rule inet ${LOCK_TABLE} in meta l4proto tcp log group ${HOLD_GROUP}`,
  ].join('\n'));
}

export function isNetnsLocked(netns: string): boolean {
  return listTables(netns).includes(`inet ${LOCK_TABLE}`);
}

/**
 * Lets the namespace send again while it still receives only what the agent
 * delivers: the first half of lifting the lock, so that what the restored
 * sockets answer to delivered packets reaches the peers.
 */
export function openLockOutput(netns: string): void {
  nftRun(netns, 'nft.open-output', `flush chain inet ${LOCK_TABLE} out\ndelete chain inet ${LOCK_TABLE} out`);
}

/** Lifts the lock; already lifted counts as success (adding the table first makes the delete always apply). */
export function unlockNetns(netns: string): void {
  nftRun(netns, 'nft.unlock', `add table inet ${LOCK_TABLE}\ndelete table inet ${LOCK_TABLE}`);
}

export function listTables(netns: string): string[] {
  return nftRun(netns, 'nft.list', 'list tables')
    .split('\n')
    .map((l) => l.trim().replace(/^table /, ''))
    .filter((l) => l !== '');
}
