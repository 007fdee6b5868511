/**
 * One small JSON-over-HTTP client for both of the agent's faces: the control
 * API on a unix socket or over the network with a token (the CLI), and the
 * peer protocol over TCP (agents).
 * A refusal from the other side comes back as the RoamError it described.
 */
import { Readable } from 'node:stream';
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { RoamError } from '../errors/roam-error.js';
import { ErrorCodes, type ErrorCode } from '../errors/codes.js';

/** PEM material for mutual TLS with another agent. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** What a client of the control API over HTTPS checks the server with (no `ca`: the system's CAs). */
export interface ServerCheck {
  ca?: Buffer;
}

export type Target =
  | { socketPath: string }
  | { host: string; port: number; tls?: TlsMaterial | ServerCheck; token?: string };

const agents = new WeakMap<TlsMaterial | ServerCheck, HttpsAgent>();

/**
 * Connections to peers are kept open (and TLS sessions cached) between
 * requests: a migration makes a dozen calls in a row, and a handshake each
 * would land inside its frozen window.
 */
function keptAliveAgent(tls: TlsMaterial | ServerCheck): HttpsAgent {
  let agent = agents.get(tls);
  if (!agent) {
    agent = new HttpsAgent({ keepAlive: true, keepAliveMsecs: 10000, timeout: 120000, maxCachedSessions: 256 });
    agents.set(tls, agent);
  }
  return agent;
}

/**
 * A request to `target`: HTTPS with this node's certificate and the cluster
 * CA when it carries TLS material (the peer's certificate must then match
 * its address), plain HTTP otherwise.
 */
export function requestTo(target: Target, options: RequestOptions, onResponse: (res: IncomingMessage) => void): ClientRequest {
  const where = 'socketPath' in target ? { socketPath: target.socketPath } : { host: target.host, port: target.port };
  const token = 'token' in target && target.token ? { authorization: `Bearer ${target.token}` } : {};
  const withToken = { ...options, headers: { ...options.headers, ...token } };
  if ('tls' in target && target.tls) {
    const { tls } = target;
    return httpsRequest({ ...where, ...withToken, ...tls, agent: keptAliveAgent(tls) }, onResponse);
  }
  return httpRequest({ ...where, ...withToken }, onResponse);
}

export interface CallOptions {
  timeoutMs?: number;
  /** error code when the other side cannot be reached */
  unreachable?: ErrorCode;
}

export function describeTarget(t: Target): string {
  return 'socketPath' in t ? t.socketPath : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

export async function callJson<T>(target: Target, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  const text = await callRaw(target, method, path, body, options);
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

/** A Buffer body goes as application/octet-stream, a stream as chunked octet-stream, anything else as JSON. */
export function callRaw(target: Target, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<string> {
  const stream = body instanceof Readable ? body : undefined;
  const binary = Buffer.isBuffer(body);
  const payload = body === undefined || stream ? undefined : binary ? body : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = requestTo(
      target,
      {
        method,
        path,
        headers: stream
          ? { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }
          : payload ? { 'content-type': binary ? 'application/octet-stream' : 'application/json', 'content-length': payload.length } : {},
        timeout: options.timeoutMs ?? 30000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 500) < 400) return resolve(text);
          reject(errorFromBody(res.statusCode ?? 500, text, `${method} ${describeTarget(target)}${path}`));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(new RoamError(options.unreachable ?? 'PEER_UNREACHABLE', `${describeTarget(target)}: not reachable (${err.code ?? err.message})`, { target: describeTarget(target), errno: err.code }));
    });
    if (!stream) return req.end(payload);
    stream.on('error', (err) => req.destroy(err));
    stream.pipe(req);
  });
}

/** The RoamError another agent described in its error body, or a protocol error quoting what it sent. */
export function errorFromBody(status: number, text: string, what: string): RoamError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: Record<string, unknown> } };
    const code = body.error?.code;
    if (code && code in ErrorCodes && body.error?.message) return new RoamError(code as ErrorCode, body.error.message, body.error.details ?? {});
  } catch {
    // not our error format
  }
  return new RoamError('PEER_PROTOCOL', `${what}: HTTP ${status} ${text.slice(0, 200)}`);
}
