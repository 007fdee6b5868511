import { constants as osConstants } from 'node:os';
import type { ErrorCode } from './codes.js';

/** An error with a registry code and structured details for the API and logs. */
export class RoamError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RoamError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/**
 * A failed kernel operation. The message reads `op target: ERRNAME`, e.g.
 * `fdb.replace roam-vx 02:72:0a:f4:01:02 -> 172.31.0.2: EINVAL`.
 */
export class SysError extends RoamError {
  readonly errno: number;
  readonly errnoName: string;
  readonly syscall: string;
  readonly op: string;
  readonly target: string;

  constructor(fields: { errno: number; syscall: string; op: string; target: string }, options?: { cause?: unknown }) {
    const errnoName = errnoNameOf(fields.errno);
    super('SYSCALL_FAILED', `${fields.op} ${fields.target}: ${errnoName}`, { ...fields, errnoName }, options);
    this.name = 'SysError';
    this.errno = fields.errno;
    this.errnoName = errnoName;
    this.syscall = fields.syscall;
    this.op = fields.op;
    this.target = fields.target;
  }
}

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

export function errnoNameOf(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${errno}`;
}

export function errnoOf(name: string): number | undefined {
  return (osConstants.errno as Record<string, number>)[name];
}

export function isSysError(err: unknown, errnoName?: string): err is SysError {
  return err instanceof SysError && (errnoName === undefined || err.errnoName === errnoName);
}

/** A short text for logs and CLI output, whatever was thrown. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
