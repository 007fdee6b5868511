/**
 * What the clients of a moved service felt: for each restored connection,
 * how long after the unlock the peer's next data arrived, read from the
 * kernel's tcp_info (last_data_recv) of the restored socket. A peer that
 * sends nothing within the window was idle, not stalled; it is counted
 * apart. The stall of a connection is the frozen window plus that delay.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import type { ResumeMeasurement } from '../records/handover.js';

export async function measureResume(netns: string, unlockedAt: number, windowMs = 3000, pollMs = 5): Promise<ResumeMeasurement> {
  const resumed = new Map<string, number>();
  let all = new Set<string>();
  while (performance.now() - unlockedAt < windowMs) {
    const sinceUnlock = performance.now() - unlockedAt;
    const conns = await listTcpConnections(netns);
    const keyOf = (c: (typeof conns)[number]) => `${c.local.ip}:${c.local.port}>${c.remote.ip}:${c.remote.port}`;
    all = new Set([...all, ...conns.map(keyOf)]);
    for (const c of conns) {
      const key = keyOf(c);
      // Data came in after the unlock: it arrived lastDataRecvMs ago.
      if (!resumed.has(key) && c.lastDataRecvMs < sinceUnlock) resumed.set(key, Math.max(0, sinceUnlock - c.lastDataRecvMs));
    }
    if (all.size > 0 && resumed.size === all.size) break;
    await sleep(pollMs);
  }
  return { resumedAfterMs: [...resumed.values()], idle: all.size - resumed.size };
}
