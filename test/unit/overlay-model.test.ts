import test from 'ava';
import { diffFdb, type FdbChange } from '../../src/overlay/diff.js';
import { desiredFdb, resolveLocations } from '../../src/overlay/model.js';

const peers = [
  { node: 'n1', vtep: '172.31.0.1' },
  { node: 'n2', vtep: '172.31.0.2' },
  { node: 'n3', vtep: '172.31.0.3' },
];

test('every node floods to every peer and pins every remote MAC twice, local MACs once', (t) => {
  const d = desiredFdb({
    self: 'n1',
    peers,
    endpoints: [
      { name: 'a', mac: '02:72:00:00:00:01', node: 'n1', generation: 1 },
      { name: 'b', mac: '02:72:00:00:00:02', node: 'n2', generation: 1 },
    ],
    localPorts: new Set(['a']),
  });
  const flood = d.filter((e) => e.mac === '00:00:00:00:00:00');
  t.deepEqual(flood.map((e) => e.dst).sort(), ['172.31.0.2', '172.31.0.3']);
  t.deepEqual(d.filter((e) => e.mac === '02:72:00:00:00:02').map((e) => `${e.table}:${e.dst ?? ''}`).sort(), ['master:', 'self:172.31.0.2']);
  t.deepEqual(d.filter((e) => e.mac === '02:72:00:00:00:01'), [{ device: { kind: 'endpoint-port', endpoint: 'a' }, mac: '02:72:00:00:00:01', table: 'master', dst: undefined }]);
});

test('a local endpoint without a port yet, or a remote one on an unknown node, gets no entry', (t) => {
  const d = desiredFdb({
    self: 'n1', peers,
    endpoints: [
      { name: 'a', mac: '02:72:00:00:00:01', node: 'n1', generation: 1 },
      { name: 'z', mac: '02:72:00:00:00:09', node: 'n9', generation: 1 },
    ],
    localPorts: new Set(),
  });
  t.is(d.filter((e) => e.mac !== '00:00:00:00:00:00').length, 0);
});

test('during a move the newest generation decides where a MAC lives', (t) => {
  const where = resolveLocations([
    { name: 'a', mac: 'm', node: 'n1', generation: 1 },
    { name: 'a', mac: 'm', node: 'n2', generation: 2 },
  ]);
  t.is(where.get('m')?.node, 'n2');
});

function change(table: 'self' | 'master', mac: string, dst?: string, pinned = true): FdbChange {
  return { entry: { ifindex: 5, mac, table, dst, pinned }, deviceName: 'roam-vx' };
}

test('diff adds VXLAN entries before bridge entries and removes in reverse', (t) => {
  const plan = diffFdb(
    [change('master', 'b'), change('self', 'b', '172.31.0.2')],
    [change('master', 'old'), change('self', 'old', '172.31.0.3')],
  );
  t.deepEqual(plan.add.map((c) => c.entry.table), ['self', 'master']);
  t.deepEqual(plan.remove.map((c) => c.entry.table), ['master', 'self']);
});

test('diff of identical state is empty; an unpinned twin is rewritten', (t) => {
  const same = [change('self', 'b', '172.31.0.2'), change('master', 'b')];
  t.deepEqual(diffFdb(same, same), { add: [], remove: [] });
  const plan = diffFdb(same, [change('self', 'b', '172.31.0.2'), change('master', 'b', undefined, false)]);
  t.is(plan.add.length, 1);
  t.is(plan.remove.length, 0);
});

test('a moved MAC is re-pointed: new VTEP added, old one removed', (t) => {
  const plan = diffFdb([change('self', 'b', '172.31.0.3')], [change('self', 'b', '172.31.0.2')]);
  t.deepEqual(plan.add.map((c) => c.entry.dst), ['172.31.0.3']);
  t.deepEqual(plan.remove.map((c) => c.entry.dst), ['172.31.0.2']);
});
