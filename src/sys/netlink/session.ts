/**
 * The sole importer of `netlink`. A session is one rtnetlink socket, bound at
 * creation to one network namespace. `netlink` reports kernel refusals as
 * strings ("Request rejected: EEXIST"); every call here turns them into a
 * SysError with errno, operation and target. `netlink` sends REQUEST|ACK only,
 * so every write states its own CREATE/EXCL/REPLACE/APPEND flags.
 *
 * One request at a time per session: `netlink` groups multipart (dump)
 * replies assuming nothing else arrives in between; a reply to a concurrent
 * request landing between the chunks of a dump breaks that grouping
 * ("Multipart message not terminated properly").
 */
import { createRtNetlink, type RtNetlinkSocket } from 'netlink';
import { SysError, errnoOf } from '../../errors/roam-error.js';
import { inNetns } from '../netns/netns.js';

export const NlFlags = {
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
} as const;

/** create-or-replace: the `ensure` verbs. */
export const ENSURE = NlFlags.CREATE | NlFlags.REPLACE;
/** create-exclusive: the `add` verbs. */
export const ADD = NlFlags.CREATE | NlFlags.EXCL;

const REQUEST_TIMEOUT_MS = 5000;

export class RtnlSession {
  readonly netns: string;
  readonly socket: RtNetlinkSocket;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(socket: RtNetlinkSocket, netns: string) {
    this.socket = socket;
    this.netns = netns;
  }

  /** A session in the caller's namespace, or in the one pinned at `netnsPath`. */
  static open(netnsPath?: string): RtnlSession {
    const socket = netnsPath ? inNetns(netnsPath, () => createRtNetlink()) : createRtNetlink();
    return new RtnlSession(socket, netnsPath ?? 'self');
  }

  close(): void {
    this.socket.socket.close();
  }

  readonly requestOptions = (flags = 0): { flags: number; timeout: number } => ({ flags, timeout: REQUEST_TIMEOUT_MS });

  /** Runs one request; a kernel refusal becomes a SysError naming `op` and `target`. */
  call<T>(op: string, target: string, request: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      try {
        return await request();
      } catch (err) {
        throw toSysError(err, op, target, this.netns);
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

function toSysError(err: unknown, op: string, target: string, netns: string): unknown {
  if (!(err instanceof Error)) return err;
  const where = netns === 'self' ? target : `${target} (netns ${netns})`;
  const rejected = /^Request rejected: (E[A-Z0-9]+|-?\d+)$/.exec(err.message);
  if (rejected) {
    const name = rejected[1]!;
    const errno = /^-?\d+$/.test(name) ? Math.abs(Number(name)) : (errnoOf(name) ?? 0);
    return new SysError({ errno, syscall: 'rtnetlink', op, target: where }, { cause: err });
  }
  if (err.message === 'Timeout has been reached') {
    return new SysError({ errno: errnoOf('ETIMEDOUT') ?? 110, syscall: 'rtnetlink', op, target: where }, { cause: err });
  }
  const errno = (err as NodeJS.ErrnoException).errno;
  if (typeof errno === 'number') return new SysError({ errno: Math.abs(errno), syscall: 'sendmsg', op, target: where }, { cause: err });
  return err;
}
