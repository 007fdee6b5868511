/**
 * Endpoint names across the cluster: whatever the order in which claims and
 * answers cross, no two nodes both get a name; a name that runs somewhere is
 * refused at once; too few answers refuse; a failed create gives the name back.
 */
import test from 'ava';
import fc from 'fast-check';
import { claimName, NameClaims, type NameClaimPeers } from '../../src/cluster/name-claims.js';
import { RoamError } from '../../src/errors/roam-error.js';

/** `n` nodes, each with its own claims; asks reach node `address` after a delay the schedule picks. */
function cluster(n: number, delay: () => Promise<void> = async () => undefined, down = new Set<string>(), running = new Map<string, string>()) {
  const nodes = Array.from({ length: n }, (_, i) => `node${i + 1}`);
  const claims = new Map(nodes.map((node) => [node, new NameClaims((name) => running.get(name))]));
  const ask: NameClaimPeers = {
    claimName: async (address, body) => {
      await delay();
      if (down.has(address)) throw new Error('ECONNREFUSED');
      return claims.get(address)!.answer(body.name, body.node);
    },
    releaseName: async (address, body) => {
      await delay();
      claims.get(address)!.release(body.name, body.node);
    },
  };
  const claim = (self: string, name: string) => claimName(name, self, claims.get(self)!, nodes.filter((x) => x !== self).map((x) => ({ node: x, address: x })), ask);
  return { nodes, claims, claim };
}

test('one node claiming a free name gets it; the others then refuse it to anyone else until it is released', async (t) => {
  const c = cluster(3);
  const held = await c.claim('node1', 'web');
  await t.throwsAsync(c.claim('node2', 'web'), { instanceOf: RoamError, message: 'name: endpoint web is being created on node1 at this moment; ask again once it is' });
  held.release();
  await new Promise((resolve) => setImmediate(resolve));
  await t.notThrowsAsync(c.claim('node2', 'web'));
});

test('claims that cross in any order never give one name to two nodes', async (t) => {
  let decided = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 2, max: 4 }),
      fc.scheduler(),
      async (size, claimants, s) => {
        const c = cluster(size, () => s.schedule(Promise.resolve()));
        const who = c.nodes.slice(0, Math.min(claimants, size));
        const results = who.map((node) => c.claim(node, 'dup').then(() => node, (err: RoamError) => err));
        const settled = await s.waitFor(Promise.all(results));
        const winners = settled.filter((r): r is string => typeof r === 'string');
        if (winners.length > 1) return false;
        if (winners.length === 1) decided++;
        // Every loser says why: the name is being created elsewhere.
        return settled.every((r) => typeof r === 'string' || (r.code === 'CONFLICT' && /is being created on node\d/.test(r.message)));
      },
    ),
    { numRuns: 300 },
  );
  // Not only races that everyone lost: many schedules let exactly one claimant through.
  t.true(decided > 30, `${decided} of 300 schedules had a winner`);
});

test('a name that runs on another node is refused at once, naming where', async (t) => {
  const c = cluster(3, undefined, new Set(), new Map([['web', 'node3']]));
  await t.throwsAsync(c.claim('node1', 'web'), { instanceOf: RoamError, message: 'name: endpoint web already exists on node3' });
  // The node it runs on may claim it again (a re-create after a stop it has not announced yet).
  await t.notThrowsAsync(c.claim('node3', 'web'));
});

test('with a minority of the nodes down a name can be claimed; with half or more, the create is refused naming who did not answer', async (t) => {
  const some = cluster(5, undefined, new Set(['node4', 'node5']));
  await t.notThrowsAsync(some.claim('node1', 'web'));
  const most = cluster(4, undefined, new Set(['node3', 'node4']));
  const err = await t.throwsAsync(most.claim('node1', 'web'), { instanceOf: RoamError });
  t.is(err?.code, 'PEER_UNREACHABLE');
  t.regex(err?.message ?? '', /2 of 4 nodes agreed, 3 are needed; no answer from node3 \(ECONNREFUSED\), node4 \(ECONNREFUSED\)/);
  // What it was granted meanwhile is given back.
  await new Promise((resolve) => setImmediate(resolve));
  await t.notThrowsAsync(most.claim('node2', 'web').catch((e: RoamError) => (e.code === 'PEER_UNREACHABLE' ? undefined : Promise.reject(e))));
});

test('a claim lapses after its life: a node that died mid-create does not hold a name for ever', (t) => {
  let now = 0;
  const claims = new NameClaims(() => undefined, 30000, () => now);
  t.true(claims.answer('web', 'node1').granted);
  t.like(claims.answer('web', 'node2'), { granted: false, holder: 'node1', exists: false });
  now = 30001;
  t.true(claims.answer('web', 'node2').granted);
});

test('a created endpoint gives its claims back once announced: from then on the tables answer for the name', async (t) => {
  const running = new Map<string, string>();
  const c = cluster(3, undefined, new Set(), running);
  const held = await c.claim('node1', 'web');
  let announced!: () => void;
  held.created(() => new Promise<void>((resolve) => (announced = () => {
    running.set('web', 'node1');
    resolve();
  })));
  await t.throwsAsync(c.claim('node2', 'web'), { message: /is being created on node1/ }, 'held until the announcement is out');
  announced();
  await new Promise((resolve) => setImmediate(resolve));
  await t.throwsAsync(c.claim('node2', 'web'), { message: 'name: endpoint web already exists on node1' });
  running.delete('web');
  await t.notThrowsAsync(c.claim('node2', 'web'), 'stopped, the name is free again at once');
});
