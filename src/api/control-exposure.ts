/**
 * The control API off its unix socket: whoever reaches it can freeze and
 * move any service on the node, so on a network it is served over HTTPS and
 * answers only requests carrying the bearer token (config api.listen,
 * api.tls, api.tokenFile; config/load.ts refuses a non-loopback listen
 * without both). Refusals are said and counted, never silent.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { RoamError } from '../errors/roam-error.js';
import type { ApiRefusal } from '../events/bus.js';

/** Shorter tokens are refused at start: a token is the whole of the API's authentication. */
export const MIN_TOKEN_LENGTH = 32;

/** The token in `path` (surrounding whitespace dropped), or a config error naming the field. */
export function readApiToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RoamError('CONFIG_INVALID', `api.tokenFile: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new RoamError('CONFIG_INVALID', `api.tokenFile: ${path} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (has ${token.length})`);
  }
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Every request to `app` must say `Authorization: Bearer <token>`; others
 * get 401 before any route sees them. Compared in constant time (over the
 * digests, so that the length leaks nothing either).
 */
export function requireBearerToken(app: FastifyInstance, token: string, onRefused: (from: string, reason: ApiRefusal) => void): void {
  const expected = digest(token);
  app.addHook('onRequest', async (req, reply) => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer (\S+)$/.exec(header) : null;
    if (m && timingSafeEqual(digest(m[1]!), expected)) return;
    const reason: ApiRefusal = m ? 'wrong-token' : 'no-token';
    onRefused(req.socket.remoteAddress ?? 'unknown', reason);
    await reply
      .status(401)
      .header('www-authenticate', 'Bearer')
      .send({ error: { code: 'UNAUTHENTICATED', message: `control API: ${reason === 'no-token' ? 'no bearer token' : 'wrong bearer token'} (Authorization: Bearer <api token>)` } });
  });
}
