/**
 * RoamEndpoint records against the API double: written by the node an
 * endpoint runs on, handed over (not deleted) when it moves, deleted when it
 * runs nowhere, and right in the end when another writer races an update.
 */
import test, { type ExecutionContext } from 'ava';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { EndpointRecords, type LocalEndpoint } from '../../src/kubernetes/endpoint-records.js';
import type { RoamEndpointResource } from '../../src/kubernetes/resources.js';
import { KubeApiDouble } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const ENDPOINTS = '/apis/roam.dev/v1alpha1/roamendpoints';

function endpoint(name: string, node: string, generation: number, ip = '10.77.0.10'): LocalEndpoint {
  return { name, ip, mac: '02:00:0a:4d:00:0a', node, generation, pid: 4242, netns: undefined, state: 'running', container: false };
}

/** A node's view: what runs on it (`here`) and what the whole cluster runs (`cluster`, shared by the nodes of a test). */
function recorder(t: ExecutionContext, url: string, node: string, cluster: Map<string, EndpointRecord>) {
  const here = new Map<string, LocalEndpoint>();
  const warnings: string[] = [];
  const events = new EventBus();
  events.on('log', (e) => e.level !== 'info' && warnings.push(e.message));
  const records = new EndpointRecords(KubeClient.forServer(url, 50), {
    node,
    local: () => [...here.values()],
    cluster: () => [...cluster.values()],
    resyncMs: 60000,
    events,
  });
  t.teardown(() => records.stop());
  const run = (ep: LocalEndpoint) => {
    here.set(ep.name, ep);
    cluster.set(ep.name, ep);
    return records.sync();
  };
  const leave = (name: string) => {
    here.delete(name);
    return records.sync();
  };
  return { records, run, leave, warnings };
}

async function apiServer(t: ExecutionContext): Promise<{ api: KubeApiDouble; url: string }> {
  const api = new KubeApiDouble();
  const url = await api.start();
  t.teardown(() => api.stop());
  return { api, url };
}

const record = (api: KubeApiDouble, name: string) => api.get(ENDPOINTS, name) as unknown as RoamEndpointResource | undefined;

test('a node records its endpoints, moves hand the record over, and a stopped endpoint\'s record goes', async (t) => {
  const { api, url } = await apiServer(t);
  const cluster = new Map<string, EndpointRecord>();
  const n1 = recorder(t, url, 'n1', cluster);
  const n2 = recorder(t, url, 'n2', cluster);
  n1.records.start();
  n2.records.start();

  await n1.run(endpoint('web', 'n1', 1));
  await waitFor('web recorded on n1', () => record(api, 'web')?.status?.node === 'n1');
  t.deepEqual(record(api, 'web')!.spec, { ip: '10.77.0.10', mac: '02:00:0a:4d:00:0a' });
  t.deepEqual(record(api, 'web')!.status, { node: 'n1', generation: 1, state: 'running', container: false });

  // A migration: web arrives on n2 one generation newer, then leaves n1 (in either order n1 must not delete it).
  await n2.run(endpoint('web', 'n2', 2));
  await n1.leave('web');
  await waitFor('web recorded on n2', () => record(api, 'web')?.status?.node === 'n2');
  await n1.records.sync();
  t.is(record(api, 'web')?.status?.generation, 2);
  t.false(api.requests.some((r) => r.method === 'DELETE'), 'the moved endpoint\'s record was never deleted');

  // Stopped: it runs nowhere now, and its node deletes the record.
  cluster.delete('web');
  await n2.leave('web');
  await waitFor('web\'s record deleted', () => record(api, 'web') === undefined);
  t.deepEqual([...n1.warnings, ...n2.warnings], []);
});

test('an older node\'s late write does not take a record back from the endpoint\'s newer node', async (t) => {
  const { api, url } = await apiServer(t);
  const cluster = new Map<string, EndpointRecord>();
  const n1 = recorder(t, url, 'n1', cluster);
  const n2 = recorder(t, url, 'n2', cluster);
  n2.records.start();
  await n2.run(endpoint('db', 'n2', 5));
  await waitFor('db recorded on n2', () => record(api, 'db')?.status?.node === 'n2');
  // n1 still believes it runs db at generation 4 (it has not yet cleaned up after the move).
  n1.records.start();
  await n1.run(endpoint('db', 'n1', 4));
  cluster.set('db', endpoint('db', 'n2', 5));
  await n1.records.sync();
  t.is(record(api, 'db')?.status?.node, 'n2');
  t.is(record(api, 'db')?.status?.generation, 5);
});

test('a write that loses a race to another writer is done again on the newer object', async (t) => {
  const { api, url } = await apiServer(t);
  const cluster = new Map<string, EndpointRecord>();
  const n1 = recorder(t, url, 'n1', cluster);
  n1.records.start();
  await n1.run(endpoint('cache', 'n1', 1));
  await waitFor('cache recorded', () => record(api, 'cache')?.status?.generation === 1);

  api.raceNextUpdate(ENDPOINTS, 'cache', 2);
  await n1.run(endpoint('cache', 'n1', 2, '10.77.0.11'));
  await waitFor('cache at generation 2 with its new address', () => record(api, 'cache')?.status?.generation === 2 && record(api, 'cache')?.spec.ip === '10.77.0.11');
  t.true(api.requests.filter((r) => r.method === 'PUT' && r.status === 409).length >= 2, 'both racing writes met a 409');
  t.truthy(record(api, 'cache')!.metadata?.annotations?.['double/racer'], 'the other writer\'s change survives');
  t.deepEqual(n1.warnings, [], 'a conflict is not an error to report');
});

test('records deleted behind the agent\'s back come back, and a restart of the API server is ridden out', async (t) => {
  const { api, url } = await apiServer(t);
  const cluster = new Map<string, EndpointRecord>();
  const n1 = recorder(t, url, 'n1', cluster);
  n1.records.start();
  await n1.run(endpoint('api', 'n1', 3));
  await waitFor('api recorded', () => record(api, 'api') !== undefined);

  api.remove(ENDPOINTS, 'api'); // kubectl delete
  await waitFor('api recorded again', () => record(api, 'api')?.status?.generation === 3);

  const port = api.listenPort;
  await api.stop();
  await n1.run(endpoint('api', 'n1', 4));
  t.true(n1.warnings.some((w) => w.includes('endpoint record api')), `the failed write is reported: ${n1.warnings.join('; ')}`);
  await api.start({ port });
  // The watch comes back and its re-list starts a round that writes what was missed.
  await waitFor('api at generation 4 after the API server came back', () => record(api, 'api')?.status?.generation === 4);
});
