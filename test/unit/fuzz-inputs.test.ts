/**
 * Every input boundary, fed malformed and random input (fast-check): the
 * control API, the peer protocol (JSON routes, the framed image upload, the
 * held-packet upload), and the agent's config. Each must answer with a clear
 * refusal (a 4xx with {error: {code, message}}, or CONFIG_INVALID naming the
 * field) and never crash, hang or answer 5xx. The routes run on fastify's
 * inject with fakes behind them: what is fuzzed here is the boundary itself.
 */
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createApp } from '../../src/api/app.js';
import { registerControlRoutes } from '../../src/api/control-routes.js';
import { registerMigrationControlRoutes } from '../../src/api/migration-routes.js';
import { registerMigrationPeerRoutes } from '../../src/peer/migration-routes.js';
import type { PeerClient } from '../../src/peer/client.js';
import { registerPeerRoutes } from '../../src/peer/routes.js';
import { registerPeerIdentity } from '../../src/peer/identity.js';
import { EndpointRouter, type LocalEndpoints, type RemoteEndpoints } from '../../src/cluster/endpoint-router.js';
import { LocationTable } from '../../src/cluster/locations.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { PeerSync } from '../../src/cluster/peer-sync.js';
import { NameClaims } from '../../src/cluster/name-claims.js';
import { parseConfig } from '../../src/config/load.js';
import type { EndpointManager } from '../../src/endpoint/manager.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { EventBus } from '../../src/events/bus.js';
import type { MigrationSource } from '../../src/migration/source.js';
import type { MigrationTarget } from '../../src/migration/target.js';

const RUNS = 300;

function record(name: string): EndpointRecord {
  return { name, ip: '10.244.1.1', mac: '02:72:0a:f4:01:01', node: 'node1', generation: 1, pid: 42, netns: '/x', state: 'running' };
}

/** The agent's two HTTP faces, with fakes behind them that answer like the real ones do. */
/** A migration id the fake target has never heard of. */
const GONE = 'm-gone-00dead';

function apps(imagesRoot: string): { control: FastifyInstance; peer: FastifyInstance } {
  const table = new LocationTable('node1', '172.31.0.1');
  table.addPeer('node2', '172.31.0.2');
  const notFound = (what: string) => {
    throw new RoamError('NOT_FOUND', `${what} is not known here`);
  };
  const local: LocalEndpoints = {
    has: () => false,
    create: async (req) => record(req.name),
    stop: async (name) => notFound(`endpoint ${name}`),
    logs: (name) => notFound(`endpoint ${name}`),
    setPolicy: async (name) => notFound(`endpoint ${name}`),
  };
  const remote: RemoteEndpoints = {
    createEndpoint: async (_a, body) => record(body.name),
    stopEndpoint: async () => undefined,
    logs: async () => '',
    setPolicy: async () => undefined,
  };
  const source = {
    status: () => undefined,
    start: (req: { name: string }) => {
      if (req.name !== 'web') throw new RoamError('NOT_FOUND', `endpoint ${req.name} does not exist`);
      return { id: 'm-x-000000', done: Promise.resolve() };
    },
  } as unknown as MigrationSource;
  const deps = { node: 'node1', source, table, peers: {} as unknown as PeerClient };

  const control = createApp();
  registerControlRoutes(control, { node: 'node1', router: new EndpointRouter('node1', table, local, remote), table, ready: () => true });
  registerMigrationControlRoutes(control, deps);

  const peer = createApp();
  // Plaintext peers, as a config without tls has them: no identity to check (peer-identity.test.ts has the rules).
  registerPeerIdentity(peer, false);
  const manager = {
    create: async (req: { name: string }) => record(req.name),
    stop: async (name: string) => notFound(`endpoint ${name}`),
    logs: (name: string) => notFound(`endpoint ${name}`),
  } as unknown as EndpointManager;
  const sync = new PeerSync(table, { announce: async () => notFound('peer') } as never, 2000, new EventBus());
  registerPeerRoutes(peer, { manager, sync, names: new NameClaims(() => undefined) });
  // The image upload and the held packets go through their real readers; the rest of the target is unknown ids.
  const target = {
    prepare: async (b: { id: string }) => notFound(`migration ${b.id}`),
    receiveImages: async (id: string, write: (imagesDir: string) => Promise<unknown>) => write(mkdtempSync(join(imagesRoot, `${id}-`))),
    receiveHeld: (_id: string, held: { packets: Buffer[] }) => ({ packets: held.packets.length }),
    // Every id is an arrival here but this one, which is not known.
    keep: (id: string) => (id === GONE ? notFound(`migration ${id}`) : undefined),
    restore: async (id: string) => notFound(`migration ${id}`),
    pullOf: async (id: string) => notFound(`migration ${id}`),
    switchOver: async (id: string) => notFound(`migration ${id}`),
    unlock: async (id: string) => notFound(`migration ${id}`),
    stallOf: async (id: string) => notFound(`migration ${id}`),
    abort: async (id: string) => notFound(`migration ${id}`),
    preparedBy: () => undefined,
  } as unknown as MigrationTarget;
  registerMigrationPeerRoutes(peer, { node: deps.node, source, target, uploads: { idleMs: 5000, fileBytes: 64 * 1024 * 1024 } });
  return { control, peer };
}

/** A refusal is 4xx with {error: {code, message}}; anything else must be a success. Returns the status. */
function judge(res: { statusCode: number; body: string }, what: string): number {
  if (res.statusCode >= 500) throw new Error(`${what}: ${res.statusCode} ${res.body}`);
  if (res.statusCode >= 400) {
    const body = JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code !== 'string' || typeof body.error.message !== 'string' || body.error.message.length === 0) {
      throw new Error(`${what}: a refusal without a clear error: ${res.body}`);
    }
  }
  return res.statusCode;
}

/** How the answers of a fuzz run split: that it ran in full, and refused what it had to. */
function tally(statuses: number[]): { total: number; refused: number } {
  return { total: statuses.length, refused: statuses.filter((c) => c >= 400 && c < 500).length };
}

/** A valid example with one thing changed: a field replaced by random JSON, removed, or one added. */
function mutated(valid: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  return fc.oneof(
    fc.tuple(fc.constantFrom(...keys), fc.jsonValue()).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.constantFrom(...keys).map((k) => Object.fromEntries(Object.entries(valid).filter(([key]) => key !== k))),
    fc.tuple(fc.string(), fc.jsonValue()).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.jsonValue(),
  );
}

const segment = fc.string({ unit: 'binary', maxLength: 40 }).map(encodeURIComponent);

const JSON_ROUTES: { app: 'control' | 'peer'; method: 'POST'; url: string; valid: Record<string, unknown> }[] = [
  { app: 'control', method: 'POST', url: '/v1/endpoints', valid: { name: 'web', node: 'node2', ip: '10.244.2.9', command: ['/bin/true'] } },
  { app: 'control', method: 'POST', url: '/v1/migrations', valid: { endpoint: 'web', to: 'node2', mode: 'post-copy', handover: 'full' } },
  { app: 'peer', method: 'POST', url: '/peer/v1/endpoints', valid: { name: 'web', command: ['/bin/true'] } },
  { app: 'peer', method: 'POST', url: '/peer/v1/migrations', valid: { endpoint: 'web', to: 'node2' } },
  { app: 'peer', method: 'POST', url: '/peer/v1/announce', valid: { node: 'node2', address: '172.31.0.2', seq: 3, endpoints: [{ ...record('db'), node: 'node2' }] } },
  {
    app: 'peer', method: 'POST', url: '/peer/v1/migrations/prepare',
    valid: { id: 'm-x-000001', name: 'web', ip: '10.244.1.1', prefixLength: 16, mac: '02:72:0a:f4:01:01', generation: 2, command: ['/bin/true'], createdAt: '2026-01-01T00:00:00.000Z' },
  },
  { app: 'peer', method: 'POST', url: '/peer/v1/migrations/m-x-000001/restore', valid: { pipeKeys: ['pipe:[1]'], connections: 3, lazySource: { address: '172.31.0.1', port: 4000 } } },
  { app: 'peer', method: 'POST', url: '/peer/v1/migrations/m-x-000001/unlock', valid: { frozenMs: 12 } },
];

test('JSON routes: random and near-valid bodies get a clear 4xx or succeed; never a 5xx', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { control, peer } = apps(root);
  for (const route of JSON_ROUTES) {
    const app = route.app === 'control' ? control : peer;
    const statuses: number[] = [];
    await fc.assert(
      fc.asyncProperty(mutated(route.valid), async (body) => {
        const res = await app.inject({ method: route.method, url: route.url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        statuses.push(judge(res, `${route.method} ${route.url} ${JSON.stringify(body).slice(0, 200)}`));
      }),
      { numRuns: RUNS },
    );
    const { total, refused } = tally(statuses);
    t.is(total, RUNS, `${route.url}: every case answered`);
    t.true(refused > RUNS / 4, `${route.url}: broken bodies were refused (${refused} of ${total})`);
  }
});

test('any method, path and query, and bodies that are not JSON, get a clear 4xx; never a 5xx', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { control, peer } = apps(root);
  const statuses: number[] = [];
  const paths = ['/v1/endpoints/', '/v1/migrations/', '/peer/v1/endpoints/', '/peer/v1/migrations/', '/peer/v1/migrations/m-x-000001/'];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(control, peer),
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
      fc.constantFrom(...paths),
      fc.array(segment, { maxLength: 3 }),
      fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
      async (app, method, base, segs, query, bytes, type) => {
        const url = `${base}${segs.join('/')}?${new URLSearchParams(query).toString()}`;
        const res = await app.inject({ method, url, ...(method === 'GET' || method === 'DELETE' ? {} : { payload: Buffer.from(bytes), headers: { 'content-type': type } }) });
        statuses.push(judge(res, `${method} ${url}`));
      },
    ),
    { numRuns: RUNS * 2 },
  );
  const { total, refused } = tally(statuses);
  t.is(total, RUNS * 2, 'every case answered');
  t.true(refused > RUNS, `most random requests were refused (${refused} of ${total})`);
});

/** An upload in the image framing, as a well-behaved sender would build it. */
function frames(files: { name: string; data: Uint8Array }[]): Buffer {
  return Buffer.concat(files.map((f) => {
    const n = Buffer.from(f.name);
    const h = Buffer.alloc(2 + n.length + 8);
    h.writeUInt16BE(n.length, 0);
    n.copy(h, 2);
    h.writeBigUInt64BE(BigInt(f.data.length), 2 + n.length);
    return Buffer.concat([h, f.data]);
  }));
}

test('the image upload: random bytes and damaged framing are refused without a file left; nothing hangs', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { peer } = apps(root);
  const file = fc.record({ name: fc.oneof(fc.constantFrom('core-1.img', 'pages-1.img'), fc.string({ maxLength: 20 })), data: fc.uint8Array({ maxLength: 200 }) });
  const body = fc.oneof(
    fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
    fc.tuple(fc.array(file, { maxLength: 4 }), fc.nat(), fc.integer({ min: -50, max: 50 })).map(([files, at, cut]) => {
      const b = frames(files);
      // Cut or lengthen the valid framing somewhere: truncated frames, trailing junk.
      return cut < 0 ? b.subarray(0, Math.max(0, b.length + cut)) : Buffer.concat([b, Buffer.alloc(cut, at % 256)]);
    }),
  );
  await fc.assert(
    fc.asyncProperty(body, async (payload) => {
      const res = await peer.inject({ method: 'PUT', url: '/peer/v1/migrations/m-x-000001/images', payload, headers: { 'content-type': 'application/octet-stream' } });
      judge(res, `images ${payload.length} bytes`);
      // No checksum trailer comes with inject: every upload is refused, and its files removed.
      if (res.statusCode < 400) throw new Error(`an upload without its checksum was accepted: ${res.body}`);
    }),
    { numRuns: RUNS },
  );
  const left = readdirSync(root).flatMap((d) => readdirSync(join(root, d)));
  t.deepEqual(left, [], 'every refused upload left no file');
});

test('the held-packet upload: random and cut-off bodies are refused as bad input, not as a failure of this node', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { peer } = apps(root);
  const statuses: number[] = [];
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
      const res = await peer.inject({ method: 'PUT', url: '/peer/v1/migrations/m-x-000001/held', payload: Buffer.from(bytes), headers: { 'content-type': 'application/octet-stream' } });
      statuses.push(judge(res, `held ${bytes.length} bytes`));
    }),
    { numRuns: RUNS },
  );
  const { total, refused } = tally(statuses);
  t.is(total, RUNS);
  t.true(refused > RUNS * 0.9, `random bytes are not held packets (${refused} of ${total} refused)`);
});

test('held packets for a migration not arriving here are refused before the body is read', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'roam-fuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { peer } = apps(root);
  const res = await peer.inject({ method: 'PUT', url: `/peer/v1/migrations/${GONE}/held`, payload: Buffer.alloc(32 * 1024 * 1024), headers: { 'content-type': 'application/octet-stream' } });
  t.is(res.statusCode, 404);
  t.regex(res.body, new RegExp(`migration ${GONE}`));
});

test('the config: random and near-valid documents parse or are refused with CONFIG_INVALID naming what is wrong', (t) => {
  const good = {
    node: 'node1', underlay: { address: '172.31.0.1', rateMbit: 1000, pullShare: 0.8 }, vni: 42, overlay: { subnet: '10.244.0.0/16', range: '10.244.1.0/24' },
    peers: [{ node: 'node2', address: '172.31.0.2' }], api: { socket: '/run/roam/agent.sock' }, metrics: { listen: '172.31.0.1:9464' }, stateDir: '/run/roam/state',
    tls: { ca: '/etc/roam/tls/ca.pem', cert: '/etc/roam/tls/node1.pem', key: '/etc/roam/tls/node1.key' },
  };
  const nested = fc.constantFrom('underlay', 'overlay', 'api', 'metrics').chain((k) => mutated(good[k as keyof typeof good] as Record<string, unknown>).map((v) => ({ ...good, [k]: v })));
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(fc.oneof(mutated(good), nested), (doc) => {
      try {
        parseConfig(doc);
        accepted++;
      } catch (err) {
        if (!(err instanceof RoamError) || err.code !== 'CONFIG_INVALID' || err.message.length < 8) throw err;
        refused++;
      }
    }),
    { numRuns: RUNS * 3 },
  );
  t.is(accepted + refused, RUNS * 3, 'every document judged');
  t.true(refused > RUNS, `broken documents were refused with CONFIG_INVALID (${refused} of ${accepted + refused})`);
});
