import test from 'ava';
import { LocationTable } from '../../src/cluster/locations.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';

function ep(name: string, node: string, generation = 1): EndpointRecord {
  return { name, ip: `10.0.0.${name.length}`, mac: '02:72:00:00:00:01', node, generation, pid: 1, netns: undefined, state: 'running' };
}

test('announcements merge by sequence; stale ones change nothing', (t) => {
  let clock = 1000;
  const table = new LocationTable('n1', '172.31.0.1', () => clock);
  t.true(table.merge({ node: 'n2', address: '172.31.0.2', seq: 5, endpoints: [ep('a', 'n2')] }));
  t.false(table.merge({ node: 'n2', address: '172.31.0.2', seq: 4, endpoints: [] }));
  t.deepEqual(table.endpoints().map((e) => e.name), ['a']);
  clock = 2000;
  t.true(table.merge({ node: 'n2', address: '172.31.0.2', seq: 6, endpoints: [] }));
  t.deepEqual(table.endpoints(), []);
});

test('a silent peer keeps its endpoints (the data path outlives the control plane)', (t) => {
  const table = new LocationTable('n1', '172.31.0.1');
  table.merge({ node: 'n2', address: '172.31.0.2', seq: 5, endpoints: [ep('a', 'n2')] });
  table.markHeard('n2', false);
  t.false(table.node('n2')!.reachable);
  t.deepEqual(table.endpoints().map((e) => e.name), ['a']);
});

test('own sequence only grows, even across a restart with the same clock', (t) => {
  const clock = 5000;
  const table = new LocationTable('n1', '172.31.0.1', () => clock);
  const first = table.announcement().seq;
  table.setLocal([ep('x', 'n1')]);
  const second = table.announcement().seq;
  t.true(second > first);
  table.setLocal([ep('x', 'n1')]);
  t.is(table.announcement().seq, second, 'no change, no new sequence');
  const restarted = new LocationTable('n1', '172.31.0.1', () => clock + 1);
  t.true(restarted.announcement().seq > first);
});

test('the same endpoint on two nodes resolves to the newest generation', (t) => {
  const table = new LocationTable('n1', '172.31.0.1');
  table.setLocal([ep('a', 'n1', 1)]);
  table.merge({ node: 'n2', address: '172.31.0.2', seq: 9, endpoints: [ep('a', 'n2', 2)] });
  t.is(table.endpoints()[0]!.node, 'n2');
});

test('change listeners fire on local and remote changes', (t) => {
  const table = new LocationTable('n1', '172.31.0.1');
  let calls = 0;
  table.onChange(() => calls++);
  table.setLocal([ep('a', 'n1')]);
  table.merge({ node: 'n2', address: '172.31.0.2', seq: 1, endpoints: [] });
  table.addPeer('n3', '172.31.0.3');
  t.is(calls, 3);
});
