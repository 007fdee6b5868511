/**
 * A fastify instance configured the roam way: TypeBox validates every body,
 * parameter and query (unknown fields and wrong types are refused, never
 * coerced or dropped; missing fields with a default get it), and every error leaves as {error: {code, message}}
 * with the status from the error registry.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { describeValueError } from '../config/validate.js';
import { httpStatusOf } from '../errors/codes.js';
import { RoamError } from '../errors/roam-error.js';

/** Bounds on a listener's callers: how long a JSON body may take to arrive, and how many connections at once. */
export interface ListenerBounds {
  bodyTimeoutMs: number;
  maxConnections: number;
}

/**
 * `https`: serve TLS; with `ca`, `requestCert` and `rejectUnauthorized`, only to clients the CA signed.
 * `bounds`: a JSON body (at most 4 MiB) that has not fully arrived within bodyTimeoutMs ends its connection
 * (raw uploads bound themselves, http/bounded-body.ts), and connections past maxConnections are refused.
 */
export function createApp(https?: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean }, bounds?: ListenerBounds): FastifyInstance {
  const app = (https ? Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024, https }) : Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 })) as unknown as FastifyInstance;
  if (bounds) boundCallers(app, bounds);
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const part = httpPart ?? 'body';
    return (input: unknown) => {
      // Fields left out take their schema's default (a policy's thresholds); nothing else is changed. The body
      // is this request's own parse, so it is filled in place rather than copied (announcements can be large).
      const data = Value.Default(schema as TSchema, input);
      if (Value.Check(schema as TSchema, data)) return { value: data };
      const first = [...Value.Errors(schema as TSchema, data)][0];
      const message = first ? `${part === 'params' ? '' : `${part}.`}${describeValueError(first)}`.replace(/^body\.\(top level\)/, 'body') : `${part}: invalid`;
      return { error: new RoamError('INPUT_INVALID', message) };
    };
  });
  app.setErrorHandler((err: unknown, _req, reply) => {
    if (err instanceof RoamError) {
      // The rest of a refused upload is not read: the connection ends with the answer.
      if (err.code === 'TOO_LARGE' || err.code === 'UPLOAD_STALLED') void reply.header('connection', 'close');
      return reply.status(httpStatusOf(err.code)).send({ error: err.toJSON() });
    }
    const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown };
    if (e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (e.statusCode === 400 && /JSON/i.test(e.message ?? ''))) {
      return reply.status(400).send({ error: { code: 'INPUT_INVALID', message: `body: malformed JSON (${e.message ?? ''})` } });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.status(e.statusCode).send({ error: { code: 'INPUT_INVALID', message: e.message ?? 'bad request' } });
    }
    return reply.status(500).send({ error: { code: 'SYSCALL_FAILED', message: e.message ?? String(err) } });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` } });
  });
  return app;
}

function boundCallers(app: FastifyInstance, bounds: ListenerBounds): void {
  app.server.maxConnections = bounds.maxConnections;
  app.addHook('onRequest', async (req) => {
    const raw = req.raw;
    const hasBody = Number(raw.headers['content-length'] ?? 0) > 0 || raw.headers['transfer-encoding'] !== undefined;
    if (!hasBody || (raw.headers['content-type'] ?? '').startsWith('application/octet-stream')) return;
    // 'end' only: a data listener would start the body flowing before the parser is there.
    const timer = setTimeout(() => raw.socket.destroy(), bounds.bodyTimeoutMs);
    timer.unref();
    raw.once('end', () => clearTimeout(timer));
    raw.once('close', () => clearTimeout(timer));
  });
}

/**
 * Adds the OpenAPI document, generated from the routes' TypeBox schemas, at
 * GET /v1/openapi.json. Call before registering the routes it should describe.
 */
export async function addOpenApi(app: FastifyInstance, title: string, version: string): Promise<void> {
  await app.register(swagger, { openapi: { openapi: '3.0.3', info: { title, version } } });
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
