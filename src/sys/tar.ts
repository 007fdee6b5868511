/**
 * GNU tar, the one program roam uses to copy file trees (a container's
 * image, its root filesystem changes, its volumes): it keeps what a plain
 * copy loses, such as owners, modes, symlinks, device nodes (overlayfs
 * whiteouts) and extended attributes (overlayfs opaque directories).
 * The sole spawner of tar.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { RoamError } from '../errors/roam-error.js';
import { cleanEnv } from './proc.js';

/** What keeps a tree's metadata, on both sides. */
const KEEP = ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls'];

export interface TarOut {
  /** the archive, as tar writes it */
  stream: Readable;
  /** settles when tar has exited: rejects with its own words if it failed */
  done: Promise<void>;
}

/** Archives `members` (paths relative to `dir`, each on its own: no recursion), in the order given, into `file`. */
export function tarCreateFile(dir: string, members: readonly string[], file: string): Promise<void> {
  return startCreate(dir, members, file).done;
}

/**
 * As tarCreateFile, onto a stream. `live`: the tree is in use and may change
 * while it is read (a later pass sends what changed): a file that changed
 * or went meanwhile is not an error.
 */
export function tarCreateStream(dir: string, members: readonly string[], options: { live?: boolean } = {}): TarOut {
  const { child, done } = startCreate(dir, members, '-', options.live ?? false);
  return { stream: child.stdout!, done };
}

/** The whole tree under `dir`, in name order (the same tree gives the same archive), onto a stream. */
export function tarCreateTreeStream(dir: string): TarOut {
  const child = spawn('tar', ['--create', '--file=-', `--directory=${dir}`, ...KEEP, '--sort=name', '.'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  return { stream: child.stdout, done: exited(child, `tar --create in ${dir}`) };
}

function startCreate(dir: string, members: readonly string[], file: string, live = false) {
  const tolerate = live ? ['--ignore-failed-read', '--warning=no-file-changed', '--warning=no-file-removed', '--warning=no-file-shrank'] : [];
  const child = spawn('tar', ['--create', `--file=${file}`, `--directory=${dir}`, ...KEEP, ...tolerate, '--no-recursion', '--null', '--files-from=-'], {
    env: cleanEnv(), stdio: ['pipe', file === '-' ? 'pipe' : 'ignore', 'pipe'],
  });
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(members.map((m) => `${m}\0`).join(''));
  // GNU tar exits 1 when a file changed as it was read, and only then.
  return { child, done: exited(child, `tar --create in ${dir}`, () => undefined, live ? [0, 1] : [0]) };
}

/** Unpacks an archive (a file, or a stream) into `dir`, replacing what is there. */
export function tarExtract(dir: string, from: string | Readable): Promise<void> {
  const child = spawn('tar', ['--extract', `--file=${typeof from === 'string' ? from : '-'}`, `--directory=${dir}`, ...KEEP, '--same-permissions', '--same-owner', '--overwrite'], {
    env: cleanEnv(), stdio: [typeof from === 'string' ? 'ignore' : 'pipe', 'ignore', 'pipe'],
  });
  let inputError: Error | undefined;
  if (typeof from !== 'string' && child.stdin) {
    child.stdin.on('error', () => undefined);
    from.on('error', (err) => {
      inputError = err;
      child.kill('SIGKILL');
    });
    from.pipe(child.stdin);
  }
  return exited(child, `tar --extract into ${dir}`, () => inputError);
}

function exited(child: ReturnType<typeof spawn>, what: string, inputError: () => Error | undefined = () => undefined, success = [0]): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2048)));
  return new Promise((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => reject(new RoamError('PRECONDITION', `${what}: cannot run tar (${err.code ?? err.message})`)));
    child.once('close', (code, signal) => {
      if (code !== null && success.includes(code)) return resolve();
      const input = inputError();
      if (input) return reject(new RoamError('CONTAINER_FAILED', `${what}: the archive stopped arriving (${input.message})`));
      const why = stderr.trim().split('\n').slice(-3).join(' | ') || (signal ? `killed by ${signal}` : `exit ${code}`);
      reject(new RoamError('CONTAINER_FAILED', `${what}: ${why}`));
    });
  });
}
