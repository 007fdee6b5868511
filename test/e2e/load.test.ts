/**
 * Load: 20 services with a live client each, spread over the testbed, all
 * asked to move at once. Each node drives one migration at a time
 * (migration.maxConcurrent), the rest wait their turn and say so; every
 * migration succeeds, every client stream stays byte-exact, and nothing is
 * left behind.
 */
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { callJson } from '../../src/api/http-client.js';
import type { MigrationStatus } from '../../src/migration/report.js';
import { listTables } from '../../src/sys/nft.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, endpointLog, endpoints, run, streamAdvances, uniqueTestbedName, upTestbed, waitFor, workload } from '../helpers/testbed.js';

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
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const services = await Promise.all(Array.from({ length: SERVICES }, async (_, i) => {
    const ep = await run(tb, nodeName(i), `svc${i}`, [process.execPath, workload('echo-server.js'), '--port', '7001']);
    return { i, name: `svc${i}`, ip: ep.ip, home: nodeName(i), clientNode: nodeName(i + 1) };
  }));
  for (const s of services) await waitFor(`${s.name} to listen`, () => endpointLog(tb, s.home, s.name).includes('listening'), 20000);
  for (const s of services) await run(tb, s.clientNode, `cli${s.i}`, [process.execPath, workload('stream-check.js'), s.ip, '7001', '--rate', '20000']);
  for (const s of services) await streamAdvances(tb, s.clientNode, `cli${s.i}`, 10000, 20000);

  // Every service to the node after its own, all asked at once.
  const asked = await Promise.all(services.map((s) => callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: s.name, to: nodeName(s.i + 1), mode: 'stop-copy' })));
  const reports: NonNullable<MigrationStatus['report']>[] = [];
  await waitFor('every migration to end', async () => {
    const all = await Promise.all(asked.map((m) => callJson<MigrationStatus>(api, 'GET', `/v1/migrations/${m.id}?from=${m.from}`)));
    if (all.some((s) => s.state === 'running')) return false;
    reports.push(...all.map((s) => s.report!));
    return true;
  }, 180000);
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
