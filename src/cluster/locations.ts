/**
 * The cluster's view of where every endpoint lives. Each node is the only
 * authority on its own endpoints and announces them whole, with a sequence
 * number that only grows (a restarted agent starts from the wall clock, so
 * it still outranks its former self). Announcements are merged by sequence;
 * a silent node keeps its last-known endpoints: the data path must not be
 * torn down because a control plane blinked.
 */
import type { EndpointRecord } from '../records/endpoint.js';
import type { NodeAnnouncement } from '../records/announcement.js';

/**
 * What changed: this node's own endpoints ('local', which must be announced),
 * a peer's announcement ('remote', which must only be applied: re-announcing
 * it would make every change cost N² messages), or the set of peers ('peer').
 */
export type TableChange = 'local' | 'remote' | 'peer';

/**
 * How far a peer's sequence may run ahead of this node's clock. A sequence
 * is its sender's wall clock in ms (one more per change within a ms), so a
 * true one is ahead only by the clocks' skew. Without a bound, one
 * announcement at 2^53-1 would outrank every later true one for good (until
 * this agent restarts); with it, a sequence from the future outranks them at
 * most this long. An hour: clocks set by hand stay well within it.
 */
export const MAX_SEQ_AHEAD_MS = 60 * 60 * 1000;

export interface NodeView extends NodeAnnouncement {
  lastHeardMs: number | undefined;
  reachable: boolean;
}

export class LocationTable {
  private readonly nodes = new Map<string, NodeView>();
  private lastSeq = 0;
  private readonly listeners = new Set<(what: TableChange) => void>();

  constructor(private readonly self: string, selfAddress: string, private readonly now: () => number = Date.now) {
    this.nodes.set(self, { node: self, address: selfAddress, seq: this.nextSeq(), endpoints: [], lastHeardMs: now(), reachable: true });
  }

  private nextSeq(): number {
    this.lastSeq = Math.max(this.lastSeq + 1, this.now());
    return this.lastSeq;
  }

  onChange(listener: (what: TableChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(what: TableChange): void {
    for (const l of this.listeners) l(what);
  }

  /** Replaces this node's own endpoint list (and bumps its sequence). */
  setLocal(endpoints: EndpointRecord[]): void {
    const me = this.nodes.get(this.self)!;
    const sorted = [...endpoints].sort((a, b) => a.name.localeCompare(b.name));
    if (JSON.stringify(sorted) === JSON.stringify(me.endpoints)) return;
    this.nodes.set(this.self, { ...me, endpoints: sorted, seq: this.nextSeq(), lastHeardMs: this.now() });
    this.changed('local');
  }

  /** Marks this node as draining (or not) and says so with the next announcement. */
  setDraining(draining: boolean): void {
    const me = this.nodes.get(this.self)!;
    if ((me.draining === true) === draining) return;
    const { draining: _was, ...rest } = me;
    this.nodes.set(this.self, { ...rest, ...(draining ? { draining: true } : {}), seq: this.nextSeq(), lastHeardMs: this.now() });
    this.changed('local');
  }

  /** A peer known from configuration, before it has said anything. */
  addPeer(node: string, address: string): void {
    if (this.nodes.has(node)) return;
    this.nodes.set(node, { node, address, seq: 0, endpoints: [], lastHeardMs: undefined, reachable: false });
    this.changed('peer');
  }

  /** A peer the cluster's membership names, at `address`: added, or moved there (it keeps what it announced). */
  setPeer(node: string, address: string): void {
    const known = this.nodes.get(node);
    if (node === this.self || known?.address === address) return;
    if (!known) return this.addPeer(node, address);
    this.nodes.set(node, { ...known, address });
    this.changed('peer');
  }

  /** A peer that left the cluster: it and what it announced are forgotten. */
  removePeer(node: string): void {
    if (node === this.self || !this.nodes.delete(node)) return;
    this.changed('peer');
  }

  /** Why `a` cannot be merged whoever sent it (a sequence too far ahead of this node's clock), or undefined. */
  seqRefusal(a: NodeAnnouncement): string | undefined {
    const ahead = a.seq - this.now();
    if (ahead <= MAX_SEQ_AHEAD_MS) return undefined;
    return `${a.node}'s announcement has seq ${a.seq}, ${Math.round(ahead / 1000)} s ahead of this node's clock (at most ${MAX_SEQ_AHEAD_MS / 1000} s): check the clocks`;
  }

  /**
   * Merges a peer's announcement; returns true if it taught us anything.
   * The caller vouches for who sent it (peer-sync.ts: the node's own
   * announcement, its certificate checked by the route; or its answer, at the
   * address we called): a known node's address changes only here, and only
   * that way. A sequence too far ahead (seqRefusal) is ignored.
   */
  merge(a: NodeAnnouncement): boolean {
    if (a.node === this.self || this.seqRefusal(a) !== undefined) return false;
    const known = this.nodes.get(a.node);
    if (known && a.seq <= known.seq && known.address === a.address) {
      this.markHeard(a.node, true);
      return false;
    }
    this.nodes.set(a.node, { ...a, endpoints: [...a.endpoints], lastHeardMs: this.now(), reachable: true });
    this.changed('remote');
    return true;
  }

  markHeard(node: string, reachable: boolean): void {
    const known = this.nodes.get(node);
    if (!known || node === this.self) return;
    known.reachable = reachable;
    if (reachable) known.lastHeardMs = this.now();
  }

  announcement(): NodeAnnouncement {
    const me = this.nodes.get(this.self)!;
    return { node: me.node, address: me.address, seq: me.seq, endpoints: me.endpoints, ...(me.draining ? { draining: true } : {}) };
  }

  nodeViews(): NodeView[] {
    return [...this.nodes.values()].sort((a, b) => a.node.localeCompare(b.node));
  }

  node(name: string): NodeView | undefined {
    return this.nodes.get(name);
  }

  peers(): NodeView[] {
    return this.nodeViews().filter((n) => n.node !== this.self);
  }

  /** Every endpoint in the cluster; during a move the newest generation wins. */
  endpoints(): EndpointRecord[] {
    const byName = new Map<string, EndpointRecord>();
    for (const n of this.nodes.values()) {
      for (const ep of n.endpoints) {
        const seen = byName.get(ep.name);
        if (!seen || ep.generation > seen.generation) byName.set(ep.name, ep);
      }
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}
