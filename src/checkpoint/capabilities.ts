/**
 * Which migration modes this node can run, probed rather than assumed: CRIU
 * is asked about its kernel features, and the one host limit that breaks
 * CRIU's lazy-pages server here is read. The automatic mode chooses from
 * this; the reasons say why a mode is out.
 */
import { criuCall } from '../sys/criu/rpc.js';
import { criuWorker } from '../sys/criu/workers.js';
import { hasCapSysResource, pipeMaxSize } from '../sys/proc.js';

/** CRIU's lazy-pages server sizes a tee pipe to about 3.2 MiB (PIPE_MAX_SIZE pages). */
export const LAZY_PAGES_PIPE_BYTES = 4 * 1024 * 1024;

export interface MigrationCapabilities {
  /** soft-dirty tracking: iterative pre-copy */
  preCopy: boolean;
  /** userfaultfd and a usable lazy-pages server: post-copy */
  postCopy: boolean;
  /** why a mode is not available */
  reasons: string[];
}

export async function probeMigrationCapabilities(): Promise<MigrationCapabilities> {
  const reasons: string[] = [];
  const result = await criuCall({ type: 'FEATURE_CHECK', features: { memTrack: true, lazyPages: true }, spawn: criuWorker });
  const preCopy = result.features?.memTrack === true;
  if (!preCopy) reasons.push('pre-copy: CRIU reports no soft-dirty memory tracking on this kernel');
  let postCopy = result.features?.lazyPages === true;
  if (!postCopy) reasons.push('post-copy: CRIU reports no userfaultfd support on this kernel');
  if (postCopy && !hasCapSysResource() && pipeMaxSize() < LAZY_PAGES_PIPE_BYTES) {
    postCopy = false;
    reasons.push(`post-copy: fs.pipe-max-size is ${pipeMaxSize()} bytes and the agent lacks CAP_SYS_RESOURCE; CRIU's lazy-pages server needs ${LAZY_PAGES_PIPE_BYTES} (deploy/host/setup.sh raises it)`);
  }
  return { preCopy, postCopy, reasons };
}
