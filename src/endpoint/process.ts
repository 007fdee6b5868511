/**
 * Endpoint processes, through roam-shim (native/src/shim.c): start, identify,
 * signal, stop. The shim makes the command PID 1 of its own PID namespace in
 * the endpoint's network namespace and keeps its output in DIR/log.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RoamError } from '../errors/roam-error.js';
import { nativePaths } from '../sys/native.js';

export interface StartedProcess {
  pid: number;
  shimPid: number;
  startTime: number;
}

/** Starts CMD under a shim; resolves once it runs, rejects naming why it could not. */
export async function startUnderShim(dir: string, netns: string, command: readonly string[]): Promise<StartedProcess> {
  const shim = spawn(nativePaths.shim, ['--netns', netns, '--dir', dir, '--', ...command], {
    detached: true,
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  shim.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  shim.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const spawnError = new Promise<never>((_, reject) => shim.once('error', reject));
  const reported = new Promise<void>((resolve) => shim.stdout.once('end', resolve));
  await Promise.race([reported, spawnError]);
  shim.unref();
  const line = out.trim();
  const ok = /^ok (\d+)$/.exec(line);
  if (!ok) {
    const reason = line.startsWith('error ') ? line.slice(6) : err.trim() || `shim exited without a report (${line})`;
    throw new RoamError('ENDPOINT_START_FAILED', `cannot start ${JSON.stringify(command[0])}: ${reason}`, { command: [...command], reason });
  }
  const pid = Number(ok[1]);
  return { pid, shimPid: shim.pid ?? 0, startTime: processStartTime(pid) ?? 0 };
}

/** /proc/PID/stat field 22, or undefined when there is no such process. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

export function isSameProcessAlive(pid: number, startTime: number): boolean {
  const now = processStartTime(pid);
  if (now === undefined || now !== startTime) return false;
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return state.slice(state.lastIndexOf(')') + 2, state.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** True if the process has a handler for `signal` (PID 1 of a namespace ignores signals it does not catch). */
function catchesSignal(pid: number, signal: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status);
    return m ? (BigInt(`0x${m[1]}`) & (1n << BigInt(signal - 1))) !== 0n : false;
  } catch {
    return false;
  }
}

const SIGTERM = 15;

/**
 * Ends the process: SIGTERM if it handles it (and a grace period), SIGKILL
 * otherwise or afterwards. Killing PID 1 of the endpoint's PID namespace ends
 * every process in it.
 */
export async function stopProcess(pid: number, startTime: number, graceMs: number): Promise<void> {
  if (!isSameProcessAlive(pid, startTime)) return;
  if (catchesSignal(pid, SIGTERM)) {
    signal(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && isSameProcessAlive(pid, startTime)) await sleep(20);
  }
  if (isSameProcessAlive(pid, startTime)) signal(pid, 'SIGKILL');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && isSameProcessAlive(pid, startTime)) await sleep(10);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Waits for the shim to record the exit (it drains the pipes first). */
export async function waitForShimExit(dir: string, shimPid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(join(dir, 'exit')) || processStartTime(shimPid) === undefined) return;
    await sleep(10);
  }
}

export function exitStatus(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, 'exit'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The environment handed to what roam starts, without a parent's Node IPC channel. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_CHANNEL_FD;
  delete env.NODE_CHANNEL_SERIALIZATION_MODE;
  return env;
}
