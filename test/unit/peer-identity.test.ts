/**
 * A peer speaks only for the node its certificate names (issue #19, finding
 * 2). The rules are pure functions (peer/identity.ts), tried here against
 * each attack; then the same attacks over real mutual TLS on 127.0.0.1, with
 * certificates from a CA made for the test (sys/certs.ts, openssl), against
 * the real identity hook and routes: fastify's inject cannot carry a client
 * certificate. What peers' answers and sequence numbers can no longer do to
 * the location table (cluster/peer-sync.ts, cluster/locations.ts) is at the
 * end. test/e2e/peer-tls.test.ts makes the same attacks on a testbed.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createApp } from '../../src/api/app.js';
import { LocationTable, MAX_SEQ_AHEAD_MS } from '../../src/cluster/locations.js';
import { NameClaims } from '../../src/cluster/name-claims.js';
import { answerRefusal, PeerSync, type PeerTransport } from '../../src/cluster/peer-sync.js';
import type { EndpointManager } from '../../src/endpoint/manager.js';
import { httpStatusOf } from '../../src/errors/codes.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { EventBus, type AgentEvents } from '../../src/events/bus.js';
import { callJson, type TlsMaterial } from '../../src/http/client.js';
import type { MigrationSource } from '../../src/migration/source.js';
import type { MigrationTarget } from '../../src/migration/target.js';
import { macForIp } from '../../src/net/mac.js';
import {
  announcementRefusal, identityOfCertificate, migrationStepRefusal, registerPeerIdentity, subjectAltNames, type PeerIdentity,
} from '../../src/peer/identity.js';
import { registerMigrationPeerRoutes } from '../../src/peer/migration-routes.js';
import { registerPeerRoutes } from '../../src/peer/routes.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { ensureCa, ensureNodeCert } from '../../src/sys/certs.js';

const node3: PeerIdentity = { node: 'node3', addresses: ['172.31.0.3'] };

function ep(name: string, node: string, generation = 1): EndpointRecord {
  return { name, ip: '10.244.1.5', mac: macForIp('10.244.1.5'), node, generation, pid: 7, netns: undefined, state: 'running' };
}

// ---- the identity a certificate gives ----

test('a node certificate gives its node (CN) and its IP addresses, each in one spelling', (t) => {
  const id = identityOfCertificate({ subject: { CN: 'node3', O: 'roam' }, subjectaltname: 'IP Address:172.31.0.3, DNS:node3.example, IP Address:FD00:0:0:0:0:0:0:3' });
  t.deepEqual(id, { node: 'node3', addresses: ['172.31.0.3', 'fd00::3'] });
});

test('a certificate that names no node, several, or something that is no node name gives no identity', (t) => {
  for (const cert of [undefined, {}, { subject: {} }, { subject: { CN: '' } }, { subject: { CN: ['node1', 'node3'] } }, { subject: { CN: 'Node 3' } }]) {
    const r = identityOfCertificate(cert);
    t.true('reason' in r && r.reason === 'no-identity', JSON.stringify(cert));
  }
});

test('a quoted name in the subjectAltNames cannot smuggle in an address', (t) => {
  const alt = 'DNS:"evil, IP Address:172.31.0.1", IP Address:172.31.0.3';
  t.deepEqual(subjectAltNames(alt), [{ type: 'DNS', value: 'evil, IP Address:172.31.0.1' }, { type: 'IP Address', value: '172.31.0.3' }]);
  t.deepEqual(identityOfCertificate({ subject: { CN: 'node3' }, subjectaltname: alt }), node3);
});

// ---- announcements ----

test("node3's certificate cannot announce node1, at node1's address or at its own", (t) => {
  for (const address of ['172.31.0.1', '172.31.0.3']) {
    const r = announcementRefusal(node3, { node: 'node1', address });
    t.is(r?.reason, 'not-its-node');
    t.is(r?.message, 'node3 announced itself as node1: its certificate speaks for node3 only');
  }
});

test("node3's certificate cannot announce node3 at an address it does not name", (t) => {
  const r = announcementRefusal(node3, { node: 'node3', address: '172.31.0.1' });
  t.is(r?.reason, 'not-its-address');
  t.is(r?.message, 'node3 announced itself at 172.31.0.1, but its certificate names 172.31.0.3');
  t.is(announcementRefusal({ node: 'node3', addresses: [] }, { node: 'node3', address: '172.31.0.3' })?.reason, 'not-its-address', 'a certificate without an IP address names none');
});

test('a node announces itself at its own address (any spelling of it); without TLS nothing can be checked', (t) => {
  t.is(announcementRefusal(node3, { node: 'node3', address: '172.31.0.3' }), undefined);
  t.is(announcementRefusal({ node: 'node3', addresses: ['fd00::3'] }, { node: 'node3', address: 'FD00:0::3' }), undefined);
  t.is(announcementRefusal(undefined, { node: 'node1', address: '172.31.0.3' }), undefined, 'plaintext: the config chose it');
});

// ---- migration steps ----

test("node3 cannot drive a step of a migration node1 prepared; the refusal names both", (t) => {
  const r = migrationStepRefusal(node3, 'm-web-00000a', 'abort', { from: 'node1' });
  t.is(r?.reason, 'not-its-migration');
  t.is(r?.message, 'migration m-web-00000a was prepared here by node1: node3 may not abort it');
  t.is(migrationStepRefusal(node3, 'm-web-00000a', 'unlock', { from: undefined })?.reason, 'not-its-migration', 'prepared without an identity: no certificate drives it');
});

test('the node that prepared a migration drives it; an unknown migration and a plaintext peer are not refused here', (t) => {
  t.is(migrationStepRefusal({ node: 'node1', addresses: ['172.31.0.1'] }, 'm-web-00000a', 'switch', { from: 'node1' }), undefined);
  t.is(migrationStepRefusal(node3, 'm-web-00000b', 'abort', undefined), undefined, 'nothing of it here: the step itself says so');
  t.is(migrationStepRefusal(undefined, 'm-web-00000a', 'abort', { from: 'node1' }), undefined, 'plaintext: the config chose it');
});

test('a peer app without the identity hook answers nothing rather than treat its callers as plaintext', async (t) => {
  const table = new LocationTable('node2', '172.31.0.2');
  const app = createApp();
  registerPeerRoutes(app, { manager: {} as EndpointManager, sync: new PeerSync(table, { announce: async () => Promise.reject(new Error('no')) }, 60000, new EventBus()), names: new NameClaims(() => undefined) });
  const res = await app.inject({ method: 'POST', url: '/peer/v1/announce', payload: { node: 'node1', address: '172.31.0.1', seq: 1, endpoints: [] } });
  t.is(res.statusCode, 500);
  t.regex(res.body, /no identity hook/);
  t.is(table.node('node1'), undefined);
});

// ---- the same attacks over mutual TLS ----

interface Tls {
  dir: string;
  app: FastifyInstance;
  port: number;
  table: LocationTable;
  events: EventBus;
  refused: AgentEvents['peer.refused'][];
  warnings: string[];
  steps: string[];
  prepared: Map<string, string | undefined>;
  names: NameClaims;
  as: Record<'node1' | 'node3' | 'nameless', TlsMaterial>;
}

let tls: Tls;

test.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roam-peer-identity-'));
  ensureCa(dir, 'roam test CA');
  const material = (c: { ca: string; cert: string; key: string }): TlsMaterial => ({ ca: readFileSync(c.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) });
  // The server (node2) listens on 127.0.0.1; its clients' addresses matter only to what they announce.
  const server = material(ensureNodeCert(dir, 'node2', '127.0.0.1'));
  const as = {
    node1: material(ensureNodeCert(dir, 'node1', '127.0.0.11')),
    node3: material(ensureNodeCert(dir, 'node3', '127.0.0.13')),
    nameless: material(ensureNodeCert(dir, 'Not-A-Node', '127.0.0.14')),
  };
  const events = new EventBus();
  const refused: AgentEvents['peer.refused'][] = [];
  const warnings: string[] = [];
  events.on('peer.refused', (e) => refused.push(e));
  events.on('log', (e) => warnings.push(e.message));
  const table = new LocationTable('node2', '127.0.0.1');
  table.addPeer('node1', '127.0.0.11');
  table.merge({ node: 'node1', address: '127.0.0.11', seq: Date.now(), endpoints: [ep('web', 'node1')] });
  // Peers are never dialled back in these tests.
  const sync = new PeerSync(table, { announce: async () => Promise.reject(new Error('not dialled here')) }, 60000, events);
  const steps: string[] = [];
  const prepared = new Map<string, string | undefined>([['m-web-00000a', 'node1']]);
  const target = {
    preparedBy: (id: string) => (prepared.has(id) ? { from: prepared.get(id) } : undefined),
    prepare: async (req: { id: string }, from: string | undefined) => {
      prepared.set(req.id, from);
      return {};
    },
    switchOver: async (id: string) => void steps.push(`switch ${id}`),
    unlock: async (id: string) => (steps.push(`unlock ${id}`), {}),
    keep: (id: string) => void steps.push(`keep ${id}`),
    abort: async (id: string) => void steps.push(`abort ${id}`),
    settled: (id: string) => void steps.push(`settled ${id}`),
    // What the steps would act on is not here: the fuzz below reaches these only for its own migrations.
    receiveImages: async (id: string) => notHere(`migration ${id}`),
    receiveTree: async (id: string) => notHere(`migration ${id}`),
    receiveHeld: (id: string) => notHere(`migration ${id}`),
    restore: async (id: string) => notHere(`migration ${id}`),
    pullOf: async (id: string) => notHere(`migration ${id}`),
    stallOf: async (id: string) => notHere(`migration ${id}`),
    hasImage: () => false,
    receiveImage: async (image: string) => notHere(`image ${image}`),
  } as unknown as MigrationTarget;
  // Forwarded endpoint requests are open to every node (THREAT-MODEL.md); none exists here.
  const manager = {
    create: async (b: { name: string }) => Promise.reject(new RoamError('CONFLICT', `endpoint ${b.name}: not made in this test`)),
    setPolicy: async (name: string) => notHere(`endpoint ${name}`),
    stop: async (name: string) => notHere(`endpoint ${name}`),
    logs: (name: string) => notHere(`endpoint ${name}`),
  } as unknown as EndpointManager;
  const source = { status: () => undefined, start: () => notHere('endpoint') } as unknown as MigrationSource;
  const app = createApp({ ...server, requestCert: true, rejectUnauthorized: true });
  registerPeerIdentity(app, true, events);
  const names = new NameClaims((name) => table.endpoints().find((e) => e.name === name)?.node);
  registerPeerRoutes(app, { manager, sync, names, events });
  registerMigrationPeerRoutes(app, { node: 'node2', source, target, events, uploads: { idleMs: 5000, fileBytes: 64 * 1024 * 1024 } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  tls = { dir, app, port: (app.server.address() as AddressInfo).port, table, events, refused, warnings, steps, prepared, names, as };
});

test.after.always(async () => {
  await tls?.app.close();
  if (tls) rmSync(tls.dir, { recursive: true, force: true });
});

function notHere(what: string): never {
  throw new RoamError('NOT_FOUND', `${what} is not here`);
}

/** A request to node2 with `who`'s certificate; a refusal comes back as the RoamError it described. */
function call<T>(who: keyof Tls['as'], method: string, path: string, body?: unknown): Promise<T> {
  return callJson<T>({ host: '127.0.0.1', port: tls.port, tls: tls.as[who] }, method, path, body, { timeoutMs: 5000 });
}

async function forbidden(t: ExecutionContext, p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(err instanceof RoamError && err.code === 'FORBIDDEN', String(err));
  t.regex(err?.message ?? '', message);
}

test.serial("over TLS, node3's certificate announcing node1 (seq 2^53-1, no endpoints) is refused: 403, said, counted, and node1 stays as it was", async (t) => {
  const before = tls.refused.length;
  await forbidden(t, call('node3', 'POST', '/peer/v1/announce', { node: 'node1', address: '127.0.0.11', seq: Number.MAX_SAFE_INTEGER, endpoints: [] }), /^node3 announced itself as node1/);
  await forbidden(t, call('node3', 'POST', '/peer/v1/announce', { node: 'node1', address: '127.0.0.13', seq: Date.now() + 1000, endpoints: [] }), /^node3 announced itself as node1/);
  const node1 = tls.table.node('node1')!;
  t.is(node1.address, '127.0.0.11');
  t.deepEqual(node1.endpoints.map((e) => e.name), ['web']);
  t.true(node1.seq < Number.MAX_SAFE_INTEGER);
  t.deepEqual(tls.refused.slice(before).map((e) => `${e.peer} ${e.reason}`), ['node3 not-its-node', 'node3 not-its-node']);
  t.true(tls.warnings.some((w) => /^peer request POST \/peer\/v1\/announce from node3 \(127\.0\.0\.1\) refused: node3 announced itself as node1/.test(w)), tls.warnings.join('\n'));
});

test.serial("over TLS, node3's certificate announcing node3 at another address is refused; at its own it is taken", async (t) => {
  await forbidden(t, call('node3', 'POST', '/peer/v1/announce', { node: 'node3', address: '127.0.0.11', seq: Date.now(), endpoints: [] }), /^node3 announced itself at 127\.0\.0\.11, but its certificate names 127\.0\.0\.13$/);
  t.is(tls.table.node('node3'), undefined);
  const answer = await call<{ self: { node: string } }>('node3', 'POST', '/peer/v1/announce', { node: 'node3', address: '127.0.0.13', seq: Date.now(), endpoints: [] });
  t.is(answer.self.node, 'node2');
  t.is(tls.table.node('node3')?.address, '127.0.0.13');
});

test.serial("over TLS, node3's certificate cannot drive node1's migration, before its body is read; node1's can", async (t) => {
  const id = 'm-web-00000a';
  await forbidden(t, call('node3', 'POST', `/peer/v1/migrations/${id}/abort`, {}), /^migration m-web-00000a was prepared here by node1: node3 may not abort it$/);
  await forbidden(t, call('node3', 'POST', `/peer/v1/migrations/${id}/switch`, {}), /node1: node3 may not switch it/);
  await forbidden(t, call('node3', 'POST', `/peer/v1/migrations/${id}/settled`, {}), /node1: node3 may not settle it/);
  // Not even a valid body is needed to be refused: the check comes before it is read.
  await forbidden(t, call('node3', 'POST', `/peer/v1/migrations/${id}/unlock`, { not: 'a valid unlock' }), /node1: node3 may not unlock it/);
  t.deepEqual(tls.steps, [], 'no step ran');
  t.true(tls.refused.filter((e) => e.reason === 'not-its-migration').length >= 4);
  await call('node1', 'POST', `/peer/v1/migrations/${id}/keep`, {});
  await call('node1', 'POST', `/peer/v1/migrations/${id}/abort`, {});
  t.deepEqual(tls.steps, [`keep ${id}`, `abort ${id}`]);
});

test.serial("over TLS, node3's certificate claims endpoint names for node3 only: not for node1, nor releases node1's", async (t) => {
  await forbidden(t, call('node3', 'POST', '/peer/v1/names/claim', { name: 'api', node: 'node1' }), /^node3 claimed endpoint name api for node1: its certificate speaks for node3 only$/);
  t.deepEqual(await call('node1', 'POST', '/peer/v1/names/claim', { name: 'api', node: 'node1' }), { granted: true });
  await forbidden(t, call('node3', 'POST', '/peer/v1/names/release', { name: 'api', node: 'node1' }), /node3 claimed endpoint name api for node1/);
  t.deepEqual(await call('node3', 'POST', '/peer/v1/names/claim', { name: 'api', node: 'node3' }), { granted: false, holder: 'node1', exists: false }, 'node1 still holds it');
  t.deepEqual(await call('node3', 'POST', '/peer/v1/names/claim', { name: 'web', node: 'node3' }), { granted: false, holder: 'node1', exists: true }, 'web runs on node1');
  await call('node1', 'POST', '/peer/v1/names/release', { name: 'api', node: 'node1' });
  t.deepEqual(await call('node3', 'POST', '/peer/v1/names/claim', { name: 'api', node: 'node3' }), { granted: true });
});

test.serial('over TLS, a prepare records the node that asked, and only it drives that migration', async (t) => {
  const id = 'm-web-00000b';
  await call('node3', 'POST', '/peer/v1/migrations/prepare', {
    id, mode: 'stop-copy', handover: 'off', name: 'web', ip: '10.244.1.5', prefixLength: 16, mac: macForIp('10.244.1.5'), generation: 2, command: ['/bin/true'], createdAt: new Date().toISOString(),
  });
  t.is(tls.prepared.get(id), 'node3');
  await forbidden(t, call('node1', 'POST', `/peer/v1/migrations/${id}/abort`, {}), /prepared here by node3: node1 may not abort it/);
  await call('node3', 'POST', `/peer/v1/migrations/${id}/abort`, {});
  t.true(tls.steps.includes(`abort ${id}`));
});

test.serial('over TLS, a certificate the CA signed that names no node gets nothing', async (t) => {
  const before = tls.refused.length;
  await forbidden(t, call('nameless', 'POST', '/peer/v1/announce', { node: 'node3', address: '127.0.0.14', seq: Date.now(), endpoints: [] }), /"Not-A-Node" is not a node name/);
  t.deepEqual(tls.refused.slice(before).map((e) => e.reason), ['no-identity']);
});

// ---- what an answer to our announcement, and a sequence, can no longer do ----

/** node "n1" knowing n2 (with an endpoint) and n3; `answers` says what each address answers to n1's announcement. */
function caller(answers: Record<string, (mine: unknown) => Awaited<ReturnType<PeerTransport['announce']>>>) {
  const table = new LocationTable('n1', '172.31.0.1');
  table.addPeer('n2', '172.31.0.2');
  table.addPeer('n3', '172.31.0.3');
  table.merge({ node: 'n2', address: '172.31.0.2', seq: Date.now(), endpoints: [ep('web', 'n2')] });
  const events = new EventBus();
  const refused: AgentEvents['peer.refused'][] = [];
  const warnings: string[] = [];
  events.on('peer.refused', (e) => refused.push(e));
  events.on('log', (e) => warnings.push(e.message));
  const transport: PeerTransport = { announce: async (address, mine) => answers[address]!(mine) };
  return { table, sync: new PeerSync(table, transport, 60000, events), refused, warnings };
}

test('an answer speaks only for the node called, at the address called', (t) => {
  const a = { node: 'n2', address: '172.31.0.2', seq: 1, endpoints: [] };
  t.is(answerRefusal('n2', '172.31.0.2', a), undefined);
  t.is(answerRefusal('n3', '172.31.0.3', a), 'answered as n2, but 172.31.0.3 was called as n3');
  t.is(answerRefusal('n2', '172.31.0.9', a), 'answered as n2 at 172.31.0.2, but was called at 172.31.0.9: an answer does not move a node');
});

test("n3 answering as n2, or naming n2's address for a new node, changes nothing of n2", async (t) => {
  const c = caller({
    '172.31.0.3': () => ({
      self: { node: 'n2', address: '172.31.0.3', seq: Date.now() + 1000, endpoints: [] },
      peers: [{ node: 'n2', address: '172.31.0.3' }, { node: 'ghost', address: '172.31.0.2' }],
    }),
  });
  await c.sync.exchangeWith('n3');
  t.is(c.table.node('n2')!.address, '172.31.0.2');
  t.deepEqual(c.table.endpoints().map((e) => `${e.name}@${e.node}`), ['web@n2']);
  t.is(c.table.node('ghost'), undefined, 'a name at a known node\'s address is not taken');
  t.deepEqual(c.refused.map((e) => `${e.peer} ${e.reason}`), ['n3 answer-mismatch']);
  t.true(c.warnings.some((w) => /answer of peer n3 \(172\.31\.0\.3\) refused: answered as n2/.test(w)));
  t.true(c.warnings.some((w) => /peer n3 named a node ghost at 172\.31\.0\.2, which is n2's address: not taken/.test(w)));
  await c.sync.exchangeWith('n3');
  t.is(c.warnings.filter((w) => /answer of peer n3/.test(w)).length, 1, 'said once, counted every time');
  t.is(c.refused.length, 2);
});

test('an answer cannot move the node that gives it; a list still introduces a node nobody has', async (t) => {
  const c = caller({
    '172.31.0.2': () => ({ self: { node: 'n2', address: '172.31.0.9', seq: Date.now() + 1000, endpoints: [] }, peers: [{ node: 'n4', address: '172.31.0.4' }] }),
    '172.31.0.4': () => Promise.reject(new Error('unreachable')) as never,
  });
  await c.sync.exchangeWith('n2');
  t.is(c.table.node('n2')!.address, '172.31.0.2');
  t.deepEqual(c.table.node('n2')!.endpoints.map((e) => e.name), ['web']);
  t.is(c.table.node('n4')?.address, '172.31.0.4');
  t.is(c.table.node('n4')?.seq, 0, 'known by name only until it speaks for itself');
});

test('a sequence from the far future is refused whoever sends it; one within the bound is taken', (t) => {
  let clock = 1_000_000;
  const table = new LocationTable('n1', '172.31.0.1', () => clock);
  table.addPeer('n2', '172.31.0.2');
  t.false(table.merge({ node: 'n2', address: '172.31.0.2', seq: Number.MAX_SAFE_INTEGER, endpoints: [] }));
  t.is(table.node('n2')!.seq, 0);
  t.regex(table.seqRefusal({ node: 'n2', address: '172.31.0.2', seq: Number.MAX_SAFE_INTEGER, endpoints: [] }) ?? '', /^n2's announcement has seq 9007199254740991, \d+ s ahead of this node's clock \(at most 3600 s\): check the clocks$/);
  t.true(table.merge({ node: 'n2', address: '172.31.0.2', seq: clock + MAX_SEQ_AHEAD_MS, endpoints: [ep('web', 'n2')] }), 'a skewed clock within the bound');
  clock += 1000;
  t.false(table.merge({ node: 'n2', address: '172.31.0.2', seq: clock, endpoints: [] }), 'outranked until the clock catches up, at most the bound');
});

test('an announcement received with a sequence from the far future is answered INPUT_INVALID, said and counted', (t) => {
  const events = new EventBus();
  const refused: AgentEvents['peer.refused'][] = [];
  events.on('peer.refused', (e) => refused.push(e));
  const table = new LocationTable('n1', '172.31.0.1');
  table.addPeer('n2', '172.31.0.2');
  const sync = new PeerSync(table, { announce: async () => Promise.reject(new Error('no')) }, 60000, events);
  const err = t.throws(() => sync.receive({ node: 'n2', address: '172.31.0.2', seq: Number.MAX_SAFE_INTEGER, endpoints: [] }));
  t.true(err instanceof RoamError && err.code === 'INPUT_INVALID');
  t.deepEqual(refused, [{ peer: 'n2', from: '172.31.0.2', reason: 'seq-ahead' }]);
  t.is(table.node('n2')!.seq, 0);
});

// ---- random certificates of the cluster's CA, random requests ----

test.serial('fuzz: random certificates the CA signed (wrong nodes, odd names, other addresses) and random bodies on every peer route never crash node2, never get a 5xx, and never change what belongs to node1', async (t) => {
  // Certificates a compromised or mistaken node could hold: every one signed by the cluster CA, none node1's at its address.
  const names = ['node3', 'node9', 'node1x', 'edge-7', 'NODE1', 'node1.evil', 'a'.repeat(64), '-node', ''];
  const holders = names.map((cn, i) => {
    const dir = join(tls.dir, `fuzz-${i}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'ca.pem'), readFileSync(join(tls.dir, 'ca.pem')));
    writeFileSync(join(dir, 'ca.key'), readFileSync(join(tls.dir, 'ca.key')), { mode: 0o600 });
    const made = ensureNodeCert(dir, cn || 'placeholder', i % 2 ? '127.0.0.11' : `127.0.0.${50 + i}`);
    return { ca: readFileSync(made.ca), cert: readFileSync(made.cert), key: readFileSync(made.key) };
  });
  // node1 at another address than its own is among them (i odd names node1's address).
  const stepsBefore = [...tls.steps];
  const node1Before = JSON.stringify(tls.table.node('node1'));
  const id = 'm-web-00000a';
  const routes: [method: string, path: string, body: fc.Arbitrary<unknown>][] = [
    ['POST', '/peer/v1/announce', fc.record({ node: fc.constantFrom('node1', 'node3', 'node9'), address: fc.constantFrom('127.0.0.11', '127.0.0.13', '127.0.0.51'), seq: fc.integer({ min: 0 }), endpoints: fc.constant([]) })],
    ['POST', '/peer/v1/names/claim', fc.record({ name: fc.constantFrom('api', 'web', 'db'), node: fc.constantFrom('node1', 'node3', 'node9') })],
    ['POST', '/peer/v1/names/release', fc.record({ name: fc.constantFrom('api', 'web', 'db'), node: fc.constantFrom('node1', 'node3') })],
    ['POST', '/peer/v1/endpoints', fc.record({ name: fc.constantFrom('web', 'x'), command: fc.array(fc.string(), { maxLength: 3 }) })],
    ['POST', '/peer/v1/migrations/prepare', fc.jsonValue()],
    ['POST', `/peer/v1/migrations/${id}/abort`, fc.jsonValue()],
    ['POST', `/peer/v1/migrations/${id}/switch`, fc.constant({})],
    ['POST', `/peer/v1/migrations/${id}/unlock`, fc.jsonValue()],
    ['POST', `/peer/v1/migrations/${id}/keep`, fc.constant({})],
    ['POST', `/peer/v1/migrations/${id}/settled`, fc.constant({})],
    ['POST', `/peer/v1/migrations/${id}/restore`, fc.jsonValue()],
    ['GET', `/peer/v1/migrations/${id}/stall`, fc.constant(undefined)],
    ['GET', `/peer/v1/migrations/${id}`, fc.constant(undefined)],
    ['PUT', `/peer/v1/migrations/${id}/images`, fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))],
    ['PUT', `/peer/v1/migrations/${id}/held`, fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))],
  ];
  const seen = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(fc.nat(holders.length - 1), fc.nat(routes.length - 1).chain((r) => fc.tuple(fc.constant(r), routes[r]![2])), async (h, [r, body]) => {
      const [method, path] = routes[r]!;
      let status = 200;
      try {
        await callJson({ host: '127.0.0.1', port: tls.port, tls: holders[h]! }, method, path, body, { timeoutMs: 5000 });
      } catch (err) {
        if (!(err instanceof RoamError)) throw err;
        status = httpStatusOf(err.code);
      }
      seen.set(status, (seen.get(status) ?? 0) + 1);
      return status < 500;
    }),
    { numRuns: 400, seed: 1907 },
  );
  t.log(`statuses: ${[...seen].sort().map(([s, n]) => `${s}×${n}`).join(', ')}`);
  t.true((seen.get(403) ?? 0) > 0 && (seen.get(200) ?? 0) > 0, 'both refusals and accepted requests were made');
  t.is(JSON.stringify(tls.table.node('node1')), node1Before, "node1's place in node2's view is as it was");
  t.deepEqual(tls.steps, stepsBefore, "no step of node1's migration ran");
  for (const name of ['api', 'db']) t.not(tls.names.answer(name, 'probe').holder, 'node1', `no claim of ${name} was taken for node1`);
  await t.notThrowsAsync(call('node1', 'POST', `/peer/v1/migrations/${id}/keep`, {}), 'node2 still serves node1');
});
