/**
 * runc, the OCI runtime roam runs containers with: the sole spawner of
 * runc. Each node keeps its own runtime state (`--root`), so `runc list`
 * there shows the containers the node runs. runc drives CRIU itself for
 * checkpoint and restore; what roam needs from CRIU beyond runc's flags
 * comes from the CRIU options file named in the container's config
 * (annotation org.criu.config), and CRIU's hooks reach the agent through
 * roam-criu-hook (native/src/criu-hook.c) on the socket in
 * ROAM_CRIU_HOOK_SOCKET.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { startRuntimeUnderShim, type StartedProcess } from './launch.js';
import { cleanEnv } from './proc.js';
import { errorLines } from './criu/rpc.js';

export const CRIU_CONFIG_ANNOTATION = 'org.criu.config';

export interface Container {
  /** runc's state directory on this node */
  root: string;
  id: string;
}

/** runc's own default OCI configuration (`runc spec`), the base of a container made from a root filesystem. */
export async function defaultSpec(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'roam-spec-'));
  try {
    await runc(['spec', '--bundle', dir], 'runc spec');
    return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `runc run --detach` under a shim (dir: the endpoint's folder, which keeps runc's log). */
export function runContainer(c: Container, bundle: string, dir: string): Promise<StartedProcess> {
  return startRuntimeUnderShim(dir, ['runc', ...globals(c, dir), 'run', '--detach', '--bundle', bundle, c.id], cleanEnv(), failedIn(dir, `runc run ${c.id}`));
}

/**
 * `runc restore --detach` from `imagesDir` under a shim: the restored tree
 * gets the shim's fresh pipes for the ones it had, and becomes the shim's.
 */
export function restoreContainer(c: Container, bundle: string, dir: string, imagesDir: string, hookSocket: string): Promise<StartedProcess> {
  return startRuntimeUnderShim(
    dir,
    ['runc', ...globals(c, dir), 'restore', '--detach', '--tcp-established', '--image-path', imagesDir, '--bundle', bundle, c.id],
    { ...cleanEnv(), ROAM_CRIU_HOOK_SOCKET: hookSocket },
    failedIn(dir, `runc restore ${c.id}`, join(imagesDir, 'restore.log')),
  );
}

/**
 * `runc checkpoint`: the container is frozen, dumped into `imagesDir` with
 * its established connections, and gone (runc forgets it) once this
 * resolves. `onStart`: runc's pid, as soon as it runs.
 */
export async function checkpointContainer(
  c: Container, dir: string, imagesDir: string, hookSocket: string, pageServer?: { address: string; port: number }, onStart?: (pid: number) => void,
): Promise<void> {
  const ps = pageServer ? ['--page-server', `${pageServer.address}:${pageServer.port}`] : [];
  await runc([...globals(c, dir), 'checkpoint', '--tcp-established', '--image-path', imagesDir, ...ps, c.id], `runc checkpoint ${c.id}`, {
    env: { ...cleanEnv(), ROAM_CRIU_HOOK_SOCKET: hookSocket }, dir, criuLog: join(imagesDir, 'dump.log'), ...(onStart ? { onStart } : {}),
  });
}

/** Kills and forgets the container; one runc does not know counts as gone. */
export async function deleteContainer(c: Container, dir: string): Promise<void> {
  try {
    await runc([...globals(c, dir), 'delete', '--force', c.id], `runc delete ${c.id}`);
  } catch (err) {
    if (err instanceof RoamError && /does not exist/.test(err.message)) return;
    throw err;
  }
}

/** What runc's state records about a running container that roam needs to reach its network. */
export interface RuntimeState {
  /** the container's first process */
  pid: number;
  /** its /proc/PID/stat starttime */
  startTime: number;
  /** the network namespace it joined (a pod's sandbox), or its own */
  netns: string;
}

/** Reads `<root>/<id>/state.json`, the state runc keeps per container (what `runc state` prints is a part of it). */
export function readRuntimeState(root: string, id: string): RuntimeState {
  const path = join(root, id, 'state.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new RoamError(e.code === 'ENOENT' ? 'NOT_FOUND' : 'CONTAINER_FAILED', `runtime state of container ${id}: cannot read ${path} (${e.code ?? e.message})`, { path });
  }
  return parseRuntimeState(text, path);
}

/** Pure: runc's state.json to what roam needs; a file without those fields is an error naming the file. */
export function parseRuntimeState(text: string, path: string): RuntimeState {
  let state: { init_process_pid?: unknown; init_process_start?: unknown; config?: { namespaces?: { type?: unknown; path?: unknown }[] }; namespace_paths?: Record<string, unknown> };
  try {
    state = JSON.parse(text) as typeof state;
  } catch (err) {
    throw new RoamError('CONTAINER_FAILED', `runtime state ${path}: not JSON (${(err as Error).message})`, { path });
  }
  const pid = state.init_process_pid;
  const startTime = state.init_process_start;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || typeof startTime !== 'number') {
    throw new RoamError('CONTAINER_FAILED', `runtime state ${path}: no init_process_pid and init_process_start`, { path });
  }
  // A pod's containers join the sandbox's namespace by path; a container that made its own has none there.
  const joined = state.config?.namespaces?.find((n) => n.type === 'NEWNET' || n.type === 'network')?.path;
  const own = state.namespace_paths?.NEWNET;
  const netns = typeof joined === 'string' && joined ? joined : typeof own === 'string' && own ? own : `/proc/${pid}/ns/net`;
  return { pid, startTime, netns };
}

/** The containers runc knows on this node (`runc list`). */
export async function listContainers(root: string): Promise<{ id: string; pid: number; status: string }[]> {
  const out = await runc(['--root', root, 'list', '--format', 'json'], 'runc list');
  return (JSON.parse(out || '[]') ?? []) as { id: string; pid: number; status: string }[];
}

function globals(c: Container, dir: string): string[] {
  return ['--root', c.root, '--log', join(dir, 'runc.log')];
}

function runc(args: string[], what: string, o: { env?: NodeJS.ProcessEnv; dir?: string; criuLog?: string; onStart?: (pid: number) => void } = {}): Promise<string> {
  const child = spawn('runc', args, { env: o.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid) o.onStart?.(child.pid);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4096)));
  return new Promise((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => reject(new RoamError('PRECONDITION', `${what}: cannot run runc (${e.code ?? e.message}); run 'npm run setup'`)));
    child.once('close', (code) => {
      if (code === 0) return resolve(out);
      reject(failure(what, o.dir, o.criuLog, err.trim() || `exit ${code}`));
    });
  });
}

function failedIn(dir: string, what: string, criuLog?: string): (reason: string) => Error {
  return (reason) => failure(what, dir, criuLog, reason);
}

/** A failed runc call, in runc's own words (its log), then CRIU's (its log), then what else was said. */
function failure(what: string, dir: string | undefined, criuLog: string | undefined, otherwise: string): RoamError {
  const said = [...(dir ? runcErrors(dir) : []), ...(criuLog ? errorLines(criuLog).slice(-2) : [])].slice(-3).join(' | ');
  return new RoamError('CONTAINER_FAILED', `${what}: ${said || otherwise}`, { reason: otherwise, ...(criuLog ? { criuLog } : {}) });
}

/** The error messages runc logged (text format: time=… level=error msg="…"). */
function runcErrors(dir: string): string[] {
  try {
    return [...readFileSync(join(dir, 'runc.log'), 'utf8').matchAll(/level=(?:error|fatal) msg="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"')).slice(-2);
  } catch {
    return [];
  }
}
