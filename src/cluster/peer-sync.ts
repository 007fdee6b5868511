/**
 * Keeps the location table converged across agents: on every local change,
 * and every `intervalMs` anyway, this agent announces its own endpoints to
 * each peer; the answer carries the peer's own announcement and the peers it
 * knows, so a node that joins late learns everyone from anyone it can reach.
 */
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { AnnounceResponse, NodeAnnouncement } from '../records/announcement.js';
import type { LocationTable } from './locations.js';
import { Rounds } from './rounds.js';

export interface PeerTransport {
  announce(address: string, mine: NodeAnnouncement): Promise<AnnounceResponse>;
}

export class PeerSync {
  private timer: NodeJS.Timeout | undefined;
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
      this.table.merge(answer.self);
      for (const p of answer.peers) this.learnPeer(p.node, p.address);
      this.events.emit('peer.sync', { node, ok: true, durationMs: performance.now() - started });
    } catch (err) {
      const wasReachable = this.table.node(node)?.reachable;
      this.table.markHeard(node, false);
      if (wasReachable) this.events.warn(`peer ${node} (${address}) unreachable: ${describeError(err)}`);
      this.events.emit('peer.sync', { node, ok: false, durationMs: performance.now() - started });
    }
  }

  /** Handles an announcement a peer sent us; returns our answer. */
  receive(a: NodeAnnouncement): { self: NodeAnnouncement; peers: { node: string; address: string }[] } {
    this.learnPeer(a.node, a.address);
    // A node the membership does not (yet) name is answered, not recorded.
    if (this.table.node(a.node)) this.table.merge(a);
    return {
      self: this.table.announcement(),
      peers: this.table.peers().filter((p) => p.node !== a.node).map((p) => ({ node: p.node, address: p.address })),
    };
  }

  private learnPeer(node: string, address: string): void {
    if (!this.learnPeers || this.table.node(node) || node === this.table.announcement().node) return;
    this.table.addPeer(node, address);
    this.events.emit('peer.joined', { node, address });
    this.events.info(`peer ${node} (${address}) joined`);
    void this.pushAll();
  }
}
