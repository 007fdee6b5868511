/**
 * A process tree under roam-shim, dumped and restored by CRIU over its RPC
 * (`criu swrk`). See checkpointer.ts for what a dump and a restore do to
 * the tree and its namespace.
 */
import { closeSync, constants, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { criuCall, NetworkLock, type CriuResult } from '../sys/criu/rpc.js';
import { criuWorkerUnderShim } from '../sys/criu/workers.js';
import { unlockNetns } from '../sys/nft.js';
import type { Checkpointer, DumpRequest, DumpResult, LazyDump, LazyDumpRequest, RestoreRequest, RestoreResult } from './checkpointer.js';
import { CRIU_LOG_LEVEL, NETNS_KEY } from './criu-options.js';
import { startLazyDump } from './lazy-dump.js';
import { dispatchNotify } from './notify.js';
import { startTreeDump } from './tree-dump.js';

export interface CriuTree {
  /** the tree's root, to dump; none where the tree is only to be restored */
  pid?: number;
  /** the endpoint's state dir: the shim keeps log, exit and pid there */
  dir: string;
}

export class CriuTreeCheckpointer implements Checkpointer {
  readonly kind = 'process';

  constructor(private readonly tree: CriuTree) {}

  async dump(req: DumpRequest): Promise<DumpResult> {
    const dump = await startTreeDump(this.root(), req);
    let done: CriuResult;
    try {
      done = await dump.criu;
    } catch (err) {
      // CRIU resumed the tree: it must not stay cut off.
      unlockNetns(req.netns);
      throw err;
    }
    return dump.result(done.hooks, 0);
  }

  async lazyDump(req: LazyDumpRequest): Promise<LazyDump> {
    return startLazyDump(this.root(), req);
  }

  /**
   * Restores the tree into `netns` under a new shim (restore mode): fresh
   * stdout/stderr pipes replace the ones the tree had, and the restored root
   * becomes the shim's child, supervised like any endpoint.
   */
  async restore(req: RestoreRequest): Promise<RestoreResult> {
    const { dir } = this.tree;
    if (req.pipeKeys.length > 2) throw new RoamError('INPUT_INVALID', `at most two stdio pipes can be handed over, got ${req.pipeKeys.length}`);
    rmSync(join(dir, 'exit'), { force: true });
    const netnsFd = openSync(req.netns, 'r');
    const imagesFd = openSync(req.imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
    let shimPid = 0;
    const started = performance.now();
    try {
      const result = await criuCall({
        type: 'RESTORE',
        opts: {
          imagesDirFd: imagesFd,
          tcpEstablished: true,
          logLevel: CRIU_LOG_LEVEL,
          logFile: 'restore.log',
          notifyScripts: true,
          rstSibling: true,
          // The namespace is locked by roam (prepared locked, or still locked from the dump).
          networkLock: NetworkLock.SKIP,
          leaveStopped: req.leaveStopped,
          lazyPages: req.lazyPages ?? false,
          inheritFd: [{ key: NETNS_KEY, fd: 4 }, ...req.pipeKeys.map((key, i) => ({ key, fd: 5 + i }))],
        },
        spawn: (fd) => {
          const shim = criuWorkerUnderShim(dir, fd, netnsFd);
          shimPid = shim.pid ?? 0;
          return shim;
        },
        ...(req.notify ? { onHook: (name: string) => dispatchNotify(req.notify, name) } : {}),
        logDir: req.imagesDir,
        waitExit: false,
      });
      if (!result.pid) throw new RoamError('CHECKPOINT_FAILED', 'criu restore answered without the restored pid');
      writeFileSync(join(dir, 'pid'), `${result.pid}\n`);
      writeFileSync(join(dir, 'shim.pid'), `${shimPid}\n`);
      return { pid: result.pid, shimPid, durationMs: performance.now() - started, hooks: result.hooks };
    } finally {
      closeSync(netnsFd);
      closeSync(imagesFd);
    }
  }

  private root(): number {
    if (this.tree.pid === undefined) throw new RoamError('INPUT_INVALID', `no process tree to dump: the checkpointer for ${this.tree.dir} was made for a restore only`);
    return this.tree.pid;
  }
}
