/**
 * Checkpoint and restore of a container, through its OCI runtime (runc),
 * which drives CRIU itself: the container stays one the runtime knows, on
 * the source until the dump and on the target from the restore. What roam
 * adds to runc's own sequence comes through CRIU's options file (which the
 * container's config names): no CRIU network lock (roam locks the
 * namespace itself, at the network-lock hook, as for any endpoint), the
 * hooks passed to the agent (roam-criu-hook), page-server TLS for a
 * streamed dump, and a restored tree left stopped for the handover.
 * The result has the shape executor.ts gives for a plain process tree.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointContainer, restoreContainer as runcRestore, type Container } from '../sys/runc.js';
import { nativePaths } from '../sys/native.js';
import { lockNetns, unlockNetns } from '../sys/nft.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { processStartTime } from '../sys/proc.js';
import { dumpSlot, imageBytes, tcpInFlight, type DumpResult, type RestoreResult } from './executor.js';
import { criuTlsOptionLines, type PageServerTls } from './page-server-tls.js';

export interface ContainerFiles {
  container: Container;
  /** the endpoint's folder: runc's log, the shim's files */
  dir: string;
  bundle: string;
  /** the CRIU options file the container's config names */
  criuConfig: string;
}

export interface ContainerDumpSpec extends ContainerFiles {
  netns: string;
  imagesDir: string;
  pageServer?: { address: string; port: number };
  tls?: PageServerTls;
  slot?: () => void;
  onHook?: (name: string) => Promise<void> | void;
  /** runc is running the dump (and CRIU under it): who it is, for a journal that must outlive this process */
  onRuntime?: (runtime: { pid: number; startTime: number }) => void;
}

export async function dumpContainer(spec: ContainerDumpSpec): Promise<DumpResult> {
  const unlockHost = spec.slot ?? (await dumpSlot());
  const started = performance.now();
  const hooks: { name: string; atMs: number }[] = [];
  try {
    const tcpConnections = (await listTcpConnections(spec.netns)).length;
    writeCriuOptions(spec.criuConfig, spec.pageServer ? criuTlsOptionLines(spec.tls) : []);
    await withHookSocket(async (name) => {
      hooks.push({ name, atMs: performance.now() - started });
      // The tree is frozen when CRIU gets here: from now on what arrives is dropped (and kept, for the handover).
      if (name === 'network-lock') lockNetns(spec.netns);
      await spec.onHook?.(name);
    }, async (socket) => {
      try {
        const onStart = (pid: number) => spec.onRuntime?.({ pid, startTime: processStartTime(pid) ?? 0 });
        await checkpointContainer(spec.container, spec.dir, spec.imagesDir, socket, spec.pageServer, onStart);
      } catch (err) {
        // CRIU resumed the container: it must not stay cut off.
        unlockNetns(spec.netns);
        throw err;
      }
    });
    return {
      durationMs: performance.now() - started, imageBytes: imageBytes(spec.imagesDir), pipeKeys: [], tcpConnections,
      lazyBytes: 0, tcpInFlight: tcpInFlight(spec.imagesDir), hooks,
    };
  } finally {
    unlockHost();
  }
}

export interface ContainerRestoreSpec extends ContainerFiles {
  imagesDir: string;
  /** leave the restored tree stopped; the caller continues it once its network is ready */
  leaveStopped: boolean;
}

/** Restores the container from `imagesDir` under a new shim; runc knows it again from here. */
export async function restoreContainer(spec: ContainerRestoreSpec): Promise<RestoreResult> {
  const started = performance.now();
  const hooks: { name: string; atMs: number }[] = [];
  writeCriuOptions(spec.criuConfig, spec.leaveStopped ? ['leave-stopped'] : []);
  const r = await withHookSocket((name) => void hooks.push({ name, atMs: performance.now() - started }), (socket) =>
    runcRestore(spec.container, spec.bundle, spec.dir, spec.imagesDir, socket));
  return { pid: r.pid, shimPid: r.shimPid, durationMs: performance.now() - started, hooks };
}

const HOOK_DIR_PREFIX = 'roam-hook-';

/** Removes the hook sockets of agents that died while runc was dumping or restoring (at agent start). */
export function removeStaleHookSockets(): number {
  let removed = 0;
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${HOOK_DIR_PREFIX}(\\d+)-`).exec(name);
    if (!m || Number(m[1]) === process.pid || existsSync(`/proc/${m[1]}`)) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/**
 * What CRIU is told beyond runc's flags, rewritten before each dump or
 * restore. The namespace lock is roam's (at the network-lock hook); CRIU's
 * own would need iptables, and its drops would not be kept.
 */
function writeCriuOptions(path: string, extra: string[]): void {
  writeFileSync(path, ['network-lock skip', `action-script ${nativePaths.criuHook}`, ...extra, ''].join('\n'));
}

/**
 * Serves CRIU's hooks (through roam-criu-hook) on a fresh unix socket while
 * `work` runs. A hook that throws is answered with the error: CRIU then
 * fails the dump or restore, as it would on a failed notification.
 */
async function withHookSocket<T>(onHook: (name: string) => Promise<void> | void, work: (socket: string) => Promise<T>): Promise<T> {
  // In the temporary folder, not the state directory: a unix socket's path has 107 bytes at most.
  const dir = mkdtempSync(join(tmpdir(), `${HOOK_DIR_PREFIX}${process.pid}-`));
  const socket = join(dir, 's');
  const server: Server = createServer((conn) => {
    let line = '';
    conn.setEncoding('utf8').on('data', (d: string) => {
      line += d;
      if (!line.includes('\n')) return;
      const name = line.slice(0, line.indexOf('\n')).trim();
      Promise.resolve()
        .then(() => onHook(name))
        .then(() => conn.end('ok\n'), (err: unknown) => conn.end(`error ${err instanceof Error ? err.message : String(err)}\n`));
    });
    conn.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socket, resolve));
  try {
    return await work(socket);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
