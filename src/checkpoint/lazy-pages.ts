/**
 * Post-copy, target side: CRIU's lazy-pages daemon, which owns the restored
 * tree's missing memory and pulls it from the source's lazy page server.
 */
import { Type, type Static } from '@sinclair/typebox';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { errorLines } from '../sys/criu/rpc.js';
import { lazyPagesWorker } from '../sys/criu/workers.js';
import { processStartTime, stopProcess } from '../sys/proc.js';
import { criuTlsArgs, type PageServerTls } from './page-server-tls.js';

/** How a post-copy pull ended: the lazy-pages daemon's exit and its page count (a schema: the target tells the source). */
export const PullOutcome = Type.Object(
  {
    /** every page the dump kept back arrived, and the daemon ended cleanly */
    complete: Type.Boolean(),
    exitCode: Type.Union([Type.Integer(), Type.Null()]),
    copiedPages: Type.Integer({ minimum: 0 }),
    totalPages: Type.Integer({ minimum: 0 }),
    durationMs: Type.Number({ minimum: 0 }),
    /** why it is not complete (CRIU's own words where it has them) */
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type PullOutcome = Static<typeof PullOutcome>;

export interface LazyPagesDaemon {
  pid: number;
  startTime: number;
  /** settles when the daemon has ended: every page pulled, or not */
  outcome: Promise<PullOutcome>;
}

/** How long the lazy-pages daemon may take to read the images and listen. */
const LAZY_PAGES_READY_MS = 10000;

/**
 * Starts the daemon that will own the restored tree's missing memory,
 * pulling from the source's page server at `source`, and resolves once it
 * listens for the restore.
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
