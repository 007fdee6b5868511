/**
 * The bearer token in front of the control API on the network: only the
 * exact token gets a route to answer; the rest get 401 and are reported
 * with why. (Served over real TLS on a testbed: test/e2e/peer-tls.test.ts.)
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../../src/api/app.js';
import { readApiToken, requireBearerToken } from '../../src/api/control-exposure.js';
import type { ApiRefusal } from '../../src/events/bus.js';
import { RoamError } from '../../src/errors/roam-error.js';

const TOKEN = 'a'.repeat(31) + 'b';

async function guarded() {
  const refusals: ApiRefusal[] = [];
  const app = createApp();
  requireBearerToken(app, TOKEN, (_from, reason) => refusals.push(reason));
  app.get('/v1/endpoints', async () => []);
  await app.ready();
  return { app, refusals };
}

test('the right token passes; none, a wrong one, a near miss or another scheme is refused with 401 and counted', async (t) => {
  const { app, refusals } = await guarded();
  const ask = (authorization?: string) => app.inject({ method: 'GET', url: '/v1/endpoints', headers: authorization === undefined ? {} : { authorization } });
  const ok = await ask(`Bearer ${TOKEN}`);
  t.is(ok.statusCode, 200);
  t.is(ok.body, '[]');
  const cases: [string | undefined, ApiRefusal][] = [
    [undefined, 'no-token'],
    ['Bearer ' + 'a'.repeat(32), 'wrong-token'],
    [`Bearer ${TOKEN}x`, 'wrong-token'],
    [`Bearer ${TOKEN.slice(1)}`, 'wrong-token'],
    [`Basic ${Buffer.from(`root:${TOKEN}`).toString('base64')}`, 'no-token'],
    [`Bearer  ${TOKEN}`, 'no-token'],
  ];
  for (const [header] of cases) {
    const r = await ask(header);
    t.is(r.statusCode, 401, String(header));
    t.is(r.headers['www-authenticate'], 'Bearer');
    t.is((r.json() as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
  }
  t.deepEqual(refusals, cases.map(([, reason]) => reason));
  const unknownRoute = await ask();
  t.is(unknownRoute.statusCode, 401, 'even a route that does not exist is not revealed');
});

test('a token file must hold one long token; a missing one names the field', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'roam-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'good'), `${TOKEN}\n`);
  t.is(readApiToken(join(dir, 'good')), TOKEN);
  writeFileSync(join(dir, 'short'), 'secret\n');
  t.throws(() => readApiToken(join(dir, 'short')), { instanceOf: RoamError, message: /api\.tokenFile: .*short must hold one token of at least 32 characters without spaces \(has 6\)/ });
  writeFileSync(join(dir, 'two'), `${TOKEN} ${TOKEN}\n`);
  t.throws(() => readApiToken(join(dir, 'two')), { message: /without spaces/ });
  t.throws(() => readApiToken(join(dir, 'missing')), { message: /api\.tokenFile: cannot read .*missing \(ENOENT\)/ });
});
