/**
 * Connections left in TCP repair mode by a lazy (post-copy) dump, brought
 * back without the process's help: each process of the tree has its TCP
 * sockets borrowed (pidfd_getfd) and switched out of repair (native/).
 * Needed only when such a tree has to resume where it is.
 */
import { SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';
import { processTree } from './proc.js';

/** Takes every TCP socket of the tree rooted at `pid` out of repair mode; returns how many were switched. */
export function tcpRepairOffTree(pid: number): number {
  let switched = 0;
  for (const p of processTree(pid)) {
    try {
      switched += native().tcpRepairOff(p);
    } catch (err) {
      if (isNativeError(err) && err.code === 'ESRCH') continue; // ended meanwhile
      if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op: 'tcp.repair-off', target: `pid ${p}` }, { cause: err });
      throw err;
    }
  }
  return switched;
}
