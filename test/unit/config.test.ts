import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { RoamError } from '../../src/errors/roam-error.js';

const good = {
  node: 'node1',
  underlay: { address: '172.31.0.1' },
  vni: 42,
  overlay: { subnet: '10.244.0.0/16', range: '10.244.1.0/24' },
  peers: [{ node: 'node2', address: '172.31.0.2' }],
  api: { socket: '/run/roam/agent.sock' },
  metrics: { listen: '172.31.0.1:9464' },
  stateDir: '/run/roam/state',
  tls: { ca: '/etc/roam/tls/ca.pem', cert: '/etc/roam/tls/node1.pem', key: '/etc/roam/tls/node1.key' },
};

function refused(t: import('ava').ExecutionContext, input: unknown, pattern: RegExp): void {
  const err = t.throws(() => parseConfig(input), { instanceOf: RoamError });
  t.is(err?.code, 'CONFIG_INVALID');
  t.regex(err?.message ?? '', pattern);
}

test('a valid config parses, gets defaults, and is frozen', (t) => {
  const c = parseConfig(good);
  t.is(c.vxlanPort, 4789);
  t.is(c.overlay.mtu, 1450);
  t.is(c.peerPort, 7946);
  t.deepEqual(c.devices, { bridge: 'roam0', vxlan: 'roam-vx' });
  t.true(Object.isFrozen(c) && Object.isFrozen(c.overlay));
});

test('wrong types, formats, ranges and unknown fields are refused naming the field', (t) => {
  refused(t, { ...good, vni: 'forty-two' }, /vni: expected integer/);
  refused(t, { ...good, vni: 0 }, /vni: .*greater or equal to 1/);
  refused(t, { ...good, underlay: { address: '300.1.1.1' } }, /underlay\.address: expected string to match 'ip' format, got "300\.1\.1\.1"/);
  refused(t, { ...good, overlay: { ...good.overlay, subnet: '10.244.0.0' } }, /overlay\.subnet: expected string to match 'prefix' format/);
  refused(t, { ...good, metrics: { listen: 'localhost' } }, /metrics\.listen/);
  refused(t, { ...good, colour: 'blue' }, /colour: unknown field/);
  refused(t, { ...good, node: 'Node_1' }, /node: expected string to match .*, got "Node_1" \(DNS-label/);
  const { stateDir: _dropped, ...missing } = good;
  refused(t, missing, /stateDir: required field is missing/);
});

test('relations the schema cannot express are checked too', (t) => {
  refused(t, { ...good, overlay: { ...good.overlay, range: '10.9.0.0/24' } }, /overlay\.range: 10\.9\.0\.0\/24 is not inside overlay\.subnet/);
  refused(t, { ...good, peers: [{ node: 'node1', address: '172.31.0.9' }] }, /peers\.0\.node: node1 appears twice/);
  refused(t, { ...good, peers: [{ node: 'node2', address: '172.31.0.1' }] }, /peers\.0\.address: 172\.31\.0\.1 is used twice/);
  refused(t, { ...good, peers: [{ node: 'node2', address: 'fd00::2' }] }, /not the same IP family/);
});

test('the control API leaves its unix socket only with a token, and leaves loopback only over TLS', (t) => {
  const api = (extra: object) => ({ ...good, api: { socket: '/run/roam/agent.sock', ...extra } });
  refused(t, api({ listen: '172.31.0.1:7947' }), /api\.listen: serving the control API on 172\.31\.0\.1:7947, not a loopback address, needs api\.tls and api\.tokenFile/);
  refused(t, api({ listen: '172.31.0.1:7947', tokenFile: '/etc/roam/token' }), /not a loopback address, needs api\.tls$/);
  refused(t, api({ listen: '172.31.0.1:7947', tls: { cert: '/c.pem', key: '/k.pem' } }), /needs api\.tokenFile$/);
  refused(t, api({ listen: '127.0.0.1:7947' }), /on loopback TCP needs api\.tokenFile/);
  refused(t, api({ listen: '[::1]:7947', tls: { cert: '/c.pem', key: '/k.pem' } }), /on loopback TCP needs api\.tokenFile/);
  refused(t, api({ tokenFile: '/etc/roam/token' }), /api\.tokenFile: only used with api\.listen/);
  refused(t, api({ listen: 'anywhere' }), /api\.listen: expected string to match 'hostport' format/);
  t.is(parseConfig(api({ listen: '127.0.0.1:7947', tokenFile: '/t' })).api.listen, '127.0.0.1:7947');
  t.is(parseConfig(api({ listen: '172.31.0.1:7947', tokenFile: '/t', tls: { cert: '/c.pem', key: '/k.pem' } })).api.tokenFile, '/t');
});

test('the peer protocol is never plain by default: no tls is refused, and plain TCP only when the config spells out what it costs', (t) => {
  const { tls: _tls, ...plain } = good;
  refused(t, plain, /^config: tls: required for the peer protocol, which starts processes as root/);
  refused(t, { ...plain, insecurePlaintextPeers: false }, /tls: required for the peer protocol/);
  refused(t, { ...good, insecurePlaintextPeers: true }, /insecurePlaintextPeers: true contradicts tls/);
  refused(t, { ...plain, insecurePlaintextPeers: 'yes' }, /insecurePlaintextPeers: expected boolean/);
  t.true(parseConfig({ ...plain, insecurePlaintextPeers: true }).insecurePlaintextPeers);
});

test('an unreadable or non-JSON file is refused naming the file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'roam-config-'));
  try {
    t.throws(() => loadConfigFile(join(dir, 'missing.json')), { message: /missing\.json: cannot read \(ENOENT\)/ });
    writeFileSync(join(dir, 'bad.json'), '{ "node": ');
    t.throws(() => loadConfigFile(join(dir, 'bad.json')), { message: /bad\.json: not valid JSON/ });
    writeFileSync(join(dir, 'ok.json'), JSON.stringify(good));
    t.is(loadConfigFile(join(dir, 'ok.json')).node, 'node1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a kubernetes agent claims its range from the cluster, takes no static peers, and its node and address can come from flags', (t) => {
  const { range: _claimed, ...overlay } = good.overlay;
  const kube = { ...good, overlay, peers: [], kubernetes: {} };
  const c = parseConfig(kube);
  t.is(c.overlay.range, undefined);
  t.deepEqual(c.kubernetes, { rangePrefixLength: 24, resyncMs: 30000, runtimeRoot: '/run/containerd/runc/k8s.io' });
  refused(t, { ...good, overlay }, /overlay\.range: required \(only a kubernetes agent claims its range from the cluster\)/);
  refused(t, { ...kube, peers: good.peers }, /peers: with kubernetes, peers come from the cluster's Node objects/);
  refused(t, { ...kube, kubernetes: { rangePrefixLength: 12 } }, /kubernetes\.rangePrefixLength: \/12 is wider than overlay\.subnet 10\.244\.0\.0\/16/);
  refused(t, { ...kube, kubernetes: { rangePrefixLength: 31 } }, /kubernetes\.rangePrefixLength/);

  const dir = mkdtempSync(join(tmpdir(), 'roam-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'agent.json');
  writeFileSync(file, JSON.stringify({ ...kube, node: 'placeholder', underlay: { address: '0.0.0.0' } }));
  const fromFlags = loadConfigFile(file, { node: 'edge-7', underlayAddress: '172.31.0.7' });
  t.is(fromFlags.node, 'edge-7');
  t.is(fromFlags.underlay.address, '172.31.0.7');
  const err = t.throws(() => loadConfigFile(file, { node: 'Edge_7' }), { instanceOf: RoamError });
  t.regex(err?.message ?? '', /node: expected string to match/);
});
