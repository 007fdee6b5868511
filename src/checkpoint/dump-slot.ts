import { join } from 'node:path';
import { hostLock, LOCK_DIR } from '../sys/host-lock.js';

const DUMP_LOCK = join(LOCK_DIR, 'criu-dump.lock');

/**
 * One dump at a time on this host: CRIU's parasite mounts a scratch /proc at
 * "proc.crtools" in the dumped process's working directory, and two dumps of
 * processes that share one (endpoints do) collide on it. Resolves with the
 * slot's release.
 */
export function dumpSlot(): Promise<() => void> {
  return hostLock(DUMP_LOCK);
}
