/**
 * Load: 20 services with a live client each, spread over the testbed, all
 * asked to move at once. Each node drives one migration at a time
 * (migration.maxConcurrent), the rest wait their turn and say so; every
 * migration succeeds, every client stream stays byte-exact, and nothing is
 * left behind.
 */
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { listTables } from '../../src/sys/nft.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { migrationEnded, startMigration } from '../helpers/migrations.js';
import { downClean, endpoints, serveEcho, streamAdvances, streamClient, uniqueTestbedName, upTestbed } from '../helpers/testbed.js';

const name = uniqueTestbedName();
let tb: TestbedState;
const SERVICES = 20;
const nodeName = (i: number) => `node${(i % 3) + 1}`;

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 3, '1gbit');
});

test.after.always(() => downClean(name));

test.serial('20 services with live clients all asked to move at once: queued per node, every one moved, every stream exact, nothing left', async (t) => {
  const services = await Promise.all(Array.from({ length: SERVICES }, async (_, i) => {
    const ep = await serveEcho(tb, nodeName(i), `svc${i}`);
    return { i, name: `svc${i}`, ip: ep.ip, clientNode: nodeName(i + 1) };
  }));
  await Promise.all(services.map((s) => streamClient(tb, s.clientNode, `cli${s.i}`, s.ip, { rate: 20000, verified: 10000 })));

  // Every service to the node after its own, all asked at once.
  const asked = await Promise.all(services.map((s) => startMigration(tb, { endpoint: s.name, to: nodeName(s.i + 1), mode: 'stop-copy' })));
  const reports = (await Promise.all(asked.map((m) => migrationEnded(tb, m, 180000, 'every migration to end')))).map((s) => s.report);
  for (const r of reports) t.is(r.result, 'success', `${r.name}: ${r.reason ?? ''}`);
  const waited = reports.filter((r) => (r.queued_ms ?? 0) > 0).length;
  t.true(waited >= SERVICES - 3, `${waited} migrations waited their turn (one node drives one at a time)`);
  t.log(`queued: ${waited} of ${SERVICES}; frozen ms median ${reports.map((r) => r.frozen_ms).sort((a, b) => a - b)[SERVICES / 2]}`);

  const eps = await endpoints(tb);
  for (const s of services) t.like(eps.find((e) => e.name === s.name), { node: nodeName(s.i + 1), ip: s.ip, state: 'running' }, s.name);
  for (const s of services) await streamAdvances(tb, s.clientNode, `cli${s.i}`, 20000, 30000);
  for (const n of tb.nodes) {
    const local = eps.filter((e) => e.node === n.name).map((e) => e.name).sort();
    t.deepEqual(readdirSync(`${n.stateDir}/netns`).sort(), local, `${n.name}: only live endpoints have namespaces`);
    t.deepEqual(existsSync(`${n.stateDir}/migrations`) ? readdirSync(`${n.stateDir}/migrations`) : [], [], `${n.name}: no images left`);
    for (const ep of local) t.deepEqual(listTables(`${n.stateDir}/netns/${ep}`), [], `${n.name}/${ep}: no lock left`);
  }
});
