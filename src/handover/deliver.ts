/**
 * TCP continuity at the moment a moved service comes back, on the node it
 * now runs on (resume.ts says in which order):
 *
 *  - replay: the packets its peers sent while it was frozen, kept by the
 *    locks at the source and here, are delivered to it in arrival order,
 *    exactly as they were sent (checksums completed where the sender had
 *    left that to offload; anything that does not verify is refused). So
 *    nothing the peers sent during the freeze waits for a retransmission.
 *  - kick: each restored connection gets a SYN probe from its peer's
 *    address; the kernel discards it and answers the peer with a challenge
 *    ACK built from the connection's real state (sequence, acknowledgement,
 *    window, timestamps, SACK). A peer whose data was received but whose
 *    ACK was lost in the freeze stops waiting for its backed-off timer.
 *
 * Everything sent on the wire is built by a kernel from true state: replayed
 * packets are the peers' own, acknowledgements are the restored sockets'.
 * What cannot be delivered exactly is not delivered, and is counted; TCP's
 * own retransmission covers it, as it would without any of this.
 */
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { DELIVERY_MARK } from '../sys/nft.js';
import type { HeldPackets } from '../sys/packet-hold.js';
import { sendIpv4Packets } from '../sys/raw-ip.js';
import { describeError } from '../errors/roam-error.js';
import { parseIp } from '../net/ip.js';
import { checkHeldPacket, synProbe } from './packets.js';
import type { HandoverCounts, HandoverMechanism } from '../records/handover.js';

export const replays = (m: HandoverMechanism): boolean => m === 'full' || m === 'replay';
export const kicks = (m: HandoverMechanism): boolean => m === 'full' || m === 'kick';

export interface DeliverSpec {
  netns: string;
  /** the endpoint's address: only packets to it are delivered */
  ip: string;
  mechanism: HandoverMechanism;
  /** connections the dump carried: any not kicked fall back */
  connections: number;
}

/** What one handover did so far: the counts it reports, and the connections it delivered to. */
export interface HandoverProgress {
  counts: HandoverCounts;
  flows: Set<string>;
}

export function startHandover(spec: DeliverSpec): HandoverProgress {
  const counts: HandoverCounts = {
    mechanism: spec.mechanism, packets_held: 0, packets_replayed: 0, packets_refused: 0, packets_not_held: 0,
    connections_replayed: 0, connections_kicked: 0, connections_fallback: kicks(spec.mechanism) ? 0 : spec.connections,
    replay_ms: 0, kick_ms: 0, notes: [],
  };
  return { counts, flows: new Set() };
}

const ms = (x: number) => Math.round(x * 100) / 100;

/** Delivers what the locks kept, batches oldest first (replaying mechanisms only; the others only count). */
export function replay(spec: DeliverSpec, progress: HandoverProgress, batches: HeldPackets[]): void {
  const { counts, flows } = progress;
  for (const h of batches) {
    counts.packets_held += h.stats.kept;
    counts.packets_not_held += h.stats.overBudget + h.stats.lost;
    if (h.stats.overruns > 0) counts.notes.push(`the packet keeper overran ${h.stats.overruns} times`);
  }
  if (!replays(spec.mechanism)) return;
  const started = performance.now();
  const to = parseIp(spec.ip);
  const deliver: Buffer[] = [];
  const batchFlows = new Set<string>();
  const refused = new Map<string, number>();
  for (const raw of batches.flatMap((h) => h.packets)) {
    const c = checkHeldPacket(raw, to);
    if (!c.ok) {
      refused.set(c.reason, (refused.get(c.reason) ?? 0) + 1);
      continue;
    }
    deliver.push(c.packet);
    batchFlows.add(c.flow);
  }
  for (const [reason, n] of refused) counts.notes.push(`${n} held packets refused: ${reason}`);
  counts.packets_refused += [...refused.values()].reduce((a, b) => a + b, 0);
  try {
    const r = sendIpv4Packets(spec.netns, deliver, DELIVERY_MARK);
    counts.packets_replayed += r.sent;
    counts.packets_refused += r.failed;
    if (r.firstError) counts.notes.push(`${r.failed} held packets not delivered: ${r.firstError}`);
    if (r.sent > 0) for (const f of batchFlows) flows.add(f);
    counts.connections_replayed = flows.size;
  } catch (err) {
    counts.packets_refused += deliver.length;
    counts.notes.push(`replay failed: ${describeError(err)}`);
  }
  counts.replay_ms = ms(counts.replay_ms + performance.now() - started);
}

/** Kicks every restored connection (kicking mechanisms only); the ones it cannot reach fall back. */
export async function kick(spec: DeliverSpec, { counts }: HandoverProgress): Promise<void> {
  if (!kicks(spec.mechanism)) return;
  const started = performance.now();
  try {
    const conns = await listTcpConnections(spec.netns);
    const probes = conns.filter((c) => c.local.ip === spec.ip).map((c) => synProbe(c.remote, c.local));
    const r = sendIpv4Packets(spec.netns, probes, 0);
    counts.connections_kicked = r.sent;
    if (r.firstError) counts.notes.push(`${r.failed} kicks not sent: ${r.firstError}`);
  } catch (err) {
    counts.notes.push(`kick failed: ${describeError(err)}`);
  }
  counts.connections_fallback = Math.max(0, spec.connections - counts.connections_kicked);
  counts.kick_ms = ms(performance.now() - started);
}
