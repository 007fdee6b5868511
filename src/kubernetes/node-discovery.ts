/**
 * Membership from the cluster, the way flannel does it: each agent writes
 * its VTEP address and its overlay range as annotations on its own Node,
 * and watches every Node; a node with the annotation is a peer at that
 * address, one that loses it or goes away is forgotten. The overlay
 * (reconciler) converges from the table as it does for static peers.
 *
 * Ranges: a node keeps the range its Node already records (a restarted
 * agent finds its endpoints' addresses still its own); a new one claims the
 * lowest block of the subnet no other Node records. Two nodes claiming the
 * same block at once both see it on their check after writing, and the one
 * whose name sorts later picks again.
 */
import type { V1Node } from '@kubernetes/client-node';
import type { LocationTable } from '../cluster/locations.js';
import { RoamError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { addressAt, formatPrefix, isIpAddress, parsePrefix, prefixSize, prefixWithin } from '../net/ip.js';
import { isConflict, type KubeClient, type Watcher } from './client.js';
import { ANNOTATIONS } from './resources.js';

/** The lowest `/prefixLength` block of `subnet` not in `taken`; undefined when every block is. */
export function lowestFreeRange(subnet: string, prefixLength: number, taken: ReadonlySet<string>): string | undefined {
  const outer = parsePrefix(subnet);
  const blockSize = prefixSize({ ...outer, length: prefixLength });
  const blocks = prefixSize(outer) / blockSize;
  for (let i = 0n; i < blocks; i++) {
    const range = formatPrefix({ family: outer.family, address: addressAt(outer, i * blockSize), length: prefixLength });
    if (!taken.has(range)) return range;
  }
  return undefined;
}

/** Whether `range` recorded on a Node is one this node may keep: inside the subnet, the right size, no earlier-named node holding it too. */
export function mayKeepRange(range: string | undefined, self: string, subnet: string, prefixLength: number, holders: readonly { node: string; range: string }[]): boolean {
  if (!range) return false;
  try {
    const p = parsePrefix(range);
    if (p.length !== prefixLength || !prefixWithin(p, parsePrefix(subnet)) || formatPrefix(p) !== range) return false;
  } catch {
    return false;
  }
  return !holders.some((h) => h.range === range && h.node !== self && h.node < self);
}

export interface DiscoveryOptions {
  node: string;
  vtep: string;
  subnet: string;
  rangePrefixLength: number;
  /** a range the config fixes: published, not claimed */
  fixedRange: string | undefined;
  version: string;
  events: EventBus;
  /**
   * this node's Node was cordoned (spec.unschedulable) or uncordoned: the drain policy follows it. Said on
   * changes only (and at start if cordoned), so that a drain set by hand is not lifted by every Node update.
   */
  onCordon?: (cordoned: boolean) => void;
}

export class NodeDiscovery {
  private nodes: Watcher<V1Node> | undefined;

  constructor(private readonly k: KubeClient, private readonly table: LocationTable, private readonly o: DiscoveryOptions) {}

  /** Watches the Nodes, claims and publishes this node's range and VTEP; resolves with the range. */
  async start(): Promise<string> {
    this.nodes = this.k.watchNodes({
      changed: (n) => this.apply(n),
      deleted: (n) => this.forget(n),
      error: (reason) => this.o.events.warn(`kubernetes: ${reason}; retrying`),
    });
    await this.nodes.synced;
    for (let attempt = 1; ; attempt++) {
      const range = await this.publish();
      // Another node may have claimed the same block at the same moment: look again, now that ours is written.
      if (this.o.fixedRange || mayKeepRange(range, this.o.node, this.o.subnet, this.o.rangePrefixLength, await this.holders())) {
        this.o.events.info(`kubernetes: node ${this.o.node} publishes VTEP ${this.o.vtep} and range ${range}`);
        return range;
      }
      this.o.events.warn(`kubernetes: range ${range} was claimed at the same time by an earlier-named node; claiming another`);
      if (attempt >= 10) throw new RoamError('CONFIG_INVALID', `kubernetes: could not claim an overlay range in ${this.o.subnet} after ${attempt} attempts`);
    }
  }

  stop(): void {
    this.nodes?.stop();
  }

  /** The ranges Nodes record, read now from the API server (the watch's view may lag behind a claim just made). */
  private async holders(nodes?: V1Node[]): Promise<{ node: string; range: string }[]> {
    return (nodes ?? await this.k.listNodes()).flatMap((n) => {
      const range = n.metadata?.annotations?.[ANNOTATIONS.range];
      return range && n.metadata?.name ? [{ node: n.metadata.name, range }] : [];
    });
  }

  /** Writes this node's annotations, conditioned on its resourceVersion (a 409 re-reads and tries again). */
  private async publish(): Promise<string> {
    for (;;) {
      // One read gives this Node (with the resourceVersion to write against) and every other's claim.
      const nodes = await this.k.listNodes();
      const own = nodes.find((n) => n.metadata?.name === this.o.node) ?? await this.k.readNode(this.o.node);
      const annotations = own.metadata?.annotations ?? {};
      const holders = (await this.holders(nodes)).filter((h) => h.node !== this.o.node);
      const kept = annotations[ANNOTATIONS.range];
      const range = this.o.fixedRange
        ?? (mayKeepRange(kept, this.o.node, this.o.subnet, this.o.rangePrefixLength, holders) ? kept : undefined)
        ?? lowestFreeRange(this.o.subnet, this.o.rangePrefixLength, new Set(holders.map((h) => h.range)));
      if (!range) throw new RoamError('ADDRESS_EXHAUSTED', `kubernetes: every /${this.o.rangePrefixLength} range of ${this.o.subnet} is claimed by another node`);
      const wanted = { [ANNOTATIONS.vtep]: this.o.vtep, [ANNOTATIONS.range]: range, [ANNOTATIONS.version]: this.o.version };
      if (Object.entries(wanted).every(([k, v]) => annotations[k] === v)) return range;
      try {
        await this.k.replaceNode({ ...own, metadata: { ...own.metadata, annotations: { ...annotations, ...wanted } } });
        return range;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
  }

  private apply(n: V1Node): void {
    const name = n.metadata?.name;
    if (name === this.o.node) this.sayCordon(n.spec?.unschedulable === true);
    if (!name || name === this.o.node) return;
    const vtep = n.metadata?.annotations?.[ANNOTATIONS.vtep];
    if (vtep && isIpAddress(vtep)) {
      const known = this.table.node(name);
      if (!known) this.o.events.info(`kubernetes: peer ${name} at ${vtep} joined`);
      else if (known.address !== vtep) this.o.events.info(`kubernetes: peer ${name} moved from ${known.address} to ${vtep}`);
      this.table.setPeer(name, vtep);
    } else {
      this.forget(n);
    }
  }

  private cordoned: boolean | undefined;

  private sayCordon(cordoned: boolean): void {
    const was = this.cordoned;
    this.cordoned = cordoned;
    if (cordoned !== (was ?? false)) this.o.onCordon?.(cordoned);
  }

  private forget(n: V1Node): void {
    const name = n.metadata?.name;
    if (!name || name === this.o.node || !this.table.node(name)) return;
    this.o.events.info(`kubernetes: peer ${name} left`);
    this.table.removePeer(name);
  }
}
