/**
 * The source's journal of a migration: one small JSON file in the
 * migration's directory, rewritten atomically as the migration goes. An
 * agent that dies mid-migration reads it at its next start to finish or roll
 * back what it was doing (recovery.ts). The directory and the journal
 * go together once the migration has ended.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessRef } from '../checkpoint/checkpointer.js';
import { writeFileAtomically, writeFileDurably } from '../sys/durable-file.js';
import type { HandoverMechanism } from '../records/handover.js';
import type { MigrationMode } from '../records/migration-report.js';

export const JOURNAL_FILE = 'journal.json';

export interface SourceJournal {
  id: string;
  name: string;
  to: string;
  /** the target agent's peer address */
  toAddress: string;
  /** as asked, then as chosen at prepare */
  mode: MigrationMode;
  handover: HandoverMechanism;
  /** the phase begun last; 'failed': given up on, images kept for an operator */
  phase: string;
  /** the tree being moved */
  root: ProcessRef;
  /** the dump's CRIU, once started (post-copy: it serves the pull, detached) */
  criu?: ProcessRef;
  /** what a restore from the images needs (whether the dump finished, its log says: checkpoint dumpFinished) */
  dump?: { pipeKeys: string[]; tcpConnections: number };
  /** the target took over (the one point of no return) */
  switched?: boolean;
  /** post-copy: the tree is kept stopped for the pull, its pages served here */
  lazyServer?: { address: string; port: number };
}

/**
 * `durable`: flushed to disk before it returns, so that after a crash of the node the journal still says what
 * recovery acts on (the dump's process, the lazy page server, whether the target took over). A phase mark
 * alone is only atomic: recovery never acts on it, and its fsync would lengthen the frozen window.
 */
export function writeJournal(dir: string, j: SourceJournal, durable = true): void {
  (durable ? writeFileDurably : writeFileAtomically)(join(dir, JOURNAL_FILE), JSON.stringify(j));
}

/** Every journal left under `stateDir`, or why it could not be read. */
export function readJournals(stateDir: string): { dir: string; journal?: SourceJournal; error?: string }[] {
  const root = join(stateDir, 'migrations');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((id) => join(root, id))
    .filter((dir) => existsSync(join(dir, JOURNAL_FILE)))
    .map((dir) => {
      try {
        return { dir, journal: JSON.parse(readFileSync(join(dir, JOURNAL_FILE), 'utf8')) as SourceJournal };
      } catch (err) {
        return { dir, error: err instanceof Error ? err.message : String(err) };
      }
    });
}
