/**
 * The checkpoint/restore executor: what CRIU does to one endpoint's process
 * tree, with hooks for the migration sequence. It knows nothing of nodes or
 * agents; migration/ decides when and where.
 *
 * Dump: the tree is frozen, then its namespace is locked (roam's own lock,
 * at CRIU's network-lock hook, so what the lock drops can be kept for the
 * handover; CRIU's lock is skipped), its established TCP connections are
 * checkpointed in repair mode, and on success the tree is gone (its sockets
 * closed silently, still in repair mode, so no peer sees a FIN or RST). A
 * dump that fails leaves the tree running and the lock lifted. The namespace
 * is external: it stays where it is, and restore joins the tree to whichever
 * namespace it is given under the same key; the restoring side owns the lock
 * there and lifts it itself.
 */
import { closeSync, constants, openSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { criuCall, NetworkLock } from '../sys/criu/rpc.js';
import { criuWorker, criuWorkerUnderShim } from '../sys/criu/workers.js';
import { dumpedMemoryBytes, readTcpStreams } from '../sys/criu/images.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { isSameProcessAlive, processStartTime, stdioPipeKeys, stopProcess } from '../sys/proc.js';
import { netnsInode } from '../sys/netns/netns.js';
import { lockNetns, unlockNetns } from '../sys/nft.js';

export const NETNS_KEY = 'roam-netns';
const LOG_LEVEL = 4;

export interface DumpSpec {
  pid: number;
  netns: string;
  imagesDir: string;
  /** stream memory pages to this page server while dumping (they never land in imagesDir) */
  pageServer?: { address: string; port: number };
  onHook?: (name: string) => Promise<void> | void;
}

export interface DumpResult {
  durationMs: number;
  /** bytes of images moved: the files here, plus the memory sent to a page server */
  imageBytes: number;
  /** "pipe:[inode]" of the tree's stdout and stderr, the keys restore hands new pipes under */
  pipeKeys: string[];
  tcpConnections: number;
  /** what the dumped connections had in flight when the service froze, from CRIU's images */
  tcpInFlight: TcpInFlight;
  hooks: { name: string; atMs: number }[];
}

export interface TcpInFlight {
  connections: number;
  /** connections with data sent to the peer and not yet acknowledged */
  unackedToPeer: number;
  unackedBytes: number;
  /** connections with data received from the peer the service had not read yet */
  unreadFromPeer: number;
  timestamps: number;
  sack: number;
}

export function tcpInFlight(imagesDir: string): TcpInFlight {
  const streams = readTcpStreams(imagesDir);
  return {
    connections: streams.length,
    unackedToPeer: streams.filter((s) => s.unackedLen > 0).length,
    unackedBytes: streams.reduce((n, s) => n + s.unackedLen, 0),
    unreadFromPeer: streams.filter((s) => s.inqLen > 0).length,
    timestamps: streams.filter((s) => s.timestamps).length,
    sack: streams.filter((s) => s.sack).length,
  };
}

export function directoryBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

export async function dumpTree(spec: DumpSpec): Promise<DumpResult> {
  const pipeKeys = stdioPipeKeys(spec.pid);
  const tcpConnections = (await listTcpConnections(spec.netns)).length;
  const inode = netnsInode(spec.netns);
  const imagesFd = openSync(spec.imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  const started = performance.now();
  let result: Awaited<ReturnType<typeof criuCall>>;
  try {
    result = await criuCall({
      type: 'DUMP',
      opts: {
        // CRIU resolves images_dir_fd in the requesting process (this one), through the socket's peer credentials.
        imagesDirFd: imagesFd,
        pid: spec.pid,
        tcpEstablished: true,
        leaveRunning: false,
        logLevel: LOG_LEVEL,
        logFile: 'dump.log',
        notifyScripts: true,
        external: [`net[${inode}]:${NETNS_KEY}`],
        networkLock: NetworkLock.SKIP,
        ...(spec.pageServer ? { ps: spec.pageServer } : {}),
      },
      spawn: criuWorker,
      onHook: async (name) => {
        // The tree is stopped when CRIU gets here: everything that arrives from now on is dropped (and logged).
        if (name === 'network-lock') lockNetns(spec.netns);
        await spec.onHook?.(name);
      },
      logDir: spec.imagesDir,
    });
  } catch (err) {
    // CRIU resumed the tree: it must not stay cut off.
    unlockNetns(spec.netns);
    throw err;
  } finally {
    closeSync(imagesFd);
  }
  // The tree is gone from here on: nothing below may turn the dump into a failure (the caller would
  // believe the service still runs). What cannot be read is reported as unknown.
  const durationMs = performance.now() - started;
  // Pages sent to a page server never land here; the dump's own stats count them.
  const streamed = spec.pageServer ? orUnknown(() => dumpedMemoryBytes(spec.imagesDir), 0) : 0;
  const inFlight = orUnknown(() => tcpInFlight(spec.imagesDir), { connections: 0, unackedToPeer: 0, unackedBytes: 0, unreadFromPeer: 0, timestamps: 0, sack: 0 });
  return { durationMs, imageBytes: imageBytes(spec.imagesDir) + streamed, pipeKeys, tcpConnections, tcpInFlight: inFlight, hooks: result.hooks };
}

function orUnknown<T>(read: () => T, unknown: T): T {
  try {
    return read();
  } catch {
    return unknown;
  }
}

export interface PageServer {
  pid: number;
  port: number;
  /** so that a recycled pid is never taken for the page server */
  startTime: number;
}

/**
 * A CRIU page server writing into `imagesDir`, listening on `address` (any
 * port). It serves one dump and then exits; waitForPageServer() tells when
 * every page it received is written.
 */
export async function startPageServer(imagesDir: string, address: string): Promise<PageServer> {
  const imagesFd = openSync(imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    // Not PAGE_SERVER: in daemon mode CRIU 4.2 answers with pid 0 (cr_page_server returns 0 to the
    // parent), and the pid is what tells when the pages are all written. The child variant reports it.
    const result = await criuCall({
      type: 'PAGE_SERVER_CHLD',
      opts: { imagesDirFd: imagesFd, ps: { address, port: 0 }, logLevel: LOG_LEVEL, logFile: 'page-server.log' },
      spawn: criuWorker,
      logDir: imagesDir,
    });
    if (!result.pageServer) throw new RoamError('CHECKPOINT_FAILED', 'criu page-server answered without its pid and port');
    return { ...result.pageServer, startTime: processStartTime(result.pageServer.pid) ?? 0 };
  } finally {
    closeSync(imagesFd);
  }
}

/** Stops a page server whose dump will not come (an aborted migration). */
export async function stopPageServer(ps: PageServer): Promise<void> {
  await stopProcess(ps.pid, ps.startTime, 0);
}

/** Waits until the page server has exited (it does once its dump is over). */
export async function waitForPageServer(ps: PageServer, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (isSameProcessAlive(ps.pid, ps.startTime)) {
    if (performance.now() > deadline) throw new RoamError('CHECKPOINT_FAILED', `criu page-server ${ps.pid} still running after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Bytes of the images proper (CRIU's logs are not part of what must travel). */
export function imageBytes(dir: string): number {
  return readdirSync(dir).filter((f) => f.endsWith('.img')).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

export interface RestoreSpec {
  /** the endpoint's state dir: the shim keeps log, exit and pid there */
  dir: string;
  netns: string;
  imagesDir: string;
  pipeKeys: string[];
  /** leave the restored tree stopped (SIGSTOP); the caller continues it once its network is ready */
  leaveStopped?: boolean;
  onHook?: (name: string) => Promise<void> | void;
}

export interface RestoreResult {
  pid: number;
  shimPid: number;
  durationMs: number;
  hooks: { name: string; atMs: number }[];
}

/**
 * Restores the tree into `netns` under a new shim (restore mode): fresh
 * stdout/stderr pipes replace the ones the tree had, and the restored root
 * becomes the shim's child, supervised like any endpoint.
 */
export async function restoreUnderShim(spec: RestoreSpec): Promise<RestoreResult> {
  if (spec.pipeKeys.length > 2) throw new RoamError('INPUT_INVALID', `at most two stdio pipes can be handed over, got ${spec.pipeKeys.length}`);
  rmSync(join(spec.dir, 'exit'), { force: true });
  const netnsFd = openSync(spec.netns, 'r');
  const imagesFd = openSync(spec.imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  let shimPid = 0;
  const started = performance.now();
  try {
    const result = await criuCall({
      type: 'RESTORE',
      opts: {
        imagesDirFd: imagesFd,
        tcpEstablished: true,
        logLevel: LOG_LEVEL,
        logFile: 'restore.log',
        notifyScripts: true,
        rstSibling: true,
        // The namespace is locked by roam (prepared locked, or still locked from the dump).
        networkLock: NetworkLock.SKIP,
        leaveStopped: spec.leaveStopped ?? false,
        inheritFd: [{ key: NETNS_KEY, fd: 4 }, ...spec.pipeKeys.map((key, i) => ({ key, fd: 5 + i }))],
      },
      spawn: (fd) => {
        const shim = criuWorkerUnderShim(spec.dir, fd, netnsFd);
        shimPid = shim.pid ?? 0;
        return shim;
      },
      ...(spec.onHook ? { onHook: spec.onHook } : {}),
      logDir: spec.imagesDir,
      waitExit: false,
    });
    if (!result.pid) throw new RoamError('CHECKPOINT_FAILED', 'criu restore answered without the restored pid');
    writeFileSync(join(spec.dir, 'pid'), `${result.pid}\n`);
    writeFileSync(join(spec.dir, 'shim.pid'), `${shimPid}\n`);
    return { pid: result.pid, shimPid, durationMs: performance.now() - started, hooks: result.hooks };
  } finally {
    closeSync(netnsFd);
    closeSync(imagesFd);
  }
}
