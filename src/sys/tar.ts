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

/**
 * Unpacks an archive (a file, or a stream) into `dir`, replacing what is
 * there. An existing non-directory at a member's path is unlinked and the
 * member written anew (tar's default, not `--overwrite`, which writes into
 * the existing file): nothing is written through an existing inode. tar
 * still follows a symlink among a member's parents: an archive from a peer
 * is checked first (container/tree-guard.ts).
 */
export function tarExtract(dir: string, from: string | Readable): Promise<void> {
  const child = spawn('tar', ['--extract', `--file=${typeof from === 'string' ? from : '-'}`, `--directory=${dir}`, ...KEEP, '--same-permissions', '--same-owner'], {
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

/** A member of an archive, as tar itself reads it (so no parser of ours can read it otherwise). */
export interface TarMember {
  /** the first letter of tar's verbose listing: `-` file, `d` directory, `l` symlink, `h` hard link, `c`/`b` device, `p` fifo; anything else as listed */
  type: string;
  /** the name as stored, byte for byte (a latin1 string: one char per byte) */
  name: string;
  /** a symlink's target or a hard link's, as stored (latin1) */
  link?: string;
  /** a device node's numbers */
  device?: { major: number; minor: number };
}

/** Every member of the archive `file`, in archive order, from `tar --list --verbose` (C locale, C-quoted names). */
export function tarList(file: string): Promise<TarMember[]> {
  const child = spawn('tar', ['--list', '--verbose', '--numeric-owner', '--quoting-style=c', `--file=${file}`], {
    env: { ...cleanEnv(), LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  return exited(child, `tar --list of ${file}`).then(() => parseTarListing(Buffer.concat(out).toString('latin1')));
}

/** tar's verbose listing, one member a line (exported for tests). A line of any other shape is refused. */
export function parseTarListing(text: string): TarMember[] {
  const members: TarMember[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const q = line.indexOf('"');
    const head = /^(\S)\S{9} \d+\/\d+ +(?:\d+|(\d+),(\d+))(?: \S+){1,2} $/.exec(q < 0 ? line : line.slice(0, q));
    if (!head) throw new RoamError('INPUT_INVALID', `archive listing: cannot read the line ${JSON.stringify(line)}`);
    const name = unquoteC(line, q);
    const member: TarMember = { type: head[1]!, name: name.value };
    if (head[2] !== undefined) member.device = { major: Number(head[2]), minor: Number(head[3]) };
    const rest = line.slice(name.end);
    const arrow = member.type === 'l' ? ' -> ' : member.type === 'h' ? ' link to ' : undefined;
    if (arrow && rest.startsWith(arrow)) {
      const link = unquoteC(line, name.end + arrow.length);
      if (link.end !== line.length) throw new RoamError('INPUT_INVALID', `archive listing: cannot read the line ${JSON.stringify(line)}`);
      member.link = link.value;
    } else if (rest !== '') throw new RoamError('INPUT_INVALID', `archive listing: cannot read the line ${JSON.stringify(line)}`);
    members.push(member);
  }
  return members;
}

const C_ESCAPES: Record<string, number> = { '\\': 0x5c, '"': 0x22, n: 0x0a, t: 0x09, a: 0x07, b: 0x08, f: 0x0c, r: 0x0d, v: 0x0b, '?': 0x3f };

/** The C-quoted string that starts at `at` in `line` (the quote), as bytes in a latin1 string, and where it ends. */
function unquoteC(line: string, at: number): { value: string; end: number } {
  const bad = () => new RoamError('INPUT_INVALID', `archive listing: cannot read the name in ${JSON.stringify(line)}`);
  if (line[at] !== '"') throw bad();
  const bytes: number[] = [];
  let i = at + 1;
  for (;;) {
    const c = line[i];
    if (c === undefined) throw bad();
    if (c === '"') return { value: Buffer.from(bytes).toString('latin1'), end: i + 1 };
    if (c !== '\\') {
      bytes.push(line.charCodeAt(i));
      i++;
      continue;
    }
    const e = line[i + 1];
    if (e === undefined) throw bad();
    const octal = /^[0-7]{1,3}/.exec(line.slice(i + 1, i + 4));
    if (octal) {
      const value = parseInt(octal[0], 8);
      if (value > 0xff) throw bad();
      bytes.push(value);
      i += 1 + octal[0].length;
    } else if (C_ESCAPES[e] !== undefined) {
      bytes.push(C_ESCAPES[e]);
      i += 2;
    } else throw bad();
  }
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
