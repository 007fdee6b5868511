/**
 * The rtnetlink session under concurrency: the agent's reconciler and its
 * endpoint manager share one session, so dumps and single requests overlap.
 */
import test from 'ava';
import { listFdb } from '../../src/sys/netlink/fdb.js';
import { addBridge, getLink, listLinks } from '../../src/sys/netlink/links.js';
import { RtnlSession } from '../../src/sys/netlink/session.js';
import { freshDir, freshNetns } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';

test.before(() => requireRoot());

test('overlapping dumps and requests on one session all succeed, with dumps that span several datagrams', async (t) => {
  const ns = freshNetns(t, freshDir(t, 'nl'), 'node');
  const s = RtnlSession.open(ns);
  t.teardown(() => s.close());
  for (let i = 0; i < 40; i++) await addBridge(s, `b${i}`, 1500);
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 200; i++) jobs.push(i % 3 === 0 ? listLinks(s) : i % 3 === 1 ? listFdb(s) : getLink(s, `b${i % 40}`));
  const results = await Promise.allSettled(jobs);
  t.deepEqual(results.filter((r) => r.status === 'rejected'), []);
  const links = (results[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof listLinks>>>).value;
  t.is(links.filter((l) => l.kind === 'bridge').length, 40);
});
