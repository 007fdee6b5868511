/**
 * nftables, only through libnftables in the addon (never the nft binary).
 * The network lock of a prepared endpoint namespace lives here: a table that
 * drops every IP packet in and out, so the namespace can neither answer nor
 * reset anyone until the agent lifts it.
 */
import { RoamError, SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';

export const LOCK_TABLE = 'roam_lock';

export function nftRun(netns: string, op: string, commands: string): string {
  try {
    return native().nftRun(netns, commands);
  } catch (err) {
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op, target: netns }, { cause: err });
    const message = (err as { nftMessage?: string }).nftMessage ?? String(err);
    throw new RoamError('SYSCALL_FAILED', `${op} ${netns}: nft refused: ${message.trim()}`, { netns, nft: message });
  }
}

/** Drops all IP traffic of the namespace, both ways (idempotent). */
export function lockNetns(netns: string): void {
  nftRun(netns, 'nft.lock', [
    `add table inet ${LOCK_TABLE}`,
    `add chain inet ${LOCK_TABLE} in { type filter hook input priority -300 ; policy drop ; }`,
    `add chain inet ${LOCK_TABLE} out { type filter hook output priority -300 ; policy drop ; }`,
  ].join('\n'));
}

export function isNetnsLocked(netns: string): boolean {
  return listTables(netns).includes(`inet ${LOCK_TABLE}`);
}

/** Lifts the lock; already lifted counts as success. */
export function unlockNetns(netns: string): void {
  if (isNetnsLocked(netns)) nftRun(netns, 'nft.unlock', `delete table inet ${LOCK_TABLE}`);
}

export function listTables(netns: string): string[] {
  return nftRun(netns, 'nft.list', 'list tables')
    .split('\n')
    .map((l) => l.trim().replace(/^table /, ''))
    .filter((l) => l !== '');
}

/**
 * CRIU's own lock tables ("CRIU-<id>"). With an external network namespace
 * CRIU leaves the dump-time one behind; whoever owns the namespace removes it.
 */
export function removeCriuLockTables(netns: string): string[] {
  const criu = listTables(netns).filter((t) => /^inet CRIU-/.test(t));
  for (const t of criu) nftRun(netns, 'nft.delete', `delete table ${t}`);
  return criu;
}
