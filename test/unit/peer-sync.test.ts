import test from 'ava';
import { LocationTable } from '../../src/cluster/locations.js';
import type { NodeAnnouncement } from '../../src/records/announcement.js';
import { PeerSync, type PeerTransport } from '../../src/cluster/peer-sync.js';
import { EventBus } from '../../src/events/bus.js';

/** Agents wired together in memory: each transport call lands in the other side's receive(). */
function cluster(names: string[]) {
  const syncs = new Map<string, PeerSync>();
  const tables = new Map<string, LocationTable>();
  const down = new Set<string>();
  for (const [i, name] of names.entries()) {
    const table = new LocationTable(name, `172.31.0.${i + 1}`);
    const transport: PeerTransport = {
      async announce(address: string, mine: NodeAnnouncement) {
        const target = [...tables.entries()].find(([, t]) => t.announcement().address === address)?.[0];
        if (!target || down.has(target)) throw new Error(`connect ECONNREFUSED ${address}`);
        return syncs.get(target)!.receive(mine);
      },
    };
    tables.set(name, table);
    syncs.set(name, new PeerSync(table, transport, 60000, new EventBus()));
  }
  return { syncs, tables, down };
}

test('a late joiner that knows one node learns them all, and they learn it', async (t) => {
  const { syncs, tables } = cluster(['n1', 'n2', 'n3', 'n4']);
  tables.get('n1')!.addPeer('n2', '172.31.0.2');
  tables.get('n1')!.addPeer('n3', '172.31.0.3');
  tables.get('n2')!.addPeer('n1', '172.31.0.1');
  tables.get('n2')!.addPeer('n3', '172.31.0.3');
  tables.get('n3')!.addPeer('n1', '172.31.0.1');
  tables.get('n3')!.addPeer('n2', '172.31.0.2');
  tables.get('n4')!.addPeer('n1', '172.31.0.1'); // n4 knows only n1
  tables.get('n2')!.setLocal([{ name: 'web', ip: '10.244.2.1', mac: '02:72:0a:f4:02:01', node: 'n2', generation: 1, pid: 7, netns: undefined, state: 'running' }]);
  for (let round = 0; round < 3; round++) for (const s of syncs.values()) await s.pushAll();
  for (const [name, table] of tables) {
    t.deepEqual(table.nodeViews().map((n) => n.node), ['n1', 'n2', 'n3', 'n4'], `${name} knows every node`);
    t.deepEqual(table.endpoints().map((e) => `${e.name}@${e.node}`), ['web@n2'], `${name} knows where web lives`);
  }
});

test('an unreachable peer is marked so and keeps its endpoints', async (t) => {
  const { syncs, tables, down } = cluster(['n1', 'n2']);
  tables.get('n1')!.addPeer('n2', '172.31.0.2');
  tables.get('n2')!.setLocal([{ name: 'db', ip: '10.244.2.1', mac: '02:72:0a:f4:02:01', node: 'n2', generation: 1, pid: 7, netns: undefined, state: 'running' }]);
  await syncs.get('n1')!.pushAll();
  t.true(tables.get('n1')!.node('n2')!.reachable);
  down.add('n2');
  await syncs.get('n1')!.pushAll();
  t.false(tables.get('n1')!.node('n2')!.reachable);
  t.deepEqual(tables.get('n1')!.endpoints().map((e) => e.name), ['db']);
});
