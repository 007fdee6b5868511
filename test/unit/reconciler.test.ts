import test from 'ava';
import { EventBus } from '../../src/events/bus.js';
import type { ManagedFdbEntry, OverlayDataplane, OverlayDevices } from '../../src/overlay/dataplane.js';
import { OverlayReconciler, type OverlayState } from '../../src/overlay/reconciler.js';
import { fdbKey } from '../../src/sys/netlink/fdb.js';

/** An in-memory dataplane with the kernel adapter's contract. */
class FakeDataplane implements OverlayDataplane {
  readonly fdb = new Map<string, ManagedFdbEntry>();
  readonly ports = new Map<string, { ifindex: number; name: string }>();
  failNext = 0;
  writes = 0;
  async ensureDevices(): Promise<OverlayDevices> {
    return { bridgeIndex: 1, vxlanIndex: 2, vxlanName: 'roam-vx' };
  }
  async listManagedFdb(): Promise<ManagedFdbEntry[]> {
    return [...this.fdb.values()];
  }
  async endpointPorts() {
    return new Map(this.ports);
  }
  async ensureFdb(c: ManagedFdbEntry): Promise<void> {
    this.writes++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('fdb.replace roam-vx: EINVAL');
    }
    // REPLACE semantics for unicast self entries: one VTEP per MAC.
    if (c.entry.table === 'self' && c.entry.mac !== '00:00:00:00:00:00') {
      for (const [k, v] of this.fdb) if (v.entry.table === 'self' && v.entry.mac === c.entry.mac) this.fdb.delete(k);
    }
    this.fdb.set(fdbKey(c.entry), c);
  }
  async deleteFdb(c: ManagedFdbEntry): Promise<void> {
    this.writes++;
    this.fdb.delete(fdbKey(c.entry));
  }
}

function setup(state: OverlayState) {
  const dp = new FakeDataplane();
  const events = new EventBus();
  const errors: string[] = [];
  events.on('overlay.error', (e) => errors.push(e.message));
  let current = state;
  const r = new OverlayReconciler(dp, () => current, events);
  return { dp, r, errors, set: (s: OverlayState) => (current = s) };
}

const peers = [{ node: 'n1', vtep: '172.31.0.1' }, { node: 'n2', vtep: '172.31.0.2' }, { node: 'n3', vtep: '172.31.0.3' }];

test('converges, and a second run writes nothing', async (t) => {
  const { dp, r } = setup({ self: 'n1', peers, endpoints: [{ name: 'b', mac: '02:72:00:00:00:02', node: 'n2', generation: 1 }] });
  const first = await r.start(1e9);
  r.stop();
  t.is(first.added, 4); // two flood entries, self + master for b
  const writes = dp.writes;
  const second = await r.reconcile();
  t.deepEqual(second, { added: 0, removed: 0, errors: [] });
  t.is(dp.writes, writes);
});

test('an endpoint that moves is re-pointed and the old entries go', async (t) => {
  const s = setup({ self: 'n1', peers, endpoints: [{ name: 'b', mac: '02:72:00:00:00:02', node: 'n2', generation: 1 }] });
  await s.r.start(1e9);
  s.r.stop();
  s.set({ self: 'n1', peers, endpoints: [{ name: 'b', mac: '02:72:00:00:00:02', node: 'n3', generation: 2 }] });
  await s.r.reconcile();
  const selfEntries = [...s.dp.fdb.values()].filter((c) => c.entry.mac === '02:72:00:00:00:02' && c.entry.table === 'self');
  t.deepEqual(selfEntries.map((c) => c.entry.dst), ['172.31.0.3']);
});

test('a failed write is reported, the rest applied, and the next run repairs it', async (t) => {
  const s = setup({ self: 'n1', peers, endpoints: [{ name: 'b', mac: '02:72:00:00:00:02', node: 'n2', generation: 1 }] });
  s.dp.failNext = 1;
  const first = await s.r.start(1e9);
  s.r.stop();
  t.is(first.errors.length, 1);
  t.is(first.added, 3);
  t.regex(s.errors[0]!, /EINVAL/);
  const second = await s.r.reconcile();
  t.is(second.added, 1);
  t.deepEqual(second.errors, []);
});

test('overlapping triggers coalesce into runs that end converged', async (t) => {
  const s = setup({ self: 'n1', peers, endpoints: [] });
  await s.r.start(1e9);
  s.r.stop();
  s.set({ self: 'n1', peers, endpoints: [{ name: 'c', mac: '02:72:00:00:00:03', node: 'n3', generation: 1 }] });
  await Promise.all([s.r.reconcile(), s.r.reconcile(), s.r.reconcile()]);
  t.is([...s.dp.fdb.values()].filter((c) => c.entry.mac === '02:72:00:00:00:03').length, 2);
});
