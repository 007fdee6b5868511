/**
 * Processes as the kernel shows them in /proc: identity (PID plus start time,
 * so a recycled PID is never mistaken for ours), liveness, signals, stop.
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

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

/** Waits until the process has ended, up to `ms`; then ends it. */
export async function waitForProcessEnd(pid: number, startTime: number, ms: number, pollMs = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (isSameProcessAlive(pid, startTime) && Date.now() < deadline) await sleep(pollMs);
  await stopProcess(pid, startTime, 0);
}

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

/** "pipe:[inode]" of the process's stdout and stderr (once if they are the same pipe). */
export function stdioPipeKeys(pid: number): string[] {
  const keys = new Set<string>();
  for (const fd of [1, 2]) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('pipe:')) keys.add(target);
    } catch {
      // fd closed by the program
    }
  }
  return [...keys];
}

/** The environment handed to what roam starts, without a parent's Node IPC channel. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_CHANNEL_FD;
  delete env.NODE_CHANNEL_SERIALIZATION_MODE;
  return env;
}

/** pid and every descendant, parents first (from /proc/PID/task/TID/children). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        queue.push(...readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // the task ended meanwhile
      }
    }
  }
  return out;
}

/** Continues a tree left stopped (by a restore): SIGCONT to every process in it. */
export function continueTree(pid: number): number {
  return signalTree(pid, 'SIGCONT');
}

/**
 * Stops every process in a tree (SIGSTOP). Sent while a tracer holds the
 * tree, the signal waits, and takes effect the moment the tracer lets go.
 */
export function stopTree(pid: number): number {
  return signalTree(pid, 'SIGSTOP');
}

function signalTree(pid: number, signal: NodeJS.Signals): number {
  let signalled = 0;
  for (const p of processTree(pid)) {
    try {
      process.kill(p, signal);
      signalled++;
    } catch {
      // gone already
    }
  }
  return signalled;
}

const CAP_SYS_RESOURCE = 24;

/** Whether this process has CAP_SYS_RESOURCE in its effective set (some hosts' root does not). */
export function hasCapSysResource(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? (BigInt(`0x${m[1]}`) >> BigInt(CAP_SYS_RESOURCE)) % 2n === 1n : false;
}

/** fs.pipe-max-size: the largest pipe an unprivileged F_SETPIPE_SZ may ask for. */
export function pipeMaxSize(): number {
  return Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim());
}

/** Anonymous (private, written) memory of the tree rooted at `pid`: what a dump has to move. */
export function treeAnonymousBytes(pid: number): number {
  let kib = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /^Anonymous:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'));
      kib += Number(m?.[1] ?? 0);
    } catch {
      // ended meanwhile
    }
  }
  return kib * 1024;
}

/** The inode that names the network namespace pinned at `path` (or a process's /proc/PID/ns/net). */
export function netnsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Every process (but this one) whose network namespace is one of `inodes`. */
export function processesInNetns(inodes: ReadonlySet<number>): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const ino = netnsInode(`/proc/${entry}/ns/net`);
    if (ino !== undefined && inodes.has(ino)) found.push(Number(entry));
  }
  return found;
}
