/**
 * Pods opting in to a mobile IP, against the API double: which pods get an
 * interface (from the runtime's state files, written here as runc writes
 * them), when it goes, and the EndpointSlices that name the addresses. The
 * node's endpoint manager is a fake here; test/e2e/kubernetes.test.ts does
 * the same with real namespaces and a real runc container.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import type { AttachPodRequest } from '../../src/endpoint/manager.js';
import { podEndpointName } from '../../src/endpoint/naming.js';
import type { PodRef } from '../../src/endpoint/store.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { PodEndpoints, runningContainerId, sliceFor, wantsMobileIp, type PodHost } from '../../src/kubernetes/pod-endpoints.js';
import { parseRuntimeState } from '../../src/sys/runc.js';
import { KubeApiDouble, type StoredObject } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const PODS = '/api/v1/pods';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';

/** A pod as the kubelet reports it (the API server gives it its uid). */
function pod(name: string, o: { node?: string; optIn?: boolean; phase?: string; containerId?: string; service?: string } = {}): StoredObject {
  const p: V1Pod = {
    metadata: {
      name, namespace: 'shop',
      annotations: { ...(o.optIn === false ? {} : { 'roam.dev/mobile-ip': 'true' }), ...(o.service ? { 'roam.dev/service': o.service } : {}) },
    },
    spec: { nodeName: o.node ?? 'n1', containers: [{ name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: {
      phase: o.phase ?? 'Running',
      containerStatuses: o.containerId === undefined
        ? [{ name: 'app', image: 'app:1', imageID: '', ready: true, restartCount: 0, containerID: `containerd://c-${name}`, state: { running: {} } }]
        : o.containerId ? [{ name: 'app', image: 'app:1', imageID: '', ready: true, restartCount: 0, containerID: o.containerId, state: { running: {} } }] : [],
    },
  };
  return p as unknown as StoredObject;
}

const asPod = (o: StoredObject): V1Pod => o as unknown as V1Pod;

/** runc's state.json for a container that joined `netns`, as containerd's runc shim leaves it. */
function runtimeState(root: string, id: string, netns: string, pid = 4242): void {
  mkdirSync(join(root, id), { recursive: true });
  writeFileSync(join(root, id, 'state.json'), JSON.stringify({
    id, init_process_pid: pid, init_process_start: 123456, created: new Date().toISOString(),
    config: { namespaces: [{ type: 'NEWPID', path: '' }, { type: 'NEWNET', path: netns }] },
    namespace_paths: { NEWNET: `/proc/${pid}/ns/net` },
  }));
}

class FakeHost implements PodHost {
  readonly attached = new Map<string, EndpointRecord & { pod: PodRef }>();
  readonly stopped: string[] = [];
  private next = 10;

  pods() {
    return [...this.attached.values()];
  }

  async attachPod(req: AttachPodRequest): Promise<EndpointRecord> {
    if (this.attached.has(req.name)) throw new RoamError('CONFLICT', `endpoint ${req.name} exists`);
    const ep = { name: req.name, ip: `10.77.0.${this.next++}`, mac: '02:00:00:00:00:01', node: 'n1', generation: 1, pid: req.pid, netns: req.netns, state: 'running' as const, pod: req.pod };
    this.attached.set(req.name, ep);
    return ep;
  }

  async stop(name: string): Promise<void> {
    this.attached.delete(name);
    this.stopped.push(name);
  }
}

async function setup(t: ExecutionContext) {
  const api = new KubeApiDouble();
  const url = await api.start();
  const root = mkdtempSync(join(tmpdir(), 'roam-runtime-root-'));
  const host = new FakeHost();
  const warnings: string[] = [];
  const events = new EventBus();
  events.on('log', (e) => e.level === 'warn' && warnings.push(e.message));
  const loop = new PodEndpoints(KubeClient.forServer(url, 50), { node: 'n1', runtimeRoot: root, host, resyncMs: 60000, events });
  t.teardown(async () => {
    loop.stop();
    await api.stop();
    rmSync(root, { recursive: true, force: true });
  });
  return { api, root, host, warnings, loop };
}

const slice = (api: KubeApiDouble, name: string) => api.get(SLICES, `shop/roam-shop-${name}`) as unknown as { metadata: { labels: Record<string, string>; ownerReferences: { uid: string }[] }; addressType: string; endpoints: { addresses: string[]; nodeName: string }[]; ports: unknown[] } | undefined;

test('the pure parts: runtime state, container IDs, who asks, names, the slice', (t) => {
  t.deepEqual(parseRuntimeState(JSON.stringify({ init_process_pid: 7, init_process_start: 9, config: { namespaces: [{ type: 'NEWNET', path: '/var/run/netns/cni-1' }] } }), 's'), { pid: 7, startTime: 9, netns: '/var/run/netns/cni-1' });
  t.deepEqual(parseRuntimeState(JSON.stringify({ init_process_pid: 7, init_process_start: 9, config: { namespaces: [{ type: 'NEWNET', path: '' }] } }), 's'), { pid: 7, startTime: 9, netns: '/proc/7/ns/net' }, 'a sandbox made its own');
  t.throws(() => parseRuntimeState('{"id":"x"}', '/r/x/state.json'), { message: /runtime state \/r\/x\/state\.json: no init_process_pid/ });
  t.throws(() => parseRuntimeState('nope', '/r/x/state.json'), { message: /not JSON/ });
  t.is(runningContainerId(asPod(pod('a'))), 'c-a');
  t.is(runningContainerId(asPod(pod('a', { containerId: '' }))), undefined);
  t.true(wantsMobileIp(asPod(pod('a'))));
  t.false(wantsMobileIp(asPod(pod('a', { optIn: false }))));
  t.false(wantsMobileIp(asPod(pod('a', { phase: 'Pending' }))));
  t.is(podEndpointName('shop', 'web-0'), 'shop-web-0');
  const long = podEndpointName('a-very-long-namespace-name-for-a-team', 'a-statefulset-with-a-long-name-0');
  t.regex(long, /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
  t.not(long, podEndpointName('a-very-long-namespace-name-for-a-team', 'a-statefulset-with-a-long-name-1'));
  const s = sliceFor('n1', { name: 'shop-web', ip: 'fd00::5', mac: '', node: 'n1', generation: 1, pid: 1, netns: '', state: 'running' }, asPod(pod('web', { service: 'storefront' })));
  t.is(s.addressType, 'IPv6');
  t.is(s.metadata?.labels?.['kubernetes.io/service-name'], 'storefront');
  t.deepEqual(s.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
});

test('an opted-in running pod gets an interface and a slice; one that stops asking or goes loses both', async (t) => {
  const { api, root, host, warnings, loop } = await setup(t);
  runtimeState(root, 'c-web', '/var/run/netns/cni-web');
  runtimeState(root, 'c-db', '/var/run/netns/cni-db');
  api.put(PODS, pod('web', { service: 'storefront' }));
  api.put(PODS, pod('db'));
  api.put(PODS, pod('plain', { optIn: false }));
  api.put(PODS, pod('elsewhere', { node: 'n2' }));
  api.put(PODS, pod('starting', { phase: 'Pending', containerId: '' }));
  loop.start();

  await waitFor('web and db attached', () => host.attached.size === 2);
  const webUid = api.get(PODS, 'shop/web')!.metadata.uid;
  t.like(host.attached.get('shop-web')!, { netns: '/var/run/netns/cni-web', pid: 4242, pod: { namespace: 'shop', name: 'web', uid: webUid } });
  t.truthy(host.attached.get('shop-db'));
  await waitFor('the slices', () => slice(api, 'web') !== undefined && slice(api, 'db') !== undefined);
  const web = slice(api, 'web')!;
  t.is(web.metadata.labels['kubernetes.io/service-name'], 'storefront');
  t.is(web.metadata.labels['endpointslice.kubernetes.io/managed-by'], 'roam-agent.roam.dev');
  t.deepEqual(web.endpoints.map((e) => [e.addresses, e.nodeName]), [[[host.attached.get('shop-web')!.ip], 'n1']]);
  t.deepEqual(web.metadata.ownerReferences.map((o) => o.uid), [webUid]);
  t.is(slice(api, 'db')!.metadata.labels['kubernetes.io/service-name'], 'db', 'the pod\'s name when no Service is named');
  t.true(api.requests.some((r) => r.url.startsWith('/api/v1/pods?') && r.url.includes('fieldSelector=spec.nodeName%3Dn1')), 'only this node\'s pods are asked for');

  // db stops asking: its interface and slice go. web is deleted: the same.
  const db = api.get(PODS, 'shop/db')!;
  api.put(PODS, { ...db, metadata: { ...db.metadata, annotations: {} } });
  api.remove(PODS, 'shop/web');
  await waitFor('both detached', () => host.attached.size === 0);
  await waitFor('both slices gone', () => slice(api, 'web') === undefined && slice(api, 'db') === undefined);
  t.deepEqual(host.stopped.sort(), ['shop-db', 'shop-web']);
  t.deepEqual(warnings, []);
});

test('a pod re-created under the same name (a new sandbox) gets a fresh interface; a missing runtime state is said once', async (t) => {
  const { api, root, host, warnings, loop } = await setup(t);
  runtimeState(root, 'c-web', '/var/run/netns/cni-1');
  api.put(PODS, pod('web'));
  api.put(PODS, pod('ghost', { containerId: 'containerd://not-there' }));
  loop.start();
  await waitFor('web attached', () => host.attached.get('shop-web')?.netns === '/var/run/netns/cni-1');
  await waitFor('the ghost said', () => warnings.length > 0);
  t.regex(warnings[0]!, /pod shop\/ghost: runtime state of container not-there: cannot read .*not-there\/state\.json \(ENOENT\)/);

  runtimeState(root, 'c-web2', '/var/run/netns/cni-2');
  api.remove(PODS, 'shop/web');
  const firstUid = host.attached.get('shop-web')!.pod.uid;
  const newUid = api.put(PODS, pod('web', { containerId: 'containerd://c-web2' })).metadata.uid ?? '';
  t.not(newUid, firstUid);
  await waitFor('web on its new sandbox', () => host.attached.get('shop-web')?.netns === '/var/run/netns/cni-2');
  t.is(host.attached.get('shop-web')!.pod.uid, newUid);
  await waitFor('the slice owned by the new pod', () => slice(api, 'web')?.metadata.ownerReferences[0]?.uid === newUid);
  await loop.sync();
  await loop.sync();
  t.is(warnings.filter((w) => w.includes('ghost')).length, 1, 'said once, not every round');
});
