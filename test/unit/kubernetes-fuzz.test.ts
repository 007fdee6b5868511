/**
 * What the agent reads from the API server, fed malformed and random
 * (fast-check): Migrations, RoamEndpoints, Nodes and Pods as a buggy
 * client, an older CRD or a hand edit could leave them. Every loop runs
 * against the API double at once. None may crash or throw out of a handler;
 * a Migration with a spec the agent cannot run ends Failed (InvalidSpec),
 * one it can run is left to the endpoint's node, a Node's annotations become
 * a peer only with a real address, and only well-formed pods get an
 * interface.
 */
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { LocationTable } from '../../src/cluster/locations.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import type { AttachPodRequest } from '../../src/endpoint/manager.js';
import type { PodRef } from '../../src/endpoint/store.js';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { EndpointRecords } from '../../src/kubernetes/endpoint-records.js';
import { MigrationController } from '../../src/kubernetes/migration-controller.js';
import { NodeDiscovery } from '../../src/kubernetes/node-discovery.js';
import { PodEndpoints } from '../../src/kubernetes/pod-endpoints.js';
import { ANNOTATIONS, MigrationSpec, type MigrationResource } from '../../src/kubernetes/resources.js';
import { isIpAddress } from '../../src/net/ip.js';
import { KubeApiDouble, type StoredObject } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const COUNT = 60;
const NAME = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
/** anything JSON can carry, weighted toward the shapes the fields should have */
const junk = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string(), fc.integer(), fc.constant(null), fc.constant(undefined));
const maybe = <T>(a: fc.Arbitrary<T>) => fc.oneof(a, junk);

const validSpec = fc.record({
  endpoint: fc.constantFrom('web', 'db'),
  targetNode: fc.constantFrom('n2', 'n3'),
  mode: fc.constantFrom('auto', 'stop-copy', 'streamed'),
}, { requiredKeys: ['endpoint', 'targetNode'] });
const randomSpec = fc.record({
  endpoint: maybe(fc.constantFrom('web', 'db', 'nope', '')),
  targetNode: maybe(fc.constantFrom('n2', 'n3', 'N_2', '')),
  mode: maybe(fc.constantFrom('auto', 'stop-copy', 'post-copy', 'teleport')),
  presync: maybe(fc.boolean()),
  extra: junk,
}, { requiredKeys: [] });
const migrationSpec = fc.oneof(validSpec, randomSpec, junk);
const migrationStatus = fc.record({
  phase: maybe(fc.constantFrom('Pending', 'Queued', 'Dump', 'Succeeded', 'Bogus')),
  sourceNode: maybe(fc.constantFrom('n1', 'n2')),
  migrationId: junk,
  conditions: maybe(fc.array(junk, { maxLength: 3 })),
  report: junk,
}, { requiredKeys: [] });
const annotations = fc.dictionary(
  fc.constantFrom(ANNOTATIONS.vtep, ANNOTATIONS.range, ANNOTATIONS.version, 'roam.dev/mobile-ip', 'roam.dev/service', 'other'),
  fc.oneof(fc.constantFrom('true', '172.31.0.9', 'fd00::9', '10.77.3.0/24', '10.77.3.0/25', 'x', ''), fc.string()),
);

test('random objects from the API server: nothing crashes, bad Migrations end InvalidSpec, only real addresses become peers', async (t) => {
  const api = new KubeApiDouble();
  const url = await api.start();
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-runtime-'));
  const events = new EventBus();
  const problems: string[] = [];
  events.on('log', (e) => {
    if (/TypeError|RangeError|Cannot read|is not a function|is not iterable/.test(e.message)) problems.push(e.message);
  });
  const unhandled = (err: unknown) => problems.push(`unhandled: ${String(err)}`);
  process.on('unhandledRejection', unhandled);
  const client = KubeClient.forServer(url, 50);
  const table = new LocationTable('n1', '172.31.0.1');
  const started: string[] = [];
  const attached = new Map<string, EndpointRecord & { pod: PodRef }>();
  const loops = {
    discovery: new NodeDiscovery(client, table, { node: 'n1', vtep: '172.31.0.1', subnet: '10.77.0.0/16', rangePrefixLength: 24, fixedRange: undefined, version: 'fuzz', events }),
    migrations: new MigrationController(client, {
      node: 'n1', hosts: (ep) => ep === 'web', whereIs: () => 'n1', resyncMs: 60000, events,
      runner: { start: (req) => (started.push(req.name), { id: `m-${started.length}`, done: new Promise(() => undefined) }), status: () => undefined },
    }),
    records: new EndpointRecords(client, { node: 'n1', local: () => [], cluster: () => [], resyncMs: 60000, events }),
    pods: new PodEndpoints(client, {
      node: 'n1', runtimeRoot: root, resyncMs: 60000, events,
      host: {
        pods: () => [...attached.values()],
        attachPod: async (req: AttachPodRequest) => {
          const ep = { name: req.name, ip: '10.77.0.9', mac: '02:00:00:00:00:09', node: 'n1', generation: 1, pid: req.pid, netns: req.netns, state: 'running' as const, pod: req.pod };
          attached.set(req.name, ep);
          return ep;
        },
        stop: async (name: string) => void attached.delete(name),
      },
    }),
  };
  t.teardown(async () => {
    process.off('unhandledRejection', unhandled);
    loops.discovery.stop();
    loops.migrations.stop();
    loops.records.stop();
    loops.pods.stop();
    await api.stop();
    rmSync(root, { recursive: true, force: true });
  });

  api.put('/api/v1/nodes', { metadata: { name: 'n1' } });
  // One per name (the last drawn), as the API server would hold them.
  const nodes = [...new Map(fc.sample(fc.record({ name: NAME, annotations }), COUNT).map((n) => [n.name, n])).values()];
  const migrations = fc.sample(fc.record({ name: NAME, spec: migrationSpec, status: fc.option(migrationStatus, { nil: undefined, freq: 2 }) }), COUNT);
  const records = fc.sample(fc.record({ name: NAME, spec: junk, status: junk }), COUNT);
  const pods = fc.sample(fc.record({ name: NAME, annotations, status: junk, spec: junk }), COUNT);
  const put = (path: string, obj: StoredObject) => {
    try {
      api.put(path, obj);
    } catch {
      // a name drawn twice for a namespaced kind the double refuses: skip it
    }
  };
  for (const n of nodes) if (n.name !== 'n1') put('/api/v1/nodes', { metadata: { name: n.name, annotations: n.annotations } });
  for (const m of migrations) put('/apis/roam.dev/v1alpha1/migrations', { metadata: { name: m.name }, spec: m.spec, ...(m.status ? { status: m.status } : {}) });
  for (const r of records) put('/apis/roam.dev/v1alpha1/roamendpoints', { metadata: { name: r.name }, spec: r.spec, status: r.status });
  for (const p of pods) put('/api/v1/pods', { metadata: { name: p.name, namespace: 'fuzz', annotations: p.annotations }, spec: { ...(typeof p.spec === 'object' ? p.spec : {}), nodeName: 'n1' }, status: p.status } as StoredObject);

  await loops.discovery.start();
  loops.migrations.start();
  loops.records.start();
  loops.pods.start();

  // Every new Migration (no status) with a spec the agent cannot run ends Failed, InvalidSpec.
  const stored = () => api.list('/apis/roam.dev/v1alpha1/migrations') as unknown as MigrationResource[];
  const fresh = stored().filter((m) => m.status === undefined);
  const invalid = fresh.filter((m) => !Value.Check(MigrationSpec, m.spec)).map((m) => m.metadata.name!);
  await waitFor('every invalid new Migration to be refused', () => {
    const now = new Map(stored().map((m) => [m.metadata.name, m]));
    return invalid.every((n) => now.get(n)?.status?.phase === 'Failed');
  }, 20000);
  t.true(invalid.length > 0 && fresh.length > invalid.length, `${invalid.length} invalid of ${fresh.length} new`);
  for (const n of invalid) t.is(stored().find((m) => m.metadata.name === n)!.status!.conditions.at(-1)!.reason, 'InvalidSpec', n);
  // A valid one is run here only if this node hosts its endpoint.
  for (const name of started) t.is(name, 'web');

  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const peer of table.peers()) t.true(isIpAddress(peer.address), `peer ${peer.node} at ${peer.address}`);
  const withVtep = nodes.filter((n) => n.name !== 'n1' && isIpAddress(n.annotations[ANNOTATIONS.vtep] ?? ''));
  t.deepEqual(table.peers().map((p) => p.node).sort(), withVtep.map((n) => n.name).sort());
  t.deepEqual(problems, []);
});
