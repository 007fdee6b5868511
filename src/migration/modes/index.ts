/**
 * Every mode a migration can run in, by name. A new mode: its file here, its
 * name in MOVE_MODES (../report.ts, where the API, the journal and the CRD take
 * it from), and its line below; the compiler refuses a name without a strategy.
 */
import type { MoveMode } from '../../records/migration-report.js';
import { cold } from './cold.js';
import type { ModeStrategy } from './mode.js';
import { postCopy } from './post-copy.js';
import { stopCopy } from './stop-copy.js';
import { streamed } from './streamed.js';

const STRATEGIES: Readonly<Record<MoveMode, ModeStrategy>> = {
  'stop-copy': stopCopy,
  streamed,
  'post-copy': postCopy,
  cold,
};

export function strategyOf(mode: MoveMode): ModeStrategy {
  return STRATEGIES[mode];
}

export type { ModeStrategy } from './mode.js';
