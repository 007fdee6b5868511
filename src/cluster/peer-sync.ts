/**
 * Keeps the location table converged across agents: on every local change,
 * and every `intervalMs` anyway, this agent announces its own endpoints to
 * each peer; the answer carries the peer's own announcement and the peers it
 * knows, so a node that joins late learns everyone from anyone it can reach.
 */
import { describeError, RoamError } from '../errors/roam-error.js';
import type { EventBus, PeerRefusal } from '../events/bus.js';
import { formatIp, isIpAddress, parseIp } from '../net/ip.js';
import type { AnnounceResponse, NodeAnnouncement } from '../records/announcement.js';
import type { LocationTable } from './locations.js';
import { Rounds } from './rounds.js';

export interface PeerTransport {
  announce(address: string, mine: NodeAnnouncement): Promise<AnnounceResponse>;
}

export class PeerSync {
  private timer: NodeJS.Timeout | undefined;
  /** the last refusal of each peer's answer, said once until it changes */
  private readonly answerRefusals = new Map<string, string>();
  /** names other peers' lists put at a known node's address, said once each */
  private readonly aliasesSaid = new Set<string>();
  private readonly rounds = new Rounds(() => this.pushRound());

  constructor(
    private readonly table: LocationTable,
    private readonly transport: PeerTransport,
    private readonly intervalMs: number,
    private readonly events: EventBus,
    /** false where membership has another authority (Kubernetes' Node objects): peers' answers then teach no new peer */
    private readonly learnPeers = true,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pushAll(), this.intervalMs);
    this.timer.unref();
    void this.pushAll();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * Announces to every known peer now. Overlapping calls coalesce: a call
   * made during a round gets a promise for the round after it, so when it
   * resolves, what the caller changed has been offered to every peer.
   */
  pushAll(): Promise<void> {
    return this.rounds.run();
  }

  private async pushRound(): Promise<void> {
    await Promise.all(this.table.peers().map((p) => this.exchange(p.node, p.address)));
  }

  /** pushAll, but waits at most `ms`: answers to clients must not hang on a dead peer. */
  async publish(ms: number): Promise<void> {
    await Promise.race([this.pushAll(), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
  }

  /** One exchange with one peer, now. */
  async exchangeWith(node: string): Promise<void> {
    const peer = this.table.node(node);
    if (peer && node !== this.table.announcement().node) await this.exchange(node, peer.address);
  }

  private async exchange(node: string, address: string): Promise<void> {
    const started = performance.now();
    try {
      const answer = await this.transport.announce(address, this.table.announcement());
      // With TLS, whoever answered holds the certificate of the address we called: it speaks for the node we
      // called there, and for no other node or address. Its list of peers only introduces nodes not known yet.
      const mismatch = answerRefusal(node, address, answer.self);
      const ahead = mismatch === undefined ? this.table.seqRefusal(answer.self) : undefined;
      if (mismatch === undefined && ahead === undefined) this.table.merge(answer.self);
      this.noteAnswer(node, address, mismatch !== undefined ? { reason: 'answer-mismatch', message: mismatch } : ahead !== undefined ? { reason: 'seq-ahead', message: ahead } : undefined);
      for (const p of answer.peers) this.learnPeer(p.node, p.address, node);
      this.events.emit('peer.sync', { node, ok: true, durationMs: performance.now() - started });
    } catch (err) {
      const wasReachable = this.table.node(node)?.reachable;
      this.table.markHeard(node, false);
      if (wasReachable) this.events.warn(`peer ${node} (${address}) unreachable: ${describeError(err)}`);
      this.events.emit('peer.sync', { node, ok: false, durationMs: performance.now() - started });
    }
  }

  /** Says an answer refused (once until it changes, since exchanges repeat every interval) and counts it. */
  private noteAnswer(node: string, address: string, refusal: { reason: PeerRefusal; message: string } | undefined): void {
    if (refusal === undefined) {
      this.answerRefusals.delete(node);
      return;
    }
    this.events.emit('peer.refused', { peer: node, from: address, reason: refusal.reason });
    if (this.answerRefusals.get(node) !== refusal.message) this.events.warn(`answer of peer ${node} (${address}) refused: ${refusal.message}`);
    this.answerRefusals.set(node, refusal.message);
  }

  /**
   * Handles an announcement a peer sent us; returns our answer. With TLS the
   * route has already checked that the sender's certificate names `a.node`
   * and `a.address` (peer/identity.ts); a sequence from too far in the future
   * is refused whoever sends it.
   */
  receive(a: NodeAnnouncement): { self: NodeAnnouncement; peers: { node: string; address: string }[] } {
    const ahead = this.table.seqRefusal(a);
    if (ahead !== undefined) {
      this.events.warn(`announcement of ${a.node} (${a.address}) refused: ${ahead}`);
      this.events.emit('peer.refused', { peer: a.node, from: a.address, reason: 'seq-ahead' });
      throw new RoamError('INPUT_INVALID', `seq: ${ahead}`);
    }
    this.learnPeer(a.node, a.address);
    // A node the membership does not (yet) name is answered, not recorded.
    if (this.table.node(a.node)) this.table.merge(a);
    return {
      self: this.table.announcement(),
      peers: this.table.peers().filter((p) => p.node !== a.node).map((p) => ({ node: p.node, address: p.address })),
    };
  }

  /**
   * A node not known yet: from its own announcement, or from `heardFrom`'s
   * list of peers. A list only introduces names: a known node is never
   * renamed or moved by it, and a name at an address a known node already
   * has is not taken (it would only be an alias of that node).
   */
  private learnPeer(node: string, address: string, heardFrom?: string): void {
    if (!this.learnPeers || this.table.node(node) || node === this.table.announcement().node) return;
    if (heardFrom !== undefined) {
      const holder = this.table.nodeViews().find((n) => sameAddress(n.address, address));
      if (holder) {
        const said = `${heardFrom} ${node} ${address}`;
        if (!this.aliasesSaid.has(said)) this.events.warn(`peer ${heardFrom} named a node ${node} at ${address}, which is ${holder.node}'s address: not taken`);
        this.aliasesSaid.add(said);
        return;
      }
    }
    this.table.addPeer(node, address);
    this.events.emit('peer.joined', { node, address });
    this.events.info(`peer ${node} (${address}) joined`);
    void this.pushAll();
  }
}

/**
 * Why the answer of the peer we called as `node` at `address` cannot be
 * merged: it announces another node, or that node at another address.
 * (A learned name that is not the node at that address stays unheard.)
 */
export function answerRefusal(node: string, address: string, self: NodeAnnouncement): string | undefined {
  if (self.node !== node) return `answered as ${self.node}, but ${address} was called as ${node}`;
  if (!sameAddress(self.address, address)) return `answered as ${node} at ${self.address}, but was called at ${address}: an answer does not move a node`;
  return undefined;
}

/** One address however it is spelled (IPv6: case, zeros, compression). */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  return isIpAddress(a) && isIpAddress(b) && formatIp(parseIp(a)) === formatIp(parseIp(b));
}
