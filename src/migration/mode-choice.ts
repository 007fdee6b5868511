/**
 * The automatic mode: which way to move an endpoint's memory, from what
 * that memory costs on this underlay and what the node can do (probed, see
 * checkpoint/capabilities.ts). The reasons go into the handover report.
 *
 *  - Memory that moves within FROZEN_BUDGET_MS at the underlay rate goes
 *    with stop-copy: nothing to gain from leaving it behind, and no pull
 *    that depends on the source after the switch.
 *  - Beyond that, post-copy where the node can run it: the frozen time no
 *    longer grows with memory; the price is a pull after the switch during
 *    which the service needs the source node.
 *  - Without post-copy, streamed once the memory takes long enough to move
 *    that overlapping dump and transfer pays for the page server's start.
 */
import type { MigrationCapabilities } from '../checkpoint/capabilities.js';
import type { ModeChoice, MoveMode } from '../records/migration-report.js';

/** Memory transfer time worth paying inside the frozen window to avoid a pull after the switch. */
export const FROZEN_BUDGET_MS = 100;
/** Below this transfer time, stop-copy's single bulk transfer beats streaming to a page server (bench: memory). */
export const STREAMED_FROM_MS = 500;

export interface ModeInputs {
  memoryBytes: number;
  underlayMbit: number;
  /** where the rate comes from: 'configured' (underlay.rateMbit) or 'assumed' */
  rateSource: 'configured' | 'assumed';
  capabilities: MigrationCapabilities;
}

export function chooseMode(i: ModeInputs): ModeChoice {
  const transferMs = Math.round((i.memoryBytes * 8) / (i.underlayMbit * 1000));
  const mib = (i.memoryBytes / 1048576).toFixed(1);
  const reasons = [`${mib} MiB of memory moves in about ${transferMs} ms at ${i.underlayMbit} Mbit/s (${i.rateSource})`];
  let chosen: MoveMode;
  if (transferMs <= FROZEN_BUDGET_MS) {
    chosen = 'stop-copy';
    reasons.push(`within the ${FROZEN_BUDGET_MS} ms budget: moved while frozen, nothing left to pull after the switch`);
  } else if (i.capabilities.postCopy) {
    chosen = 'post-copy';
    reasons.push(`over the ${FROZEN_BUDGET_MS} ms budget: the service resumes on the target first and the memory follows; until the pull ends the service needs the source node`);
  } else if (transferMs >= STREAMED_FROM_MS) {
    chosen = 'streamed';
    reasons.push(`post-copy is not available here (${i.capabilities.reasons.filter((r) => r.startsWith('post-copy')).join('; ')}); streaming overlaps dump and transfer`);
  } else {
    chosen = 'stop-copy';
    reasons.push(`post-copy is not available here (${i.capabilities.reasons.filter((r) => r.startsWith('post-copy')).join('; ')}); too little memory for streaming to pay`);
  }
  if (!i.capabilities.preCopy) reasons.push('pre-copy: no soft-dirty tracking on this kernel');
  return {
    chosen, memory_bytes: i.memoryBytes, underlay_mbit: i.underlayMbit, post_copy_available: i.capabilities.postCopy, pre_copy_available: i.capabilities.preCopy,
    memory_transfer_ms: transferMs, reasons,
  };
}
