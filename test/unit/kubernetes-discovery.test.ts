/**
 * Node discovery against the in-process API double, through the real
 * @kubernetes/client-node: agents publish their VTEP and claim ranges on
 * their Node objects, and every agent's location table follows the Nodes as
 * they join, move, leave, and as the watch breaks in the ways an API server
 * breaks it.
 */
import test, { type ExecutionContext } from 'ava';
import { LocationTable } from '../../src/cluster/locations.js';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { lowestFreeRange, mayKeepRange, NodeDiscovery } from '../../src/kubernetes/node-discovery.js';
import { ANNOTATIONS } from '../../src/kubernetes/resources.js';
import { KubeApiDouble } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const NODES = '/api/v1/nodes';
const SUBNET = '10.77.0.0/16';

async function apiServer(t: ExecutionContext): Promise<{ api: KubeApiDouble; url: string }> {
  const api = new KubeApiDouble();
  const url = await api.start();
  t.teardown(() => api.stop());
  return { api, url };
}

/** A Node as the kubelet registers it, before any agent ran there. */
function registerNode(api: KubeApiDouble, name: string): void {
  api.put(NODES, { metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec: {}, status: { addresses: [{ type: 'Hostname', address: name }] } });
}

function agent(t: ExecutionContext, url: string, node: string, vtep: string, fixedRange?: string) {
  const table = new LocationTable(node, vtep);
  const discovery = new NodeDiscovery(KubeClient.forServer(url, 50), table, {
    node, vtep, subnet: SUBNET, rangePrefixLength: 24, fixedRange, version: '0.1.0-test', events: new EventBus(),
  });
  t.teardown(() => discovery.stop());
  return { table, discovery };
}

const peersOf = (table: LocationTable, self: string): string[] =>
  table.nodeViews().filter((n) => n.node !== self).map((n) => `${n.node}@${n.address}`).sort();

test('lowestFreeRange takes the first block no one holds, and says when none is left', (t) => {
  t.is(lowestFreeRange('10.77.0.0/16', 24, new Set()), '10.77.0.0/24');
  t.is(lowestFreeRange('10.77.0.0/16', 24, new Set(['10.77.0.0/24', '10.77.2.0/24'])), '10.77.1.0/24');
  t.is(lowestFreeRange('10.77.0.0/23', 24, new Set(['10.77.0.0/24', '10.77.1.0/24'])), undefined);
  t.is(lowestFreeRange('fd00:77::/48', 64, new Set(['fd00:77::/64'])), 'fd00:77:0:1::/64');
});

test('mayKeepRange keeps a well-formed own range unless an earlier-named node holds it too', (t) => {
  t.true(mayKeepRange('10.77.3.0/24', 'n2', SUBNET, 24, [{ node: 'n3', range: '10.77.3.0/24' }]));
  t.false(mayKeepRange('10.77.3.0/24', 'n2', SUBNET, 24, [{ node: 'n1', range: '10.77.3.0/24' }]));
  t.false(mayKeepRange('10.78.3.0/24', 'n2', SUBNET, 24, []), 'outside the subnet');
  t.false(mayKeepRange('10.77.3.0/25', 'n2', SUBNET, 24, []), 'the wrong size');
  t.false(mayKeepRange('10.77.3.7/24', 'n2', SUBNET, 24, []), 'not a block boundary');
  t.false(mayKeepRange('garbage', 'n2', SUBNET, 24, []));
  t.false(mayKeepRange(undefined, 'n2', SUBNET, 24, []));
});

test('agents started together claim distinct ranges and learn each other from the Nodes', async (t) => {
  const { api, url } = await apiServer(t);
  for (const n of ['n1', 'n2', 'n3']) registerNode(api, n);
  const agents = [agent(t, url, 'n1', '172.31.0.1'), agent(t, url, 'n2', '172.31.0.2'), agent(t, url, 'n3', '172.31.0.3')];
  const ranges = await Promise.all(agents.map((a) => a.discovery.start()));

  t.is(new Set(ranges).size, 3, `ranges ${ranges.join(', ')} are distinct`);
  for (const r of ranges) t.regex(r, /^10\.77\.[0-2]\.0\/24$/);
  for (const [i, n] of ['n1', 'n2', 'n3'].entries()) {
    const annotations = api.get(NODES, n)!.metadata.annotations!;
    t.is(annotations[ANNOTATIONS.range], ranges[i]);
    t.is(annotations[ANNOTATIONS.vtep], `172.31.0.${i + 1}`);
    t.is(annotations[ANNOTATIONS.version], '0.1.0-test');
  }
  await waitFor('every table to hold both peers', () => agents.every((a, i) => peersOf(a.table, `n${i + 1}`).length === 2));
  t.deepEqual(peersOf(agents[0]!.table, 'n1'), ['n2@172.31.0.2', 'n3@172.31.0.3']);
  t.deepEqual(peersOf(agents[2]!.table, 'n3'), ['n1@172.31.0.1', 'n2@172.31.0.2']);
});

test('two nodes that claim the same range at once end with different ones, the earlier name keeping it', async (t) => {
  const { api, url } = await apiServer(t);
  registerNode(api, 'edge-a');
  registerNode(api, 'edge-b');
  // Both Nodes already say the same range, as two agents that both read "free" and both wrote would leave them.
  for (const n of ['edge-a', 'edge-b']) {
    const node = api.get(NODES, n)!;
    api.put(NODES, { ...node, metadata: { ...node.metadata, annotations: { [ANNOTATIONS.range]: '10.77.0.0/24' } } });
  }
  const [a, b] = await Promise.all([agent(t, url, 'edge-a', '172.31.0.1').discovery.start(), agent(t, url, 'edge-b', '172.31.0.2').discovery.start()]);
  t.is(a, '10.77.0.0/24');
  t.is(b, '10.77.1.0/24');
});

test('a restarted agent keeps its range; a peer that moves, leaves or joins is followed', async (t) => {
  const { api, url } = await apiServer(t);
  for (const n of ['n1', 'n2', 'n3']) registerNode(api, n);
  const one = agent(t, url, 'n1', '172.31.0.1');
  const two = agent(t, url, 'n2', '172.31.0.2');
  const three = agent(t, url, 'n3', '172.31.0.3');
  const [, range2, range3] = await Promise.all([one.discovery.start(), two.discovery.start(), three.discovery.start()]);
  await waitFor('n1 to see both peers', () => peersOf(one.table, 'n1').length === 2);

  // n2's agent restarts on a new underlay address: same range, and n1 follows the move.
  two.discovery.stop();
  const twoAgain = agent(t, url, 'n2', '172.31.0.22');
  t.is(await twoAgain.discovery.start(), range2);
  await waitFor('n1 to see n2 move', () => one.table.node('n2')?.address === '172.31.0.22');

  // n3 is deleted from the cluster: forgotten; a new node takes the range it freed.
  three.discovery.stop();
  api.remove(NODES, 'n3');
  await waitFor('n1 to forget n3', () => !one.table.node('n3'));
  registerNode(api, 'n4');
  const four = agent(t, url, 'n4', '172.31.0.4');
  t.is(await four.discovery.start(), range3, 'the lowest free range is the one n3 left');
  await waitFor('n1 to see n4 join', () => one.table.node('n4')?.address === '172.31.0.4');

  // A Node that loses its annotation (the agent uninstalled) stops being a peer.
  const n4 = api.get(NODES, 'n4')!;
  four.discovery.stop();
  api.put(NODES, { ...n4, metadata: { ...n4.metadata, annotations: {} } });
  await waitFor('n1 to drop n4', () => !one.table.node('n4'));
  t.deepEqual(peersOf(one.table, 'n1'), ['n2@172.31.0.22']);
});

test('a fixed range from the config is published as it is, and a lost write race is retried', async (t) => {
  const { api, url } = await apiServer(t);
  registerNode(api, 'n1');
  api.raceNextUpdate(NODES, 'n1');
  const one = agent(t, url, 'n1', '172.31.0.1', '10.77.42.0/24');
  t.is(await one.discovery.start(), '10.77.42.0/24');
  t.is(api.get(NODES, 'n1')!.metadata.annotations![ANNOTATIONS.range], '10.77.42.0/24');
  t.true(api.requests.some((r) => r.method === 'PUT' && r.status === 409), 'the first write met a conflict');
  t.is(api.get(NODES, 'n1')!.metadata.annotations!['double/racer'] !== undefined, true, 'the racing writer\'s change was kept');
});

test('the watch outlives dropped watches, an expired resourceVersion and an API server restart', async (t) => {
  const { api, url } = await apiServer(t);
  registerNode(api, 'n1');
  registerNode(api, 'n2');
  const one = agent(t, url, 'n1', '172.31.0.1');
  await one.discovery.start();
  const annotate = (name: string, vtep: string) => {
    const n = api.get(NODES, name)!;
    api.put(NODES, { ...n, metadata: { ...n.metadata, annotations: { ...n.metadata.annotations, [ANNOTATIONS.vtep]: vtep } } });
  };

  // The server ends every watch (its timeout): the informer watches again from where it was.
  api.dropWatches();
  annotate('n2', '172.31.0.2');
  await waitFor('n2 after a dropped watch', () => one.table.node('n2')?.address === '172.31.0.2');

  // The API server restarts: the informer resumes from the resourceVersion it had, and misses nothing.
  const lists = () => api.requests.filter((r) => r.method === 'GET' && r.url.startsWith(NODES) && !r.url.includes('watch=true')).length;
  const port = api.listenPort;
  await api.stop();
  annotate('n2', '172.31.0.12');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(one.table.node('n2')?.address, '172.31.0.2', 'nothing learned while the server is away');
  const listsBefore = lists();
  await api.start({ port });
  await waitFor('n2 after the API server came back', () => one.table.node('n2')?.address === '172.31.0.12');

  // Away again, and meanwhile the history it would resume from is compacted: 410 Gone, and it lists afresh.
  await api.stop();
  annotate('n2', '172.31.0.13');
  api.compact();
  annotate('n2', '172.31.0.14');
  await api.start({ port });
  await waitFor('n2 after a 410', () => one.table.node('n2')?.address === '172.31.0.14');
  t.true(api.goneSent > 0, 'the resumed watch got 410 Gone');
  t.true(lists() > listsBefore, 'the 410 made it list again');
  t.true(api.requests.some((r) => r.url.includes('watch=true') && r.status === 200), 'and watch from the new list');
  t.is(`http://127.0.0.1:${port}`, url);
});

test('cordoning the own Node (kubectl cordon, kubectl drain) is said to the agent, and so is uncordoning; other Nodes\' cordons and plain updates are not', async (t) => {
  const { api, url } = await apiServer(t);
  for (const n of ['n1', 'n2']) registerNode(api, n);
  const said: boolean[] = [];
  const table = new LocationTable('n1', '172.31.0.1');
  const discovery = new NodeDiscovery(KubeClient.forServer(url, 50), table, {
    node: 'n1', vtep: '172.31.0.1', subnet: SUBNET, rangePrefixLength: 24, fixedRange: undefined, version: '0.1.0-test', events: new EventBus(),
    onCordon: (cordoned) => said.push(cordoned),
  });
  t.teardown(() => discovery.stop());
  await discovery.start();
  const cordon = (name: string, unschedulable: boolean) => {
    const n = api.get(NODES, name)!;
    api.put(NODES, { ...n, spec: { ...(n.spec as object), unschedulable } });
  };
  cordon('n2', true);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.false(said.includes(true), "n2's cordon is not n1's");
  cordon('n1', true);
  await waitFor('n1 cordoned', () => said.at(-1) === true);
  cordon('n1', false);
  await waitFor('n1 uncordoned', () => said.at(-1) === false);
  // Updates that do not change the cordon (the kubelet's, an annotation) say nothing: a drain set by hand stays.
  const n1 = api.get(NODES, 'n1')!;
  api.put(NODES, { ...n1, metadata: { ...n1.metadata, labels: { ...n1.metadata.labels, touched: 'yes' } } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.deepEqual(said, [true, false]);

  // An agent that starts on a Node cordoned already drains from the start.
  cordon('n1', true);
  await waitFor('n1 cordoned again', () => said.at(-1) === true);
  discovery.stop();
  const again: boolean[] = [];
  const restarted = new NodeDiscovery(KubeClient.forServer(url, 50), new LocationTable('n1', '172.31.0.1'), {
    node: 'n1', vtep: '172.31.0.1', subnet: SUBNET, rangePrefixLength: 24, fixedRange: undefined, version: '0.1.0-test', events: new EventBus(),
    onCordon: (cordoned) => again.push(cordoned),
  });
  t.teardown(() => restarted.stop());
  await restarted.start();
  await waitFor('the restarted agent told', () => again.length > 0);
  t.deepEqual(again, [true]);
});
