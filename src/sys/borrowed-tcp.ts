/**
 * Another process's TCP sockets, changed without its help: each socket is
 * borrowed (pidfd_getfd) and changed on the borrowed descriptor (native/).
 *  - repair off: a lazy (post-copy) dump leaves the stopped tree's
 *    connections in repair mode; needed only when it resumes where it is;
 *  - pacing: the page server's pull connection gets a maximum rate, so the
 *    pull leaves room on the link for the service's own clients.
 */
import { SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';
import { processTree } from './proc.js';

function onProcess(op: string, pid: number, target: string, change: () => number): number {
  try {
    return change();
  } catch (err) {
    if (isNativeError(err) && err.code === 'ESRCH') return 0; // ended meanwhile
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op, target }, { cause: err });
    throw err;
  }
}

/** Takes every TCP socket of the tree rooted at `pid` out of repair mode; returns how many were switched. */
export function tcpRepairOffTree(pid: number): number {
  let switched = 0;
  for (const p of processTree(pid)) switched += onProcess('tcp.repair-off', p, `pid ${p}`, () => native().tcpRepairOff(p));
  return switched;
}

/** Caps the sending rate of `pid`'s TCP sockets bound to `localPort`; returns how many were paced. */
export function paceTcp(pid: number, localPort: number, bytesPerSecond: number): number {
  return onProcess('tcp.pace', pid, `pid ${pid} port ${localPort}`, () => native().tcpPace(pid, localPort, Math.max(1, Math.round(bytesPerSecond))));
}
