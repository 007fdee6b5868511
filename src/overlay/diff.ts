/**
 * Desired vs actual FDB, as two ordered lists. Adds go VXLAN `self` entries
 * first (the tunnel knows the VTEP before the bridge sends it anything), then
 * bridge `master` entries; removals go the other way round.
 */
import type { FdbEntry } from '../sys/netlink/fdb.js';
import { fdbKey } from '../sys/netlink/fdb.js';

export interface FdbChange {
  entry: FdbEntry;
  deviceName: string;
}

export interface FdbPlan {
  add: FdbChange[];
  remove: FdbChange[];
}

const tableOrder = { self: 0, master: 1 } as const;

export function diffFdb(desired: readonly FdbChange[], actual: readonly FdbChange[]): FdbPlan {
  const actualByKey = new Map(actual.map((c) => [fdbKey(c.entry), c]));
  const desiredKeys = new Set(desired.map((c) => fdbKey(c.entry)));
  const add = desired.filter((c) => {
    const have = actualByKey.get(fdbKey(c.entry));
    return !have || !have.entry.pinned;
  });
  const remove = actual.filter((c) => !desiredKeys.has(fdbKey(c.entry)));
  add.sort((a, b) => tableOrder[a.entry.table] - tableOrder[b.entry.table]);
  remove.sort((a, b) => tableOrder[b.entry.table] - tableOrder[a.entry.table]);
  return { add, remove };
}
