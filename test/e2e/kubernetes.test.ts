/**
 * The agents in Kubernetes mode on the testbed: real agents, real overlay,
 * real CRIU, with the in-process API double as their API server, listening
 * in the testbed's underlay "switch" namespace where every node reaches it.
 * Membership and ranges come from Node objects; a Migration resource moves
 * a service with live client streams, and its status and the endpoint's
 * RoamEndpoint record follow.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { callJson } from '../../src/api/http-client.js';
import type { NodeStatus } from '../../src/api/schemas.js';
import { ANNOTATIONS, type MigrationResource, type RoamEndpointResource } from '../../src/kubernetes/resources.js';
import { createNetns, removeNetns } from '../../src/sys/netns/netns.js';
import { defaultSpec } from '../../src/sys/runc.js';
import { makeRootfs } from '../../src/testbed/container-rootfs.js';
import { NETNS_DIR, testbedLayout } from '../../src/testbed/layout.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { isAgentRunning } from '../../src/testbed/agent-process.js';
import { testbedUp } from '../../src/testbed/up.js';
import { KubeApiDouble } from '../helpers/kube-api-double.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, endpointLog, run, streamAdvances, uniqueTestbedName, waitFor, workload } from '../helpers/testbed.js';

const name = uniqueTestbedName();
const NODES = '/api/v1/nodes';
const MIGRATIONS = '/apis/roam.dev/v1alpha1/migrations';
const ENDPOINTS = '/apis/roam.dev/v1alpha1/roamendpoints';
const PODS = '/api/v1/pods';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const api = new KubeApiDouble();
/** the pod's network namespace, as the CNI plugin would have made it */
const podNetns = `/run/netns/roamtest-${name}-web`;
const podContainer = `${name}-web-app`;
let rootfs: ReturnType<typeof makeRootfs> | undefined;
let tb: TestbedState;
let kubeconfig: string;
let runtimeRoot: string;

test.before(async () => {
  requireRoot();
  const layout = testbedLayout(name, 3);
  // The switch namespace first, so that the API server can listen in it before the agents start.
  mkdirSync(NETNS_DIR, { recursive: true });
  mkdirSync(layout.dir, { recursive: true });
  createNetns(layout.switchNetnsPath);
  await api.start({ netns: layout.switchNetnsPath });
  for (const n of layout.nodes) api.put(NODES, { metadata: { name: n.name }, spec: {}, status: { addresses: [{ type: 'InternalIP', address: n.underlayIp }] } });
  kubeconfig = join(layout.dir, 'kubeconfig');
  runtimeRoot = join(layout.dir, 'containerd-runc-k8s.io');
  writeFileSync(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: testbed',
    'clusters:', '- name: testbed', '  cluster:', `    server: http://${layout.switchIp}:${api.listenPort}`, '    insecure-skip-tls-verify: true',
    'users:', '- name: agent', '  user: {}',
    'contexts:', '- name: testbed', '  context: {cluster: testbed, user: agent}', '',
  ].join('\n'));
  tb = await testbedUp({ name, nodes: 3, underlayRate: undefined, syncIntervalMs: 500, kubernetes: { kubeconfig, runtimeRoot }, say: () => undefined });
});

test.after.always(async () => {
  await api.stop();
  try {
    execFileSync('runc', ['--root', runtimeRoot, 'delete', '--force', podContainer], { stdio: 'ignore' });
  } catch {
    // never started, or already gone
  }
  removeNetns(podNetns);
  rootfs?.remove();
  await downClean(name);
});

const migration = (n: string) => api.get(MIGRATIONS, n) as unknown as MigrationResource | undefined;
const record = (n: string) => api.get(ENDPOINTS, n) as unknown as RoamEndpointResource | undefined;

test.serial('each agent publishes its VTEP and a range of its own on its Node, and knows the others from theirs', async (t) => {
  const published = tb.nodes.map((n) => api.get(NODES, n.name)!.metadata.annotations ?? {});
  t.deepEqual(published.map((a) => a[ANNOTATIONS.vtep]), tb.nodes.map((n) => n.underlayIp));
  const ranges = published.map((a) => a[ANNOTATIONS.range]);
  t.is(new Set(ranges).size, 3, `ranges ${ranges.join(', ')}`);
  for (const n of tb.nodes) {
    const view = await callJson<NodeStatus[]>({ socketPath: n.apiSocket }, 'GET', '/v1/nodes');
    t.deepEqual(view.map((v) => v.node).sort(), ['node1', 'node2', 'node3'], `${n.name}'s view`);
  }
});

test.serial('a Migration resource moves a service with its client streams; its status and the endpoint\'s record follow', async (t) => {
  const srv = await run(tb, 'node1', 'echo', [process.execPath, workload('echo-server.js'), '--port', '7001']);
  const node1Range = api.get(NODES, 'node1')!.metadata.annotations![ANNOTATIONS.range]!;
  t.is(srv.ip.split('.').slice(0, 3).join('.'), node1Range.split('.').slice(0, 3).join('.'), `${srv.ip} is from node1's claimed range ${node1Range}`);
  await waitFor('echo to listen', () => endpointLog(tb, 'node1', 'echo').includes('listening'));
  await run(tb, 'node3', 'clients', [process.execPath, workload('stream-check.js'), srv.ip, '7001', '--connections', '20', '--rate', '2000']);
  await waitFor('20 connections', () => endpointLog(tb, 'node3', 'clients').includes('"connected":20'));
  await streamAdvances(tb, 'node3', 'clients', 20000);
  await waitFor('echo recorded on node1', () => record('echo')?.status?.node === 'node1');
  t.like(record('echo')!, { spec: { ip: srv.ip, mac: srv.mac }, status: { node: 'node1', state: 'running', container: false } });
  const generation = record('echo')!.status!.generation;

  api.put(MIGRATIONS, { metadata: { name: 'echo-to-node2' }, spec: { endpoint: 'echo', targetNode: 'node2', mode: 'stop-copy' } });
  await waitFor('the migration to end', () => ['Succeeded', 'RolledBack', 'Failed'].includes(migration('echo-to-node2')?.status?.phase ?? ''), 60000);
  const status = migration('echo-to-node2')!.status!;
  t.is(status.phase, 'Succeeded', JSON.stringify(status.conditions));
  t.is(status.sourceNode, 'node1');
  t.is(status.report?.running_on, 'node2');
  t.true((status.report?.tcp_connections ?? 0) >= 20, `${status.report?.tcp_connections} connections carried`);
  t.true((status.report?.frozen_ms ?? 0) > 0);
  const phases = api.versions(MIGRATIONS, 'echo-to-node2').map((v) => (v as unknown as MigrationResource).status?.phase).filter((p, i, all) => p && p !== all[i - 1]);
  t.deepEqual(phases, ['Queued', 'Prepare', 'Dump', 'Transfer', 'Restore', 'Switch', 'Unlock', 'Cleanup', 'Succeeded']);

  await waitFor('echo recorded on node2', () => record('echo')?.status?.node === 'node2');
  t.like(record('echo')!, { spec: { ip: srv.ip, mac: srv.mac }, status: { node: 'node2', generation: generation + 1, state: 'running' } });
  const after = await streamAdvances(tb, 'node3', 'clients', 50000, 15000);
  t.is(after.open, 20, 'every client connection survived');
});

test.serial('a Migration the agent refuses ends Failed with the reason, and the service stays where it is', async (t) => {
  api.put(MIGRATIONS, { metadata: { name: 'echo-to-nowhere' }, spec: { endpoint: 'echo', targetNode: 'node9' } });
  await waitFor('the refusal', () => migration('echo-to-nowhere')?.status?.phase === 'Failed', 20000);
  const done = migration('echo-to-nowhere')!.status!.conditions.at(-1)!;
  t.is(done.reason, 'NotFound');
  t.regex(done.message, /unknown node node9/);
  t.is(record('echo')?.status?.node, 'node2');
});

test.serial('an agent restarted as in a rolling update keeps its range and its service, which keeps its clients and moves on', async (t) => {
  const node2 = tb.nodes.find((n) => n.name === 'node2')!;
  const range = api.get(NODES, 'node2')!.metadata.annotations![ANNOTATIONS.range];
  process.kill(node2.agentPid, 'SIGTERM');
  await waitFor('node2\'s agent to stop', () => !isAgentRunning(node2.agentPid), 20000);
  tb = await testbedUp({ name, nodes: 3, underlayRate: undefined, syncIntervalMs: 500, kubernetes: { kubeconfig, runtimeRoot }, say: () => undefined });
  t.not(tb.nodes.find((n) => n.name === 'node2')!.agentPid, node2.agentPid, 'a new agent runs');
  t.is(api.get(NODES, 'node2')!.metadata.annotations![ANNOTATIONS.range], range);
  await streamAdvances(tb, 'node3', 'clients', 20000, 15000);

  api.put(MIGRATIONS, { metadata: { name: 'echo-back-to-node1' }, spec: { endpoint: 'echo', targetNode: 'node1' } });
  await waitFor('the migration to end', () => ['Succeeded', 'RolledBack', 'Failed'].includes(migration('echo-back-to-node1')?.status?.phase ?? ''), 60000);
  t.is(migration('echo-back-to-node1')!.status!.phase, 'Succeeded', JSON.stringify(migration('echo-back-to-node1')!.status!.conditions));
  await waitFor('echo recorded on node1', () => record('echo')?.status?.node === 'node1');
  const after = await streamAdvances(tb, 'node3', 'clients', 50000, 15000);
  t.is(after.open, 20);
});

test.serial('a pod that opts in gets an overlay address beside its own network, named by an EndpointSlice, and loses it when it goes', async (t) => {
  // A pod as containerd runs it: its sandbox's namespace (here made as a CNI plugin would), a container
  // in it run by runc with its state under the runtime root the agents are told about.
  createNetns(podNetns);
  rootfs = makeRootfs();
  const bundle = join(rootfs.dir, 'bundle');
  mkdirSync(bundle);
  const spec = await defaultSpec() as { process: Record<string, unknown>; linux: { namespaces: { type: string; path?: string }[] } };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({
    ...spec,
    root: { path: rootfs.rootfs, readonly: true },
    process: { ...spec.process, terminal: false, args: ['/bin/echo-server', '7300'] },
    linux: { ...spec.linux, namespaces: [...spec.linux.namespaces.filter((n) => n.type !== 'network'), { type: 'network', path: podNetns }] },
  }));
  execFileSync('runc', ['--root', runtimeRoot, 'run', '--detach', '--bundle', bundle, podContainer], { stdio: 'ignore' });
  api.put(PODS, {
    metadata: { name: 'web', namespace: 'shop', annotations: { 'roam.dev/mobile-ip': 'true', 'roam.dev/service': 'storefront' } },
    spec: { nodeName: 'node1', containers: [{ name: 'app', image: 'shop/web:1', ports: [{ name: 'echo', containerPort: 7300, protocol: 'TCP' }] }] },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', containerID: `containerd://${podContainer}`, state: { running: {} }, ready: true, restartCount: 0, image: 'shop/web:1', imageID: '' }] },
  });

  await waitFor('the pod recorded as an endpoint of node1', () => record('shop-web')?.status?.node === 'node1', 20000);
  const rec = record('shop-web')!;
  t.deepEqual(rec.status?.pod, { namespace: 'shop', name: 'web' });
  t.regex(execFileSync('ip', ['-n', podNetns.split('/').pop()!, 'addr', 'show', 'roam0'], { encoding: 'utf8' }), new RegExp(`inet ${rec.spec.ip.replaceAll('.', '\\.')}/`));
  await waitFor('its EndpointSlice', () => api.get(SLICES, 'shop/roam-shop-web') !== undefined);
  const slice = api.get(SLICES, 'shop/roam-shop-web') as unknown as { metadata: { labels: Record<string, string> }; endpoints: { addresses: string[] }[]; ports: { port: number }[] };
  t.is(slice.metadata.labels['kubernetes.io/service-name'], 'storefront');
  t.deepEqual(slice.endpoints.map((e) => e.addresses), [[rec.spec.ip]]);
  t.deepEqual(slice.ports.map((p) => p.port), [7300]);

  // A client on another node reaches the pod at its overlay address, through the overlay.
  await run(tb, 'node3', 'shopper', [process.execPath, workload('stream-check.js'), rec.spec.ip, '7300', '--connections', '4', '--rate', '2000']);
  await waitFor('4 connections', () => endpointLog(tb, 'node3', 'shopper').includes('"connected":4'));
  await streamAdvances(tb, 'node3', 'shopper', 20000);

  // Moving the pod is the kubelet's business, not built yet: refused, saying so.
  api.put(MIGRATIONS, { metadata: { name: 'shop-web-away' }, spec: { endpoint: 'shop-web', targetNode: 'node2' } });
  await waitFor('the refusal', () => migration('shop-web-away')?.status?.phase === 'Failed', 20000);
  t.regex(migration('shop-web-away')!.status!.conditions.at(-1)!.message, /pod shop\/web, which the kubelet runs/);

  // The pod goes: its interface, record and slice go; its container is none of roam's business.
  api.remove(PODS, 'shop/web');
  await waitFor('the record gone', () => record('shop-web') === undefined, 20000);
  await waitFor('the slice gone', () => api.get(SLICES, 'shop/roam-shop-web') === undefined);
  t.notRegex(execFileSync('ip', ['-n', podNetns.split('/').pop()!, 'link'], { encoding: 'utf8' }), /roam0/);
  t.regex(execFileSync('runc', ['--root', runtimeRoot, 'state', podContainer], { encoding: 'utf8' }), /"status": "running"/);
});

test.serial('cordoning a Node drains it: its service moves to where its clients are, with their streams, an Event says why; uncordoning lifts it', async (t) => {
  t.is(record('echo')?.status?.node, 'node1');
  const node1 = api.get(NODES, 'node1')!;
  api.put(NODES, { ...node1, spec: { ...(node1.spec as object), unschedulable: true } });
  await waitFor('echo to leave node1', () => record('echo')?.status?.node === 'node3', 60000);
  const after = await streamAdvances(tb, 'node3', 'clients', 50000, 15000);
  t.is(after.open, 20, 'every client connection survived the drain');
  const events = () => api.list('/api/v1/events').filter((e) => (e.involvedObject as { name?: string } | undefined)?.name === 'echo');
  await waitFor('the Event', () => events().some((e) => e.reason === 'DrainMoved'));
  t.like(events().find((e) => e.reason === 'DrainMoved'), { metadata: { namespace: 'default' }, involvedObject: { kind: 'RoamEndpoint' }, source: { host: 'node1' } });
  t.regex(String(events().find((e) => e.reason === 'DrainMoved')!.message), /^moved node3 \(node-draining\): node1 is draining; migration m-/);
  const lifted = api.get(NODES, 'node1')!;
  api.put(NODES, { ...lifted, spec: { ...(lifted.spec as object), unschedulable: false } });
  await waitFor('node1 no longer draining', async () => {
    const nodes = await callJson<NodeStatus[]>({ socketPath: tb.nodes[2]!.apiSocket }, 'GET', '/v1/nodes');
    return nodes.find((n) => n.node === 'node1')?.draining === false;
  }, 20000);
});
