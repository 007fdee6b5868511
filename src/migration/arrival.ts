/**
 * One migration arriving at this node, target side: what it was prepared
 * with, and what its steps have produced so far.
 */
import { existsSync } from 'node:fs';
import type { ContainerPart } from '../container/node-containers.js';
import { applyDelta, deltaFiles } from '../container/tree-sync.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { RoamError } from '../errors/roam-error.js';
import type { HandoverCounts, HandoverMechanism } from '../records/handover.js';
import type { HeldPackets, PacketHold } from '../sys/packet-hold.js';
import type { ArrivalMemory, ModeStrategy } from './modes/mode.js';

/** Written into an arrival's folder at the switch, gone at the unlock: a restarted agent resumes what it finds. */
export const SWITCHED_FILE = 'switched.json';

export interface Arrival extends ArrivalMemory {
  id: string;
  name: string;
  dir: string;
  record: StoredEndpoint;
  strategy: ModeStrategy;
  handover: HandoverMechanism;
  /** keeps what the lock drops here (replaying mechanisms only) */
  hold: PacketHold | undefined;
  /** what the source's lock kept, sent before the unlock */
  sourceHeld: HeldPackets | undefined;
  connections: number;
  /** set when the restore starts: the container may run in its trees from then, so no tree upload is unpacked any more */
  restoring?: boolean;
  restored: { pid: number; shimPid: number } | undefined;
  switched: boolean;
  /** after the switch: unlocks on its own if the source never asks (it died) */
  watchdog?: NodeJS.Timeout;
  unlocking?: Promise<HandoverCounts>;
  /** when the source last asked anything about it, and uploads under way: an arrival nobody drives expires */
  lastSeen: number;
  uploads: number;
  /** image bytes received so far, against limits.imageBytes */
  imageBytes: number;
  /** the node that prepared it (its certificate's name; undefined over plaintext peers): every later step comes from it */
  from: string | undefined;
}

/**
 * A container, before its restore: the changes to its files made since the
 * proactive copy (or all of them) came with the images; they are applied and
 * the root filesystem is mounted, for runc to restore the container into.
 */
export async function arriveContainerFiles(manager: EndpointManager, a: Arrival, part: ContainerPart): Promise<void> {
  const dir = manager.dirOf(a.name);
  const c = manager.containers;
  for (const tree of c.trees(dir, part)) {
    const files = deltaFiles(a.imagesDir, tree.name);
    if (!existsSync(files.archive)) throw new RoamError('PEER_PROTOCOL', `migration ${a.id}: the images lack ${a.name}'s ${tree.name} files`);
    await applyDelta(tree.root, files);
  }
  c.assemble(a.name, dir, a.record.netns, part);
}
