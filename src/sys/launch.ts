/**
 * Starting processes through roam's helper executables (native/): a command
 * under roam-shim as an endpoint (or an OCI runtime starting a container), a program inside a network namespace
 * through roam-nsexec, and roam-hold (what a lock drops, kept). The shim
 * makes the command PID 1 of its own PID namespace in the endpoint's network
 * namespace and keeps its output in DIR/log, its pid in DIR/pid and its end
 * in DIR/exit.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RoamError } from '../errors/roam-error.js';
import { nativePaths } from './native.js';
import { cleanEnv, processStartTime } from './proc.js';

export interface StartedProcess {
  pid: number;
  shimPid: number;
  startTime: number;
}

/** Starts CMD under a shim; resolves once it runs, rejects naming why it could not. */
export function startUnderShim(dir: string, netns: string, command: readonly string[]): Promise<StartedProcess> {
  return runShim(['--netns', netns, '--dir', dir, '--', ...command], cleanEnv(), (reason) =>
    new RoamError('ENDPOINT_START_FAILED', `cannot start ${JSON.stringify(command[0])}: ${reason}`, { command: [...command], reason }));
}

/**
 * Runs an OCI runtime's detached `run` or `restore` under a shim in runtime
 * mode: the shim holds the container's stdout/stderr pipes and adopts its
 * init once the runtime has exited. `failure` words the error from the
 * shim's reason.
 */
export function startRuntimeUnderShim(dir: string, command: readonly string[], env: NodeJS.ProcessEnv, failure: (reason: string) => Error): Promise<StartedProcess> {
  return runShim(['--runtime', '--dir', dir, '--', ...command], env, failure);
}

async function runShim(args: string[], env: NodeJS.ProcessEnv, failure: (reason: string) => Error): Promise<StartedProcess> {
  const shim = spawn(nativePaths.shim, args, { detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  shim.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  shim.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const spawnError = new Promise<never>((_, reject) => shim.once('error', reject));
  const reported = new Promise<void>((resolve) => shim.stdout.once('end', resolve));
  await Promise.race([reported, spawnError]);
  shim.unref();
  // Nothing more comes on them (the shim points both at /dev/null once it has reported); held, they would keep
  // this process from ever exiting while the endpoint runs.
  shim.stdout.destroy();
  shim.stderr.destroy();
  const line = out.trim();
  const ok = /^ok (\d+)$/.exec(line);
  if (!ok) throw failure(line.startsWith('error ') ? line.slice(6) : err.trim() || `shim exited without a report (${line})`);
  const pid = Number(ok[1]);
  return { pid, shimPid: shim.pid ?? 0, startTime: processStartTime(pid) ?? 0 };
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

/** Starts argv inside the netns at `netnsPath` only (no mount namespace), detached, output to `logPath`. */
export function spawnDetachedInNetns(netnsPath: string, argv: readonly string[], logPath: string): number {
  const log = openSync(logPath, 'a');
  try {
    const child = spawn(nativePaths.nsexec, ['--net', netnsPath, '--', ...argv], { detached: true, env: cleanEnv(), stdio: ['ignore', log, log] });
    child.unref();
    if (!child.pid) throw new RoamError('PRECONDITION', `could not start ${argv[0]} in ${netnsPath}`);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** Starts roam-hold on nflog `group` inside the netns at `netnsPath`; the caller speaks its protocol (sys/packet-hold.ts). */
export function spawnPacketHold(netnsPath: string, group: number, maxBytes: number): ChildProcessByStdio<Writable, Readable, Readable> {
  return spawn(nativePaths.hold, ['--netns', netnsPath, '--group', String(group), '--max-bytes', String(maxBytes)], {
    env: cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}
