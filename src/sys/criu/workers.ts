/**
 * The CRIU processes roam runs: `criu swrk` on an RPC socket, either as a
 * plain child (dump) or under a shim in restore mode, so that the tree CRIU
 * restores with rst_sibling becomes the shim's child (restore).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { nativePaths } from '../native.js';
import { cleanEnv } from '../proc.js';

/** `criu swrk 3`, with the RPC socket as its fd 3. */
export function criuWorker(socketFd: number): ChildProcess {
  return spawn('criu', ['swrk', '3'], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'ignore', socketFd] });
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
