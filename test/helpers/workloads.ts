/**
 * The programs tests and benches run as endpoints (src/workloads, built into
 * dist/; test/fixtures, run from the source tree), and reading what the
 * stream-check client writes.
 */
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

/** A program of src/workloads, as built. */
export const workload = (file: string): string => fileURLToPath(new URL(`../../src/workloads/${file}`, import.meta.url));

/** A file of test/fixtures (not built: from the source tree). */
export const fixture = (file: string): string => fileURLToPath(new URL(`../../../test/fixtures/${file}`, import.meta.url));

/** A progress line of stream-check (every 250 ms). */
export interface StreamProgress {
  sent: number;
  verified: number;
  maxGapMs: number;
  open?: number;
}

/** The last progress line of a stream-check log, and its first error line if its stream ever broke. */
export function streamProgress(log: string): { last: StreamProgress | undefined; failed: string | undefined } {
  const lines = log.trim().split('\n');
  const failed = lines.find((l) => l.startsWith('MISMATCH') || l.startsWith('DISCONNECTED'));
  const progress = lines.filter((l) => l.startsWith('{"sent"'));
  const last = progress.length ? (JSON.parse(progress[progress.length - 1]!) as StreamProgress) : undefined;
  return { last, failed };
}

/**
 * Asks an echo server for the checksum of its memory (SIGUSR2 to `pid`); resolves with what it writes to its
 * log (`log` reads it): the checksum and how many connections it holds.
 */
export async function echoMemory(pid: number, log: () => string, timeoutMs = 20000): Promise<{ sum: string; connections: number }> {
  const from = log().length;
  process.kill(pid, 'SIGUSR2');
  const line = /memory sha256 ([0-9a-f]+), (\d+) connections/;
  await waitFor('the checksum line', () => line.test(log().slice(from)), timeoutMs);
  const [, sum, connections] = line.exec(log().slice(from))!;
  return { sum: sum!, connections: Number(connections) };
}

/**
 * Waits until the stream-check client `name`, whose log `log` reads, has verified `beyond` more bytes than
 * when this was called (0: any byte at all), failing at once on an error line; returns its last progress.
 */
export async function streamVerifies(name: string, log: () => string, beyond: number, timeoutMs = 10000): Promise<StreamProgress> {
  const start = streamProgress(log()).last?.verified ?? 0;
  let last: StreamProgress | undefined;
  await waitFor(`${name} to verify ${beyond} more bytes`, () => {
    const p = streamProgress(log());
    if (p.failed) throw new Error(`${name}: ${p.failed}`);
    last = p.last;
    return (p.last?.verified ?? 0) > start + beyond;
  }, timeoutMs);
  return last!;
}
