/**
 * CRIU's notifications, typed. CRIU stops at each of its action-script
 * points and waits for the answer, over its RPC (a tree) or through
 * roam-criu-hook (runc's CRIU): that wait is how the agent keeps the
 * sequence in its own hands. A method that throws or rejects fails the
 * dump or restore, as a failed action script would.
 */
import { lockNetns } from '../sys/nft.js';

type Answer = Promise<void> | void;

/** Every method is optional: CRIU goes on at once from a point nobody listens at. */
export interface CriuNotify {
  preStream?(): Answer;
  preDump?(): Answer;
  postDump?(): Answer;
  preRestore?(): Answer;
  postRestore?(): Answer;
  /** the tree is stopped: where roam locks its namespace (lockAtFreeze) */
  networkLock?(): Answer;
  networkUnlock?(): Answer;
  setupNamespaces?(): Answer;
  postSetupNamespaces?(): Answer;
  preResume?(): Answer;
  postResume?(): Answer;
  /** CRIU sends a file descriptor with it, which roam's RPC reader does not take: only the point is told */
  orphanPtsMaster?(): Answer;
  /** a lazy dump: every image but the kept-back memory is written, and the page server listens */
  statusReady?(): Answer;
}

type Method = keyof CriuNotify;

/**
 * CRIU's action names (criu/action-scripts.c). query-ext-files is left out:
 * it asks for an answer (a list of files) that a notification cannot give.
 */
const METHOD_OF: Record<string, Method> = {
  'pre-stream': 'preStream',
  'pre-dump': 'preDump',
  'post-dump': 'postDump',
  'pre-restore': 'preRestore',
  'post-restore': 'postRestore',
  'network-lock': 'networkLock',
  'network-unlock': 'networkUnlock',
  'setup-namespaces': 'setupNamespaces',
  'post-setup-namespaces': 'postSetupNamespaces',
  'pre-resume': 'preResume',
  'post-resume': 'postResume',
  'orphan-pts-master': 'orphanPtsMaster',
  'status-ready': 'statusReady',
};

/** Calls the method of `notify` for CRIU's action `name`; names it does not know are ignored. */
export function dispatchNotify(notify: CriuNotify | undefined, name: string): Answer {
  const method = Object.hasOwn(METHOD_OF, name) ? METHOD_OF[name] : undefined;
  return method ? notify?.[method]?.() : undefined;
}

/** One notify that calls each of `parts` in turn at every point, each awaited before the next. */
export function composeNotify(...parts: (CriuNotify | undefined)[]): CriuNotify {
  const composed: CriuNotify = {};
  for (const method of Object.values(METHOD_OF)) {
    const listeners = parts.filter((p): p is CriuNotify => p?.[method] !== undefined);
    if (listeners.length === 0) continue;
    composed[method] = async () => {
      for (const p of listeners) await p[method]!();
    };
  }
  return composed;
}

/**
 * Roam's lock on the dumped tree's namespace. The tree is stopped when CRIU
 * gets here: everything that arrives from now on is dropped (and logged, to
 * be kept for the handover).
 */
export function lockAtFreeze(netns: string): CriuNotify {
  return { networkLock: () => lockNetns(netns) };
}
