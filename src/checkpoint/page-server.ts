/**
 * The target's CRIU page server of streamed mode: the source's dump sends
 * the memory pages to it while it runs, and only the small images travel
 * after the freeze.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { criuCall, pageServerRefusalIn, type PageServerRefusal } from '../sys/criu/rpc.js';
import { criuWorker } from '../sys/criu/workers.js';
import { gatePort, ungatePort } from '../sys/port-gate.js';
import { freePort } from '../sys/ports.js';
import { isSameProcessAlive, processStartTime, stopProcess } from '../sys/proc.js';
import { CRIU_LOG_LEVEL } from './criu-options.js';
import { criuTlsOpts, type PageServerTls } from './page-server-tls.js';

export interface PageServer {
  pid: number;
  port: number;
  /** so that a recycled pid is never taken for the page server */
  startTime: number;
  /** where it writes the pages, and its log */
  imagesDir: string;
  /** only the migration's other end may connect (sys/port-gate.ts), until it ends */
  gated: boolean;
}

/**
 * A CRIU page server writing into `imagesDir`, listening on `address` (a
 * free port). It serves one dump and then exits; waitForPageServer() tells
 * when every page it received is written. With `allow`, its port is gated
 * before it listens: only those addresses (and this node) reach it.
 */
export async function startPageServer(imagesDir: string, address: string, tls?: PageServerTls, allow?: readonly string[]): Promise<PageServer> {
  const port = await freePort(address);
  if (allow) gatePort(port, [...allow, address]);
  const imagesFd = openSync(imagesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    // Not PAGE_SERVER: in daemon mode CRIU 4.2 answers with pid 0 (cr_page_server returns 0 to the
    // parent), and the pid is what tells when the pages are all written. The child variant reports it.
    const result = await criuCall({
      type: 'PAGE_SERVER_CHLD',
      opts: { imagesDirFd: imagesFd, ps: { address, port }, logLevel: CRIU_LOG_LEVEL, logFile: 'page-server.log', ...criuTlsOpts(tls, 'serves') },
      spawn: criuWorker,
      logDir: imagesDir,
    });
    if (!result.pageServer) throw new RoamError('CHECKPOINT_FAILED', 'criu page-server answered without its pid and port');
    return { ...result.pageServer, startTime: processStartTime(result.pageServer.pid) ?? 0, imagesDir, gated: allow !== undefined };
  } catch (err) {
    if (allow) ungatePort(port);
    throw err;
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
  if (ps.gated) ungatePort(ps.port);
  return pageServerRefusalIn(join(ps.imagesDir, 'page-server.log'));
}

/** Lifts the gate of a page server whose dump is over (after the unlock: not in the frozen window). */
export function ungatePageServer(ps: PageServer): void {
  if (ps.gated) ungatePort(ps.port);
}

/** Waits until the page server has exited (it does once its dump is over). */
export async function waitForPageServer(ps: PageServer, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (isSameProcessAlive(ps.pid, ps.startTime)) {
    if (performance.now() > deadline) throw new RoamError('CHECKPOINT_FAILED', `criu page-server ${ps.pid} still running after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
