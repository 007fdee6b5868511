/**
 * Checkpoint and restore of a container, through its OCI runtime (runc),
 * which drives CRIU itself: the container stays one the runtime knows, on
 * the source until the dump and on the target from the restore. What roam
 * adds to runc's own sequence comes through CRIU's options file (which the
 * container's config names): no CRIU network lock (roam locks the
 * namespace itself, at the network-lock notification, as for any
 * endpoint), the notifications passed to the agent (roam-criu-hook),
 * page-server TLS for a streamed dump, and a restored tree left stopped for
 * the handover. The results have the shape a process tree's have.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { checkpointContainer, restoreContainer, type Container } from '../sys/runc.js';
import { nativePaths } from '../sys/native.js';
import { unlockNetns } from '../sys/nft.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { processStartTime } from '../sys/proc.js';
import type { Checkpointer, DumpRequest, DumpResult, HookTime, RestoreRequest, RestoreResult } from './checkpointer.js';
import { imageBytes, tcpInFlight } from './dump-images.js';
import { dumpSlot } from './dump-slot.js';
import { composeNotify, dispatchNotify, lockAtFreeze } from './notify.js';
import { criuTlsOptionLines } from './page-server-tls.js';

export interface ContainerFiles {
  container: Container;
  /** the endpoint's folder: runc's log, the shim's files */
  dir: string;
  bundle: string;
  /** the CRIU options file the container's config names */
  criuConfig: string;
}

export class RuncContainerCheckpointer implements Checkpointer {
  readonly kind = 'container';

  constructor(private readonly files: ContainerFiles) {}

  async dump(req: DumpRequest): Promise<DumpResult> {
    const { container, dir, criuConfig } = this.files;
    const unlockHost = req.slot ?? (await dumpSlot());
    const started = performance.now();
    const hooks: HookTime[] = [];
    try {
      const tcpConnections = (await listTcpConnections(req.netns)).length;
      writeCriuOptions(criuConfig, req.pageServer ? criuTlsOptionLines(req.tls) : []);
      const notify = composeNotify(lockAtFreeze(req.netns), req.notify);
      await withHookSocket(async (name) => {
        hooks.push({ name, atMs: performance.now() - started });
        await dispatchNotify(notify, name);
      }, async (socket) => {
        try {
          const onStart = (pid: number) => req.onStarted?.({ dumper: { pid, startTime: processStartTime(pid) ?? 0 }, pipeKeys: [], tcpConnections: 0 });
          await checkpointContainer(container, dir, req.imagesDir, socket, req.pageServer, onStart);
        } catch (err) {
          // CRIU resumed the container: it must not stay cut off.
          unlockNetns(req.netns);
          throw err;
        }
      });
      return {
        durationMs: performance.now() - started, imageBytes: imageBytes(req.imagesDir), pipeKeys: [], tcpConnections,
        lazyBytes: 0, tcpInFlight: tcpInFlight(req.imagesDir), hooks,
      };
    } finally {
      unlockHost();
    }
  }

  /** Restores the container from `imagesDir` under a new shim; runc knows it again from here. Its network namespace is the one its config names. */
  async restore(req: RestoreRequest): Promise<RestoreResult> {
    if (req.lazyPages) throw new RoamError('INPUT_INVALID', `container ${this.files.container.id}: post-copy restore is not supported for containers`);
    const { container, bundle, dir, criuConfig } = this.files;
    const started = performance.now();
    const hooks: HookTime[] = [];
    writeCriuOptions(criuConfig, req.leaveStopped ? ['leave-stopped'] : []);
    const r = await withHookSocket(async (name) => {
      hooks.push({ name, atMs: performance.now() - started });
      await dispatchNotify(req.notify, name);
    }, (socket) => restoreContainer(container, bundle, dir, req.imagesDir, socket));
    return { pid: r.pid, shimPid: r.shimPid, durationMs: performance.now() - started, hooks };
  }
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
 * restore. The namespace lock is roam's (at the network-lock notification);
 * CRIU's own would need iptables, and its drops would not be kept.
 */
function writeCriuOptions(path: string, extra: string[]): void {
  writeFileSync(path, ['network-lock skip', `action-script ${nativePaths.criuHook}`, ...extra, ''].join('\n'));
}

/**
 * Serves CRIU's notifications (through roam-criu-hook) on a fresh unix
 * socket while `work` runs. One that throws is answered with the error:
 * CRIU then fails the dump or restore, as it would on a failed action script.
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
