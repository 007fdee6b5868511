/**
 * CRIU driven over its RPC (`criu swrk`): the only place that talks to CRIU.
 * One request per CRIU process; while it works CRIU stops at each hook
 * (network-lock, post-dump, pre-restore, post-restore, ...) and waits for our
 * answer, which is how the agent keeps the sequence in its own hands. A
 * failure carries CRIU's errno and message and the error lines of its log.
 *
 * The protocol definition is CRIU's own images/rpc.proto, installed by
 * deploy/host/setup.sh next to the criu binary it was built with.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, read, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { RoamError, errnoNameOf } from '../../errors/roam-error.js';
import { native } from '../native.js';

export const RPC_PROTO = '/usr/local/share/roam/criu/rpc.proto';

interface ProtoType {
  create(value: object): unknown;
  encode(message: unknown): { finish(): Uint8Array };
  decode(bytes: Uint8Array): unknown;
  toObject(message: unknown, options: { enums: StringConstructor; longs: NumberConstructor; defaults: boolean }): Record<string, unknown>;
}

let types: { req: ProtoType; resp: ProtoType } | undefined;

function proto(): { req: ProtoType; resp: ProtoType } {
  if (types) return types;
  if (!existsSync(RPC_PROTO)) throw new RoamError('PRECONDITION', `CRIU's rpc.proto is missing (${RPC_PROTO}); run 'npm run setup'`);
  const require = createRequire(import.meta.url);
  const protobuf = require('protobufjs') as { loadSync(path: string): { lookupType(name: string): ProtoType } };
  const root = protobuf.loadSync(RPC_PROTO);
  types = { req: root.lookupType('criu_req'), resp: root.lookupType('criu_resp') };
  return types;
}

export const NetworkLock = { IPTABLES: 1, NFTABLES: 2, SKIP: 3 } as const;

/** criu_opts fields, as protobufjs names them (camelCase). */
export interface CriuOpts {
  imagesDirFd: number;
  pid?: number;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  logLevel?: number;
  logFile?: string;
  notifyScripts?: boolean;
  external?: string[];
  inheritFd?: { key: string; fd: number }[];
  networkLock?: number;
  rstSibling?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  leaveStopped?: boolean;
  /** DUMP: keep anonymous memory back and serve it from a page server on ps.port (ps.address is ignored);
   *  RESTORE: leave that memory to a `criu lazy-pages` daemon (userfaultfd) */
  lazyPages?: boolean;
  /** DUMP: send pages to this page server; PAGE_SERVER_CHLD: listen here (port 0: any) */
  ps?: { address: string; port: number };
  /** page-server connections over TLS (gnutls), with these PEM files */
  tls?: boolean;
  tlsCacert?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** check the peer's certificate against the CA only, not against opts.addr */
  tlsNoCnVerify?: boolean;
  /** CRIU options file read after these (and overriding them): for what the RPC cannot say, like a lazy dump's listening address */
  configFile?: string;
}

/** criu_features: what CRIU can do on this kernel (FEATURE_CHECK) */
export interface CriuFeatures {
  /** soft-dirty memory tracking: iterative pre-copy */
  memTrack?: boolean;
  /** userfaultfd: post-copy */
  lazyPages?: boolean;
}

export interface CriuResult {
  /** restored root pid (RESTORE), in the host's PID namespace */
  pid: number | undefined;
  /** FEATURE_CHECK: the answer for each feature asked about */
  features?: CriuFeatures;
  /** PAGE_SERVER_CHLD: the page server's pid and the port it listens on */
  pageServer?: { pid: number; port: number };
  /** every hook CRIU stopped at, in order, with its time since the request (ms) */
  hooks: { name: string; atMs: number }[];
}

export interface CriuRequest {
  type: 'DUMP' | 'RESTORE' | 'PAGE_SERVER_CHLD' | 'FEATURE_CHECK' | 'VERSION';
  /** FEATURE_CHECK: the features to ask about */
  features?: CriuFeatures;
  opts?: CriuOpts;
  /** starts `criu swrk <fd>` with the given socket fd; returns the process (who spawns it decides who its parent is) */
  spawn: (socketFd: number) => ChildProcess;
  /** called at each hook; CRIU waits until it resolves; a rejection fails the request */
  onHook?: (name: string) => Promise<void> | void;
  /** the folder CRIU writes its log into (its work dir), to quote on failure */
  logDir?: string;
  /** wait for the spawned process to exit after the answer (not when it is a shim that stays) */
  waitExit?: boolean;
}

const TYPE_NUMBER = { DUMP: 1, RESTORE: 2, NOTIFY: 6, FEATURE_CHECK: 9, VERSION: 10, PAGE_SERVER_CHLD: 12 } as const;

export async function criuCall(r: CriuRequest): Promise<CriuResult> {
  const { req, resp } = proto();
  const [ours, theirs] = native().seqpacketPair();
  let child: ChildProcess;
  try {
    child = r.spawn(theirs);
  } finally {
    closeSync(theirs);
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = performance.now();
  const hooks: { name: string; atMs: number }[] = [];
  try {
    send(ours, req.encode(req.create({ type: TYPE_NUMBER[r.type], ...(r.opts ? { opts: r.opts } : {}), ...(r.features ? { features: r.features } : {}) })).finish());
    for (;;) {
      const packet = await receive(ours);
      if (!packet) throw failure(r, `CRIU closed the RPC connection (exit ${await exitCode(exited)})`, undefined);
      const m = resp.toObject(resp.decode(packet), { enums: String, longs: Number, defaults: false }) as {
        type: string; success: boolean; notify?: { script?: string }; restore?: { pid?: number }; ps?: { pid?: number; port?: number }; features?: CriuFeatures;
        crErrno?: number; crErrmsg?: string;
      };
      if (m.type === 'NOTIFY') {
        const name = m.notify?.script ?? 'unknown';
        hooks.push({ name, atMs: performance.now() - started });
        let ok = true;
        try {
          await r.onHook?.(name);
        } catch {
          ok = false;
        }
        send(ours, req.encode(req.create({ type: TYPE_NUMBER.NOTIFY, notifySuccess: ok })).finish());
        continue;
      }
      if (!m.success) {
        // CRIU answers a failed request before it has finished letting the tree go (resuming it, taking its
        // connections out of repair): whoever acts on the failure must find CRIU gone.
        if (r.waitExit !== false) await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, FAILED_EXIT_MS).unref())]);
        const errmsg = m.crErrmsg && !isBenign(m.crErrmsg) ? m.crErrmsg.trim() : undefined;
        const why = [m.crErrno ? errnoNameOf(m.crErrno) : undefined, errmsg].filter(Boolean).join(': ');
        throw failure(r, `criu ${r.type.toLowerCase()} failed${why ? ` (${why})` : ''}`, m.crErrno);
      }
      if (r.waitExit !== false) await exited;
      const pageServer = m.ps?.pid && m.ps.port ? { pageServer: { pid: m.ps.pid, port: m.ps.port } } : {};
      return { pid: m.restore?.pid, hooks, ...pageServer, ...(m.features ? { features: m.features } : {}) };
    }
  } finally {
    closeSync(ours);
  }
}

/** How long a failed request waits for CRIU to exit before the failure is reported anyway. */
const FAILED_EXIT_MS = 30000;

async function exitCode(exited: Promise<number | null>): Promise<string> {
  const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 2000).unref())]);
  return String(code);
}

function send(fd: number, bytes: Uint8Array): void {
  writeSync(fd, bytes);
}

function receive(fd: number): Promise<Buffer | undefined> {
  const buf = Buffer.alloc(1 << 20);
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, buf.length, null, (err, n) => {
      if (err) return reject(err);
      resolve(n === 0 ? undefined : buf.subarray(0, n));
    });
  });
}

function failure(r: CriuRequest, message: string, crErrno: number | undefined): RoamError {
  const logPath = r.logDir && r.opts?.logFile ? join(r.logDir, r.opts.logFile) : undefined;
  const lines = logPath ? errorLines(logPath) : [];
  // What CRIU refused, not its closing "Dumping FAILED.": the specific lines go first.
  const specific = lines.filter((l) => !/(Dumping|Restoring) FAILED/.test(l));
  return new RoamError('CHECKPOINT_FAILED', lines.length ? `${message}: ${(specific.length ? specific : lines).slice(-3).join(' | ')}` : message, {
    crErrno, criuLog: logPath, criuErrors: lines,
  });
}

/** The lines of a CRIU log that say what went wrong. */
/**
 * Errors CRIU logs and then carries on from. Without CAP_SYS_RESOURCE it
 * cannot raise its own RLIMIT_NOFILE, logs an Error, and works on; that
 * line would otherwise be the first error of every failed run, and the one
 * CRIU reports as cr_errmsg.
 */
const BENIGN = [/rlimit: Can't setup RLIMIT_NOFILE for self/];

function isBenign(line: string): boolean {
  return BENIGN.some((re) => re.test(line));
}

/** A client a page server turned away at the TLS handshake, as its CRIU log tells it. */
export interface PageServerRefusal {
  from: string;
  reason: string;
}

/**
 * Reads a page server's log (dump.log of a lazy dump, page-server.log of a
 * streamed target) for a refused client: CRIU logs "Accepted connection
 * from ADDRESS:PORT", then why the handshake failed (gnutls' words).
 * Undefined when there was none, or no log.
 */
export function pageServerRefusalIn(logPath: string): PageServerRefusal | undefined {
  let text: string;
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return undefined;
  }
  const accepted = [...text.matchAll(/Accepted connection from (\S+?):\d+\s*$/gm)].pop();
  if (!accepted) return undefined;
  const after = text.slice((accepted.index ?? 0) + accepted[0].length).split('\n');
  const errors = after.filter((l) => /Error \(/.test(l) && /\bTLS\b|certificate/i.test(l));
  if (errors.length === 0) return undefined;
  return { from: accepted[1]!, reason: errors.map((l) => l.replace(/^.*?Error \([^)]*\):\s*/, '').trim()).join('; ') };
}

export function errorLines(logPath: string): string[] {
  try {
    return readFileSync(logPath, 'utf8')
      .split('\n')
      .filter((l) => /Error|error \(|Can't|Unable|fail/i.test(l) && !/Warn/.test(l) && !isBenign(l))
      .map((l) => l.replace(/^\(\d+\.\d+\)\s*/, '').trim())
      .slice(-20);
  } catch {
    return [];
  }
}
