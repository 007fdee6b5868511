/**
 * The CRIU processes roam runs: `criu swrk` on an RPC socket, either as a
 * plain child (dump) or under a shim in restore mode, so that the tree CRIU
 * restores with rst_sibling becomes the shim's child (restore); and the one
 * CRIU role that has no RPC request, the lazy-pages daemon of a post-copy
 * restore, from the command line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { nativePaths } from '../native.js';
import { cleanEnv } from '../proc.js';

/**
 * `criu swrk 3`, with the RPC socket as its fd 3. `detached`: in its own
 * session, so that it outlives the agent (a lazy dump serving pages must).
 */
export function criuWorker(socketFd: number, options: { detached?: boolean } = {}): ChildProcess {
  const child = spawn('criu', ['swrk', '3'], { detached: options.detached ?? false, env: cleanEnv(), stdio: ['ignore', 'ignore', 'ignore', socketFd] });
  if (options.detached) child.unref();
  return child;
}

/**
 * `roam-shim --restore` running `criu swrk 3`: fd 3 the RPC socket, fd 4 the
 * target network namespace; the shim adds fresh stdout/stderr pipes at 5
 * and 6 for inherit_fd. Detached: the shim stays to supervise the restored tree.
 */
export function criuWorkerUnderShim(dir: string, socketFd: number, netnsFd: number): ChildProcess {
  const shim = spawn(nativePaths.shim, ['--restore', '--dir', dir, '--', 'criu', 'swrk', '3'], {
    detached: true,
    env: cleanEnv(),
    stdio: ['ignore', 'ignore', 'ignore', socketFd, netnsFd],
  });
  shim.unref();
  return shim;
}

/**
 * `criu lazy-pages --page-server`: reads the dump's images in `imagesDir`,
 * waits there (lazy-pages.socket) for the restore to hand it the restored
 * tasks' userfaultfds, then fetches their memory from the source's lazy page
 * server, on demand and in the background, and exits once it has all of it.
 * It writes one byte to fd 3 when it is ready. `extraArgs`: more options
 * (TLS). Detached: the restored service depends on it, not on the agent.
 */
export function lazyPagesWorker(imagesDir: string, source: { address: string; port: number }, extraArgs: string[] = []): ChildProcess {
  const child = spawn(
    'criu',
    ['lazy-pages', '--page-server', '--address', source.address, '--port', String(source.port),
      '--images-dir', imagesDir, '--work-dir', imagesDir, '--log-file', 'lazy-pages.log', '-v4', '--status-fd', '3', ...extraArgs],
    { detached: true, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
  );
  return child;
}
