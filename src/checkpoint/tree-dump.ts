/**
 * A process tree's dump over CRIU's RPC, as both the plain dump and the
 * lazy one (post-copy) start it: the host's dump slot, the request, roam's
 * lock at the freeze, and what the images say once written.
 */
import { closeSync, constants, openSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { criuCall, NetworkLock, type CriuResult } from '../sys/criu/rpc.js';
import { criuWorker } from '../sys/criu/workers.js';
import { dumpedMemoryBytes, lazyMemoryBytes } from '../sys/criu/images.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { netnsInode } from '../sys/netns/netns.js';
import { processStartTime, stdioPipeKeys, stopTree } from '../sys/proc.js';
import type { DumpRequest, DumpResult, HookTime, ProcessRef } from './checkpointer.js';
import { CRIU_LOG_LEVEL, NETNS_KEY } from './criu-options.js';
import { imageBytes, tcpInFlight } from './dump-images.js';
import { dumpSlot } from './dump-slot.js';
import { composeNotify, dispatchNotify, lockAtFreeze } from './notify.js';
import { criuTlsOpts } from './page-server-tls.js';

/** A lazy dump's page server, and who to tell once it listens. */
export interface LazyServing {
  address: string;
  port: number;
  /** at CRIU's status-ready: what the dump wrote, every image but the kept-back memory */
  onReady(result: DumpResult): void;
}

export interface RunningDump {
  /** CRIU's answer: the dump is over (a lazy dump's, once its page server ended) */
  criu: Promise<CriuResult>;
  dumper: ProcessRef;
  /** what the dump wrote. Nothing here may fail: the tree is gone (or stopped for good), and a failure would have the caller believe it still runs. */
  result(hooks: HookTime[], lazyBytes: number): DumpResult;
}

export async function startTreeDump(pid: number, req: DumpRequest, lazy?: LazyServing): Promise<RunningDump> {
  const unlockHost = req.slot ?? (await dumpSlot());
  let pipeKeys: string[];
  let tcpConnections: number;
  let inode: number;
  let imagesFd: number;
  try {
    pipeKeys = stdioPipeKeys(pid);
    tcpConnections = (await listTcpConnections(req.netns)).length;
    inode = netnsInode(req.netns);
    imagesFd = openSync(req.imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    unlockHost();
    throw err;
  }
  const started = performance.now();
  const result = (hooks: HookTime[], lazyBytes: number) => afterDump(req, started, pipeKeys, tcpConnections, hooks, lazyBytes);
  const hooks: HookTime[] = [];
  const notify = composeNotify(lockAtFreeze(req.netns), req.notify, {
    // A lazy dump says it is ready once its page server listens; it then serves until the target is done.
    statusReady: () => {
      // CRIU lets the tree run (connections still in repair mode) if serving fails, e.g. on a refused
      // stranger; a stop queued now, while CRIU holds it and before it accepts anyone, keeps it stopped.
      if (lazy) stopTree(pid);
      unlockHost();
      lazy?.onReady(result([...hooks], lazyMemoryBytesOr0(req.imagesDir)));
    },
  });
  let criuPid = 0;
  const criu = criuCall({
    type: 'DUMP',
    opts: {
      // CRIU resolves images_dir_fd in the requesting process (this one), through the socket's peer credentials.
      imagesDirFd: imagesFd,
      pid,
      tcpEstablished: true,
      leaveRunning: false,
      logLevel: CRIU_LOG_LEVEL,
      logFile: 'dump.log',
      notifyScripts: true,
      external: [`net[${inode}]:${NETNS_KEY}`],
      networkLock: NetworkLock.SKIP,
      ...(req.pageServer ? { ps: req.pageServer, ...criuTlsOpts(req.tls, 'connects') } : {}),
      ...(lazy ? { lazyPages: true, leaveStopped: true, ps: { address: '', port: lazy.port }, configFile: lazyListenConfig(req.imagesDir, lazy.address), ...criuTlsOpts(req.tls, 'serves') } : {}),
    },
    spawn: (fd) => {
      const child = criuWorker(fd, { detached: lazy !== undefined });
      criuPid = child.pid ?? 0;
      return child;
    },
    onHook: async (name) => {
      hooks.push({ name, atMs: performance.now() - started });
      await dispatchNotify(notify, name);
    },
    logDir: req.imagesDir,
  });
  const closeImages = () => {
    closeSync(imagesFd);
    unlockHost();
  };
  criu.then(closeImages, closeImages);
  const dumper = { pid: criuPid, startTime: processStartTime(criuPid) ?? 0 };
  req.onStarted?.({ dumper, pipeKeys, tcpConnections });
  return { criu, dumper, result };
}

/**
 * The RPC takes no address for a lazy dump's page server (it would listen
 * on every address); CRIU's options file, read after the request, does.
 * It lives next to the images, not among them: it is not part of what travels.
 */
function lazyListenConfig(imagesDir: string, address: string): string {
  const file = join(dirname(imagesDir), 'lazy-dump.conf');
  writeFileSync(file, `address ${address}\n`);
  return file;
}

function afterDump(req: DumpRequest, started: number, pipeKeys: string[], tcpConnections: number, hooks: HookTime[], lazyBytes: number): DumpResult {
  const durationMs = performance.now() - started;
  // Pages sent to a page server never land here; the dump's own stats count them.
  const streamed = req.pageServer ? orUnknown(() => dumpedMemoryBytes(req.imagesDir), 0) : 0;
  const inFlight = orUnknown(() => tcpInFlight(req.imagesDir), { connections: 0, unackedToPeer: 0, unackedBytes: 0, unreadFromPeer: 0, timestamps: 0, sack: 0 });
  return {
    durationMs, imageBytes: imageBytes(req.imagesDir) + streamed, lazyBytes, pipeKeys, tcpConnections, tcpInFlight: inFlight, hooks,
  };
}

function lazyMemoryBytesOr0(dir: string): number {
  return orUnknown(() => lazyMemoryBytes(dir), 0);
}

function orUnknown<T>(read: () => T, unknown: T): T {
  try {
    return read();
  } catch {
    return unknown;
  }
}
