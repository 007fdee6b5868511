/**
 * The prepare phase's work: everything of the target that can be made ready
 * while the service still runs (the mode, a container's image and files, the
 * target's locked namespace and what its mode sets up there). A move runs it
 * in its prepare phase; a policy can run it ahead of a predicted move.
 */
import { probeMigrationCapabilities, type MigrationCapabilities } from '../checkpoint/capabilities.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import type { HandoverMechanism } from '../records/handover.js';
import { treeAnonymousBytes } from '../sys/proc.js';
import type { ContainerFilesMove } from './container-files.js';
import type { PreparedTarget, SourceDeps } from './context.js';
import { chooseMode } from './mode-choice.js';
import { strategyOf } from './modes/index.js';
import type { MigrationMode, ModeChoice, MoveMode } from '../records/migration-report.js';

/** The underlay rate the automatic mode plans with when none is configured: an edge link. */
const ASSUMED_UNDERLAY_MBIT = 1000;

/** The automatic mode's choice for a tree, from what the node can do (probed once per agent). */
export class ModeChooser {
  private capabilities: Promise<MigrationCapabilities> | undefined;

  constructor(private readonly rateMbit: number | undefined) {}

  async choose(pid: number, container: boolean): Promise<ModeChoice> {
    this.capabilities ??= probeMigrationCapabilities().catch((err: unknown) => {
      this.capabilities = undefined;
      throw err;
    });
    const node = await this.capabilities;
    const capabilities = container ? { ...node, postCopy: false, reasons: [...node.reasons, 'post-copy: not available for containers (runc drives their dump)'] } : node;
    return chooseMode({
      memoryBytes: treeAnonymousBytes(pid), underlayMbit: this.rateMbit ?? ASSUMED_UNDERLAY_MBIT,
      rateSource: this.rateMbit === undefined ? 'assumed' : 'configured', capabilities,
    });
  }
}

export interface PrepareAsk {
  id: string;
  mode: MigrationMode;
  handover: HandoverMechanism;
  ep: StoredEndpoint;
  address: string;
  files: ContainerFilesMove | undefined;
  presync: boolean;
}

export async function prepareTarget(d: SourceDeps & { chooser: ModeChooser; withdrawn: (name: string) => Promise<void> }, a: PrepareAsk): Promise<PreparedTarget> {
  const { ep, files, address } = a;
  // A preparation of this endpoint being given up still holds its name on the target.
  await d.withdrawn(ep.name);
  let modeChoice: ModeChoice | undefined;
  let mode: MoveMode;
  if (a.mode === 'auto') {
    modeChoice = await d.chooser.choose(ep.pid, files !== undefined);
    mode = modeChoice.chosen;
  } else mode = a.mode;
  const strategy = strategyOf(mode);
  if (files) await files.sendImageTo(d.target, address);
  const prepared = await d.target.prepare(address, {
    id: a.id, mode: strategy.name, handover: a.handover, name: ep.name, ip: ep.ip, prefixLength: ep.prefixLength, mac: ep.mac,
    generation: ep.generation + 1, command: ep.command, createdAt: ep.createdAt, ...(files ? { container: files.wire() } : {}),
    ...(ep.policy ? { policy: ep.policy } : {}),
  });
  // Outside the freeze: the files as they are now; the freeze then sends only what changes from here.
  if (files && a.presync) await files.presync(d.target, address, a.id);
  return { prepared, strategy, modeChoice };
}
