/**
 * cold: the research-prototype sequence, kept as the baseline the bench
 * measures against: freeze and dump first, then build the target, then one
 * transfer stream; everything inside the frozen window.
 */
import type { ModeStrategy } from './mode.js';
import { stopCopy } from './stop-copy.js';

export const cold: ModeStrategy = { ...stopCopy, name: 'cold', preparesBeforeFreeze: false };
