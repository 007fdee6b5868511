/**
 * The overlay dataplane against the real kernel, in a fresh network
 * namespace per test: devices as specified, FDB converged, restart-safe.
 */
import test from 'ava';
import { EventBus } from '../../src/events/bus.js';
import { SysError } from '../../src/errors/roam-error.js';
import { KernelDataplane } from '../../src/overlay/kernel-dataplane.js';
import { OverlayReconciler, type OverlayState } from '../../src/overlay/reconciler.js';
import { ensureAddress } from '../../src/sys/netlink/addresses.js';
import { addBridge, addVxlan, requireLink, setLinkUp } from '../../src/sys/netlink/links.js';
import { RtnlSession } from '../../src/sys/netlink/session.js';
import { freshDir, freshNetns, inNs } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';

test.before(() => requireRoot());

async function node(t: import('ava').ExecutionContext) {
  const dir = freshDir(t, 'dp');
  const ns = freshNetns(t, dir, 'node');
  const s = RtnlSession.open(ns);
  t.teardown(() => s.close());
  await addBridge(s, 'ul0', 1500);
  const ul = await requireLink(s, 'ul0');
  await ensureAddress(s, ul, { address: '172.31.0.1', prefixLength: 24 });
  await setLinkUp(s, ul);
  const logs: string[] = [];
  const dp = new KernelDataplane(s, { bridge: 'roam0', vxlan: 'roam-vx', vni: 42, vxlanPort: 4789, underlayAddress: '172.31.0.1', underlayInterface: undefined, mtu: 1450, log: (m) => logs.push(m) });
  return { ns, s, dp, logs };
}

const state: OverlayState = {
  self: 'n1',
  peers: [{ node: 'n1', vtep: '172.31.0.1' }, { node: 'n2', vtep: '172.31.0.2' }, { node: 'n3', vtep: '172.31.0.3' }],
  endpoints: [
    { name: 'b', mac: '02:72:0a:f4:02:01', node: 'n2', generation: 1 },
    { name: 'c', mac: '02:72:0a:f4:03:01', node: 'n3', generation: 1 },
  ],
};

test('devices: VXLAN without learning, enslaved with port learning off, all up; ensure is idempotent', async (t) => {
  const { ns, dp } = await node(t);
  const first = await dp.ensureDevices();
  const second = await dp.ensureDevices();
  t.deepEqual(second, first);
  const details = inNs(ns, ['ip', '-d', 'link', 'show', 'roam-vx']);
  t.regex(details, /vxlan id 42 local 172\.31\.0\.1 dev ul0/);
  t.regex(details, /nolearning/);
  t.regex(details, /master roam0/);
  t.regex(inNs(ns, ['bridge', '-d', 'link', 'show', 'dev', 'roam-vx']), /learning off/);
  t.regex(inNs(ns, ['ip', 'link', 'show', 'roam0']), /state UP|,UP/);
});

test('a VXLAN device with the wrong VNI is recreated, and the reason logged', async (t) => {
  const { ns, s, dp, logs } = await node(t);
  const ul = await requireLink(s, 'ul0');
  await addVxlan(s, { name: 'roam-vx', vni: 7, local: '172.31.0.1', port: 4789, underlayIndex: ul.index, mtu: 1450 });
  await dp.ensureDevices();
  t.regex(inNs(ns, ['ip', '-d', 'link', 'show', 'roam-vx']), /vxlan id 42 /);
  t.deepEqual(logs, ['recreating roam-vx: vni 7 != 42']);
});

test('reconcile programs flood and endpoint entries; a restarted reconciler writes nothing', async (t) => {
  const { ns, dp } = await node(t);
  const r = new OverlayReconciler(dp, () => state, new EventBus());
  const first = await r.start(1e9);
  r.stop();
  t.deepEqual(first, { added: 6, removed: 0, errors: [] });
  const fdb = inNs(ns, ['bridge', 'fdb', 'show', 'dev', 'roam-vx']);
  t.regex(fdb, /00:00:00:00:00:00 dst 172\.31\.0\.2 self permanent/);
  t.regex(fdb, /00:00:00:00:00:00 dst 172\.31\.0\.3 self permanent/);
  t.regex(fdb, /02:72:0a:f4:02:01 dst 172\.31\.0\.2 self permanent/);
  t.regex(fdb, /02:72:0a:f4:02:01 master roam0 static/, 'bridge entries are static, never "permanent" (local)');
  t.regex(fdb, /02:72:0a:f4:03:01 master roam0 static/);
  const again = new OverlayReconciler(dp, () => state, new EventBus());
  t.deepEqual(await again.start(1e9), { added: 0, removed: 0, errors: [] });
  again.stop();
});

test('stale entries the agent owns are removed; foreign entries are left alone', async (t) => {
  const { ns, dp } = await node(t);
  const r = new OverlayReconciler(dp, () => state, new EventBus());
  await r.start(1e9);
  r.stop();
  inNs(ns, ['bridge', 'fdb', 'add', '02:72:0a:f4:09:09', 'dev', 'roam-vx', 'dst', '172.31.0.9', 'self', 'permanent']);
  inNs(ns, ['bridge', 'fdb', 'add', '0a:00:00:00:00:01', 'dev', 'roam-vx', 'dst', '172.31.0.9', 'self', 'permanent']);
  const result = await r.reconcile();
  t.is(result.removed, 1);
  const fdb = inNs(ns, ['bridge', 'fdb', 'show', 'dev', 'roam-vx']);
  t.notRegex(fdb, /02:72:0a:f4:09:09/);
  t.regex(fdb, /0a:00:00:00:00:01/);
});

test('kernel refusals carry errno, operation and target', async (t) => {
  const { s } = await node(t);
  const err = await t.throwsAsync(addBridge(s, 'ul0', 1500), { instanceOf: SysError });
  t.is(err?.errno, 17);
  t.is(err?.errnoName, 'EEXIST');
  t.is(err?.op, 'link.add');
  t.regex(err?.message ?? '', /^link\.add bridge ul0 \(netns .*node\): EEXIST$/);
});
