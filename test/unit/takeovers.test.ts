/**
 * The target's durable word that it took a migration over: kept across a
 * restart of its agent and after the endpoint moved on, so that a source
 * restarting late is told "taken over", never "nothing to abort".
 */
import test from 'ava';
import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EndpointManager } from '../../src/endpoint/manager.js';
import { Takeovers } from '../../src/migration/takeovers.js';
import { MigrationTarget } from '../../src/migration/target.js';

function stateDir(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-takeovers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const ID = 'm-abc123-0a1b2c';

test('a takeover is found by a later instance (an agent restart), and forgotten once settled', (t) => {
  const dir = stateDir(t);
  new Takeovers(dir).record(ID, 'svc');
  const again = new Takeovers(dir);
  t.like(again.find(ID), { id: ID, name: 'svc' });
  again.forget(ID);
  t.is(new Takeovers(dir).find(ID), undefined);
  t.deepEqual(readdirSync(join(dir, 'takeovers')), [], 'no temporary file left behind');
});

test('abort of a migration taken over is refused although the endpoint has left this node; once settled it is not', async (t) => {
  const dir = stateDir(t);
  new Takeovers(dir).record(ID, 'svc');
  // The endpoint moved on: the manager knows nothing of the migration any more.
  const manager = { arrivedWith: () => undefined } as unknown as EndpointManager;
  const target = new MigrationTarget(manager, dir, async () => undefined);
  await t.throwsAsync(target.abort(ID), { message: new RegExp(`migration ${ID}: svc was taken over here at .*; it cannot be undone`) });
  target.settled(ID);
  await t.notThrowsAsync(target.abort(ID));
});

test('records whose source never settled them go after a month; newer ones stay', (t) => {
  const dir = stateDir(t);
  const takeovers = new Takeovers(dir);
  takeovers.record(ID, 'old');
  takeovers.record('m-def456-0d0e0f', 'new');
  const monthAgo = (Date.now() - 31 * 24 * 3600 * 1000) / 1000;
  utimesSync(join(dir, 'takeovers', `${ID}.json`), monthAgo, monthAgo);
  t.deepEqual(takeovers.expire(), [ID]);
  t.truthy(takeovers.find('m-def456-0d0e0f'));
});

test('an id that is not a migration id never becomes a path', (t) => {
  const takeovers = new Takeovers(stateDir(t));
  t.throws(() => takeovers.record('../../etc/x', 'svc'), { message: /is not one/ });
  t.throws(() => takeovers.find('../x'), { message: /is not one/ });
});
