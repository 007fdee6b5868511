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
import { closeSync, constants, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { criuCall, errorLines, NetworkLock, pageServerRefusalIn, type PageServerRefusal } from '../sys/criu/rpc.js';
import { criuWorker, criuWorkerUnderShim, lazyPagesWorker } from '../sys/criu/workers.js';
import { dumpedMemoryBytes, lazyMemoryBytes, readTcpStreams } from '../sys/criu/images.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { isSameProcessAlive, processStartTime, stdioPipeKeys, stopProcess, stopTree } from '../sys/proc.js';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { criuTlsArgs, criuTlsOpts, type PageServerTls } from './page-server-tls.js';
import { netnsInode } from '../sys/netns/netns.js';
import { hostLock, LOCK_DIR } from '../sys/host-lock.js';
import { lockNetns, unlockNetns } from '../sys/nft.js';

export const NETNS_KEY = 'roam-netns';
const LOG_LEVEL = 4;
const DUMP_LOCK = join(LOCK_DIR, 'criu-dump.lock');

export interface DumpSpec {
  pid: number;
  netns: string;
  imagesDir: string;
  /** stream memory pages to this page server while dumping (they never land in imagesDir) */
  pageServer?: { address: string; port: number };
  /** page-server connections (streamed, or a lazy dump's server) over TLS with these files */
  tls?: PageServerTls;
  /** a lazy dump's page server turned a client away at the TLS handshake (and so ended) */
  onRefusal?: (refusal: PageServerRefusal) => void;
  onHook?: (name: string) => Promise<void> | void;
  /** this host's dump slot, taken beforehand (dumpSlot) so that waiting for it is not counted as frozen; released when CRIU's parasite is gone */
  slot?: () => void;
  /** CRIU is running the dump: who it is and what a restore from its images will need, for a journal that must outlive this process */
  onCriu?: (started: { criu: { pid: number; startTime: number }; pipeKeys: string[]; tcpConnections: number }) => void;
}

export interface DumpResult {
  durationMs: number;
  /** bytes of images moved: the files here, plus the memory sent to a page server */
  imageBytes: number;
  /** "pipe:[inode]" of the tree's stdout and stderr, the keys restore hands new pipes under */
  pipeKeys: string[];
  tcpConnections: number;
  /** post-copy: bytes of memory kept back, for the target to pull after it resumed (0 otherwise) */
  lazyBytes: number;
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

/**
 * One dump at a time on this host: CRIU's parasite mounts a scratch /proc at
 * "proc.crtools" in the dumped process's working directory, and two dumps of
 * processes that share one (endpoints do) collide on it. Resolves with the
 * slot's release.
 */
export function dumpSlot(): Promise<() => void> {
  return hostLock(DUMP_LOCK);
}

export async function dumpTree(spec: DumpSpec): Promise<DumpResult> {
  const call = await startDump(spec, undefined);
  let done: Awaited<ReturnType<typeof criuCall>>;
  try {
    done = await call.criu;
  } catch (err) {
    // CRIU resumed the tree: it must not stay cut off.
    unlockNetns(spec.netns);
    throw err;
  }
  return afterDump(spec, call, done.hooks, 0);
}

export interface LazyDump {
  /**
   * Resolves once every image but the kept-back memory is written and the
   * page server listens: the target can take the images and restore. Rejects
   * if the dump failed (the tree then runs on, unlocked).
   */
  ready: Promise<DumpResult>;
  /**
   * Settles when CRIU's page server has ended: the target closed its
   * connection, having pulled everything or not (CRIU cannot tell; the
   * target can). The tree is then still there, stopped, its connections in
   * repair mode: the caller kills it, or resumes it (resumeInPlace) if the
   * target never took over.
   */
  served: Promise<void>;
  /** where the page server listens: this node's underlay address */
  address: string;
  port: number;
  /** the dumped tree's root */
  root: { pid: number; startTime: number };
  /** the swrk process serving the pages (it outlives the agent) */
  criuPid: number;
  criuStartTime: number;
  /** ends a page server nobody connected to (a migration that failed before the restore) */
  cancel(): Promise<void>;
}

/**
 * Post-copy: dumps everything but the tree's anonymous memory, which a CRIU
 * page server on `address`:`port` then serves to the target's lazy-pages daemon. The
 * tree stays stopped until the caller decides its fate: CRIU would kill it
 * when the connection ends, even if the target got only part of the memory
 * (hence leave_stopped), and would let it run, connections still in repair
 * mode, if serving failed (hence a SIGSTOP queued while CRIU holds it).
 * CRIU runs in its own session so that the pull survives the agent.
 */
export async function startLazyDump(spec: DumpSpec & { address: string; port: number }): Promise<LazyDump> {
  const root = { pid: spec.pid, startTime: processStartTime(spec.pid) ?? 0 };
  let readyNow!: (r: DumpResult) => void;
  let failNow!: (e: unknown) => void;
  const ready = new Promise<DumpResult>((resolve, reject) => ((readyNow = resolve), (failNow = reject)));
  let isReady = false;
  let started!: (c: StartedDump) => void;
  const whenStarted = new Promise<StartedDump>((resolve) => (started = resolve));
  const call = await startDump(spec, {
    address: spec.address,
    port: spec.port,
    onReady: (hooks) => {
      isReady = true;
      void whenStarted.then((c) => readyNow(afterDump(spec, c, hooks, lazyMemoryBytesOr0(spec.imagesDir))));
    },
  });
  started(call);
  const served = call.criu.then(
    () => undefined,
    (err: unknown) => {
      if (!isReady) {
        unlockNetns(spec.netns);
        failNow(err);
      }
      const refusal = pageServerRefusalIn(join(spec.imagesDir, 'dump.log'));
      if (refusal) spec.onRefusal?.(refusal);
      throw err;
    },
  );
  served.catch(() => undefined);
  return {
    ready, served, address: spec.address, port: spec.port, root, criuPid: call.criuPid, criuStartTime: call.criuStartTime,
    cancel: async () => {
      if (!isSameProcessAlive(call.criuPid, call.criuStartTime)) return;
      await endLazyPageServer(spec.address, spec.port, spec.tls);
      await served.catch(() => undefined);
    },
  };
}

/**
 * Ends a lazy dump's page server whose target will not come: CRIU takes a
 * connection that ends without asking for anything as the end of the pull,
 * and leaves the tree stopped for its owner to resume. Over TLS the
 * handshake is completed first, as an authenticated client: a failed one
 * would be a refusal, logged and counted as a stranger's.
 */
export function endLazyPageServer(address: string, port: number, tls: PageServerTls | undefined): Promise<void> {
  return new Promise((resolve) => {
    const sk: Socket = tls
      ? tlsConnect({ host: address, port, ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, () => sk.end())
      : tcpConnect({ host: address, port }, () => sk.end());
    sk.setTimeout(5000, () => sk.destroy());
    sk.on('close', () => resolve());
    sk.on('error', () => resolve());
  });
}

function lazyMemoryBytesOr0(dir: string): number {
  return orUnknown(() => lazyMemoryBytes(dir), 0);
}

interface StartedDump {
  criu: ReturnType<typeof criuCall>;
  started: number;
  pipeKeys: string[];
  tcpConnections: number;
  criuPid: number;
  criuStartTime: number;
}

async function startDump(spec: DumpSpec, lazy: { address: string; port: number; onReady: (hooks: { name: string; atMs: number }[]) => void } | undefined): Promise<StartedDump> {
  const unlockHost = spec.slot ?? (await dumpSlot());
  let pipeKeys: string[];
  let tcpConnections: number;
  let inode: number;
  let imagesFd: number;
  try {
    pipeKeys = stdioPipeKeys(spec.pid);
    tcpConnections = (await listTcpConnections(spec.netns)).length;
    inode = netnsInode(spec.netns);
    imagesFd = openSync(spec.imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    unlockHost();
    throw err;
  }
  const started = performance.now();
  const hooks: { name: string; atMs: number }[] = [];
  let criuPid = 0;
  const criu = criuCall({
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
      ...(spec.pageServer ? { ps: spec.pageServer, ...criuTlsOpts(spec.tls, 'connects') } : {}),
      ...(lazy ? { lazyPages: true, leaveStopped: true, ps: { address: '', port: lazy.port }, configFile: lazyListenConfig(spec.imagesDir, lazy.address), ...criuTlsOpts(spec.tls, 'serves') } : {}),
    },
    spawn: (fd) => {
      const child = criuWorker(fd, { detached: lazy !== undefined });
      criuPid = child.pid ?? 0;
      return child;
    },
    onHook: async (name) => {
      hooks.push({ name, atMs: performance.now() - started });
      // The tree is stopped when CRIU gets here: everything that arrives from now on is dropped (and logged).
      if (name === 'network-lock') lockNetns(spec.netns);
      await spec.onHook?.(name);
      // A lazy dump says it is ready once its page server listens; it then serves until the target is done.
      if (name === 'status-ready') {
        // CRIU lets the tree run (connections still in repair mode) if serving fails, e.g. on a refused
        // stranger; a stop queued now, while CRIU holds it and before it accepts anyone, keeps it stopped.
        if (lazy) stopTree(spec.pid);
        unlockHost();
        lazy?.onReady([...hooks]);
      }
    },
    logDir: spec.imagesDir,
  });
  const closeImages = () => {
    closeSync(imagesFd);
    unlockHost();
  };
  criu.then(closeImages, closeImages);
  const criuStartTime = processStartTime(criuPid) ?? 0;
  spec.onCriu?.({ criu: { pid: criuPid, startTime: criuStartTime }, pipeKeys, tcpConnections });
  return { criu, started, pipeKeys, tcpConnections, criuPid, criuStartTime };
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

/** What the dump wrote. Nothing here may fail: the tree is gone (or stopped for good), and a failure would have the caller believe it still runs. */
function afterDump(spec: DumpSpec, call: StartedDump, hooks: { name: string; atMs: number }[], lazyBytes: number): DumpResult {
  const durationMs = performance.now() - call.started;
  // Pages sent to a page server never land here; the dump's own stats count them.
  const streamed = spec.pageServer ? orUnknown(() => dumpedMemoryBytes(spec.imagesDir), 0) : 0;
  const inFlight = orUnknown(() => tcpInFlight(spec.imagesDir), { connections: 0, unackedToPeer: 0, unackedBytes: 0, unreadFromPeer: 0, timestamps: 0, sack: 0 });
  return {
    durationMs, imageBytes: imageBytes(spec.imagesDir) + streamed, lazyBytes, pipeKeys: call.pipeKeys, tcpConnections: call.tcpConnections, tcpInFlight: inFlight, hooks,
  };
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
  /** where it writes the pages, and its log */
  imagesDir: string;
}

/**
 * A CRIU page server writing into `imagesDir`, listening on `address` (any
 * port). It serves one dump and then exits; waitForPageServer() tells when
 * every page it received is written.
 */
export async function startPageServer(imagesDir: string, address: string, tls?: PageServerTls): Promise<PageServer> {
  const imagesFd = openSync(imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    // Not PAGE_SERVER: in daemon mode CRIU 4.2 answers with pid 0 (cr_page_server returns 0 to the
    // parent), and the pid is what tells when the pages are all written. The child variant reports it.
    const result = await criuCall({
      type: 'PAGE_SERVER_CHLD',
      opts: { imagesDirFd: imagesFd, ps: { address, port: 0 }, logLevel: LOG_LEVEL, logFile: 'page-server.log', ...criuTlsOpts(tls, 'serves') },
      spawn: criuWorker,
      logDir: imagesDir,
    });
    if (!result.pageServer) throw new RoamError('CHECKPOINT_FAILED', 'criu page-server answered without its pid and port');
    return { ...result.pageServer, startTime: processStartTime(result.pageServer.pid) ?? 0, imagesDir };
  } finally {
    closeSync(imagesFd);
  }
}

/**
 * Stops a page server whose dump will not come (an aborted migration), and
 * says whether it had turned a client away at the TLS handshake (which ends
 * it, and with it the dump it was waiting for).
 */
export async function stopPageServer(ps: PageServer): Promise<PageServerRefusal | undefined> {
  await stopProcess(ps.pid, ps.startTime, 0);
  return pageServerRefusalIn(join(ps.imagesDir, 'page-server.log'));
}

/** Waits until the page server has exited (it does once its dump is over). */
export async function waitForPageServer(ps: PageServer, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (isSameProcessAlive(ps.pid, ps.startTime)) {
    if (performance.now() > deadline) throw new RoamError('CHECKPOINT_FAILED', `criu page-server ${ps.pid} still running after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Whether the dump whose log is in `imagesDir` finished: CRIU logs it before
 * answering, so this holds even when nobody was left to hear the answer.
 */
export function dumpFinished(imagesDir: string): boolean {
  try {
    return readFileSync(join(imagesDir, 'dump.log'), 'utf8').includes('Dumping finished successfully');
  } catch {
    return false;
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
  /** post-copy: anonymous memory comes from the lazy-pages daemon already waiting in imagesDir (startLazyPages) */
  lazyPages?: boolean;
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
        lazyPages: spec.lazyPages ?? false,
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

export interface PullOutcome {
  /** every page the dump kept back arrived, and the daemon ended cleanly */
  complete: boolean;
  exitCode: number | null;
  copiedPages: number;
  totalPages: number;
  durationMs: number;
  /** why it is not complete (CRIU's own words where it has them) */
  reason?: string;
}

export interface LazyPagesDaemon {
  pid: number;
  startTime: number;
  /** settles when the daemon has ended: every page pulled, or not */
  outcome: Promise<PullOutcome>;
}

/** How long the lazy-pages daemon may take to read the images and listen. */
const LAZY_PAGES_READY_MS = 10000;

/**
 * Post-copy, target side: starts the daemon that will own the restored
 * tree's missing memory (CRIU's lazy-pages, pulling from the source's page
 * server at `source`), and resolves once it listens for the restore.
 */
export async function startLazyPages(imagesDir: string, source: { address: string; port: number }, tls?: PageServerTls): Promise<LazyPagesDaemon> {
  const child = lazyPagesWorker(imagesDir, source, criuTlsArgs(tls));
  const started = performance.now();
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<boolean>((resolve) => {
    child.stdio[3]?.once('data', () => resolve(true));
    child.stdio[3]?.once('end', () => resolve(false));
    child.once('error', () => resolve(false));
  });
  const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), LAZY_PAGES_READY_MS).unref());
  const answer = await Promise.race([ready, timeout]);
  if (answer !== true) {
    child.kill('SIGKILL');
    const lines = errorLines(join(imagesDir, 'lazy-pages.log'));
    const why = lines.length ? lines.slice(-3).join(' | ') : stderr.trim() || (answer === 'timeout' ? `not ready after ${LAZY_PAGES_READY_MS} ms` : 'exited');
    throw new RoamError('CHECKPOINT_FAILED', `criu lazy-pages did not start: ${why}`, { criuLog: join(imagesDir, 'lazy-pages.log'), criuErrors: lines });
  }
  child.unref();
  (child.stdio[3] as { unref?: () => void } | null)?.unref?.();
  (child.stderr as { unref?: () => void } | null)?.unref?.();
  const pid = child.pid ?? 0;
  const outcome = exited.then((end) => pullOutcome(imagesDir, end, performance.now() - started));
  return { pid, startTime: processStartTime(pid) ?? 0, outcome };
}

/**
 * Reads how the daemon ended. Its exit status is the verdict: it exits 0
 * only once no task has a range left to fetch. Its per-task account ("UFFD
 * transferred pages: (copied/total)", logged at -v4) is for the report:
 * copied can be below total, since ranges the service unmapped or
 * madvise()d away meanwhile are dropped, not fetched.
 */
function pullOutcome(imagesDir: string, end: { code: number | null; signal: NodeJS.Signals | null }, durationMs: number): PullOutcome {
  const logPath = join(imagesDir, 'lazy-pages.log');
  let copiedPages = 0;
  let totalPages = 0;
  let tasks = 0;
  try {
    for (const m of readFileSync(logPath, 'utf8').matchAll(/UFFD transferred pages: \((\d+)\/(\d+)\)/g)) {
      copiedPages += Number(m[1]);
      totalPages += Number(m[2]);
      tasks++;
    }
  } catch {
    // no log: judged by the exit status alone, which is then not enough
  }
  const complete = end.code === 0 && tasks > 0;
  const how = end.signal ? `was killed by ${end.signal}` : `exited with ${end.code}`;
  const reason = complete ? undefined : end.code !== 0
    ? `criu lazy-pages ${how}${lastErrors(logPath)}`
    : 'criu lazy-pages ended without accounting for any task';
  return { complete, exitCode: end.code, copiedPages, totalPages, durationMs, ...(reason ? { reason } : {}) };
}

/** The last two error lines of a CRIU log, to quote after a colon (nothing without any). */
function lastErrors(logPath: string): string {
  const lines = errorLines(logPath);
  return lines.length ? `: ${lines.slice(-2).join(' | ')}` : '';
}

/** Stops a lazy-pages daemon whose restore will not come or failed. */
export async function stopLazyPages(d: LazyPagesDaemon): Promise<void> {
  await stopProcess(d.pid, d.startTime, 0);
}
