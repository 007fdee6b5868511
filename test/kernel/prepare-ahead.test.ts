/**
 * Preparing a predicted move ahead (MigrationSource.prepareAhead), against a
 * target agent that records what it is asked: one preparation per
 * endpoint, a new one for the same endpoint only once the target has let go
 * of the old one, and the policy the target was told kept current. The mode
 * choice is real (it probes CRIU on this machine); a move using a
 * preparation is shown end to end in e2e/policies.test.ts.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocationTable } from '../../src/cluster/locations.js';
import type { EndpointManager } from '../../src/endpoint/manager.js';
import type { StoredEndpoint } from '../../src/endpoint/store.js';
import { EventBus } from '../../src/events/bus.js';
import { MigrationSource } from '../../src/migration/source.js';
import type { PrepareRequest, TargetAgent } from '../../src/migration/target-agent.js';
import { requireRoot } from '../helpers/root.js';

test.before(() => requireRoot());

function fixture(t: import('ava').ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'roam-ahead-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const calls: string[] = [];
  const prepared: PrepareRequest[] = [];
  const holding = new Set<string>();
  let abortDelayMs = 0;
  const target = {
    async prepare(address: string, body: PrepareRequest) {
      // As the real target: the endpoint's name is held by one arrival at a time.
      if (holding.has(`${address} ${body.name}`)) throw new Error(`endpoint ${body.name} already exists on ${address}`);
      holding.add(`${address} ${body.name}`);
      calls.push(`prepare ${address} ${body.id}`);
      prepared.push(body);
      return {};
    },
    async abort(address: string, id: string) {
      await sleep(abortDelayMs); // a slow target, on purpose (slowAborts)
      const body = prepared.find((p) => p.id === id);
      if (body) holding.delete(`${address} ${body.name}`);
      calls.push(`abort ${address} ${id}`);
    },
    async keep() {},
  } as unknown as TargetAgent;
  const record: StoredEndpoint = {
    name: 'svc', ip: '10.244.1.5', prefixLength: 16, mac: '02:72:0a:f4:01:05', generation: 3, netns: '/nope', hostVeth: 'rv-svc', command: ['/bin/true'],
    pid: process.pid, startTime: 0, shimPid: 0, createdAt: new Date().toISOString(), policy: { drain: true, minDwellMs: 1000, prepare: true },
  };
  const manager = {
    has: (n: string) => n === 'svc',
    stored: (n: string) => (n === 'svc' ? record : undefined),
  } as unknown as EndpointManager;
  const table = new LocationTable('node1', '172.31.0.1');
  for (const [node, address] of [['node2', '172.31.0.2'], ['node3', '172.31.0.3']] as const) table.merge({ node, address, seq: 1, endpoints: [] });
  const source = new MigrationSource('node1', dir, manager, table, target, new EventBus(), { address: '172.31.0.1', pullShare: 0.8 });
  return { source, calls, prepared, record, slowAborts: (ms: number) => (abortDelayMs = ms) };
}

test.serial('a target is prepared once per prediction, with the endpoint as it is and its policy; asking again changes nothing', async (t) => {
  const { source, calls, prepared } = fixture(t);
  const first = source.prepareAhead('svc', 'node2');
  await first.ready;
  t.is(source.prepareAhead('svc', 'node2').id, first.id);
  t.deepEqual(calls, [`prepare 172.31.0.2 ${first.id}`]);
  t.like(prepared[0], { name: 'svc', ip: '10.244.1.5', generation: 4, handover: 'full', policy: { minDwellMs: 1000 } });
  t.true(['stop-copy', 'streamed', 'post-copy'].includes(prepared[0]!.mode!), `the automatic choice, made: ${prepared[0]!.mode}`);
  t.deepEqual(source.preparedAhead(), [{ name: 'svc', to: 'node2', id: first.id }]);
});

test.serial('a prediction that moves to another node, or fades and comes back, waits until the target let go of the old preparation', async (t) => {
  const { source, calls, slowAborts } = fixture(t);
  slowAborts(300);
  const a = source.prepareAhead('svc', 'node2');
  await a.ready;
  source.withdrawAhead('svc');
  t.deepEqual(source.preparedAhead(), []);
  const b = source.prepareAhead('svc', 'node2');
  await b.ready;
  const c = source.prepareAhead('svc', 'node3');
  await c.ready;
  t.deepEqual(calls, [
    `prepare 172.31.0.2 ${a.id}`, `abort 172.31.0.2 ${a.id}`, `prepare 172.31.0.2 ${b.id}`, `abort 172.31.0.2 ${b.id}`, `prepare 172.31.0.3 ${c.id}`,
  ]);
});

test.serial('a preparation is refused for what a move would be refused for, naming why', (t) => {
  const { source } = fixture(t);
  t.throws(() => source.prepareAhead('svc', 'node1'), { message: /already on node1/ });
  t.throws(() => source.prepareAhead('svc', 'node9'), { message: /unknown node node9/ });
  t.throws(() => source.prepareAhead('ghost', 'node2'), { message: /ghost is not on node node1/ });
});
