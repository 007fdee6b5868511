import test from 'ava';
import { addOpenApi, createApp } from '../../src/api/app.js';
import { registerMigrationControlRoutes } from '../../src/api/migration-routes.js';
import type { PeerClient } from '../../src/peer/client.js';
import type { MigrationSource } from '../../src/migration/source.js';
import { registerControlRoutes } from '../../src/api/control-routes.js';
import { EndpointRouter, type LocalEndpoints, type RemoteEndpoints } from '../../src/cluster/endpoint-router.js';
import { LocationTable } from '../../src/cluster/locations.js';
import type { EndpointRecord } from '../../src/records/endpoint.js';
import { RoamError } from '../../src/errors/roam-error.js';

async function build() {
  const table = new LocationTable('node1', '172.31.0.1');
  table.addPeer('node2', '172.31.0.2');
  const local = new Map<string, EndpointRecord>();
  const remoteCalls: string[] = [];
  const endpoints: LocalEndpoints = {
    has: (n) => local.has(n),
    async create(req) {
      if (local.has(req.name)) throw new RoamError('CONFLICT', `name: endpoint ${req.name} already exists on node1`);
      const r: EndpointRecord = { name: req.name, ip: req.ip ?? '10.244.1.1', mac: '02:72:0a:f4:01:01', node: 'node1', generation: 1, pid: 42, netns: '/x', state: 'running' };
      local.set(req.name, r);
      table.setLocal([...local.values()]);
      return r;
    },
    async stop(name) {
      local.delete(name);
      table.setLocal([...local.values()]);
    },
    logs: (name) => `log of ${name}\n`,
    async setPolicy(name, policy) {
      if (!local.has(name)) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node node1`);
      remoteCalls.push(`policy here ${name} ${JSON.stringify(policy ?? null)}`);
    },
  };
  const remote: RemoteEndpoints = {
    async createEndpoint(address, body) {
      remoteCalls.push(`create ${address} ${body.name}`);
      return { name: body.name, ip: '10.244.2.1', mac: '02:72:0a:f4:02:01', node: 'node2', generation: 1, pid: 9, netns: '/y', state: 'running' };
    },
    async setPolicy(address, name, policy) {
      remoteCalls.push(`policy ${address} ${name} ${JSON.stringify(policy) ?? 'undefined'}`);
    },
    async stopEndpoint(address, name) {
      remoteCalls.push(`stop ${address} ${name}`);
    },
    async logs() {
      return '';
    },
  };
  const app = createApp();
  await addOpenApi(app, 'roam test', '0.0.0');
  registerControlRoutes(app, { node: 'node1', router: new EndpointRouter('node1', table, endpoints, remote), table, ready: () => true });
  // The migration routes' own logic is exercised end to end; here: their input checks and lookups.
  const started: string[] = [];
  const source = {
    status: (id: string) => (id === 'm-x-000000' ? { id, name: 'web', from: 'node1', to: 'node2', mode: 'stop-copy', state: 'running', phase: 'dump', completed: [{ phase: 'prepare', ms: 9 }] } : undefined),
    start: (req: { name: string; to: string }) => {
      started.push(`${req.name}->${req.to}`);
      return { id: 'm-x-000000', done: Promise.resolve() };
    },
  } as unknown as MigrationSource;
  registerMigrationControlRoutes(app, { node: 'node1', source, table, peers: {} as unknown as PeerClient });
  return { app, remoteCalls, table, started };
}

const body = { name: 'web', command: ['/bin/true'] };

test('health, readiness and nodes answer', async (t) => {
  const { app } = await build();
  t.deepEqual((await app.inject({ method: 'GET', url: '/v1/health' })).json(), { status: 'ok', node: 'node1' });
  t.is((await app.inject({ method: 'GET', url: '/v1/ready' })).statusCode, 200);
  const nodes = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json() as { node: string }[];
  t.deepEqual(nodes.map((n) => n.node), ['node1', 'node2']);
});

test('create, list, get, logs, stop: the happy path', async (t) => {
  const { app } = await build();
  const created = await app.inject({ method: 'POST', url: '/v1/endpoints', payload: body });
  t.is(created.statusCode, 201);
  t.is(created.json().name, 'web');
  t.deepEqual((await app.inject({ method: 'GET', url: '/v1/endpoints' })).json().map((e: EndpointRecord) => e.name), ['web']);
  t.is((await app.inject({ method: 'GET', url: '/v1/endpoints/web' })).json().ip, '10.244.1.1');
  t.is((await app.inject({ method: 'GET', url: '/v1/endpoints/web/logs' })).body, 'log of web\n');
  t.is((await app.inject({ method: 'DELETE', url: '/v1/endpoints/web' })).statusCode, 200);
  t.is((await app.inject({ method: 'GET', url: '/v1/endpoints/web' })).statusCode, 404);
});

test('a create for another node is forwarded to that node', async (t) => {
  const { app, remoteCalls } = await build();
  const res = await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, node: 'node2' } });
  t.is(res.statusCode, 201);
  t.deepEqual(remoteCalls, ['create 172.31.0.2 web']);
});

test('a policy is set where the endpoint runs, with its defaults filled in, and checked first', async (t) => {
  const { app, remoteCalls, table } = await build();
  t.is((await app.inject({ method: 'POST', url: '/v1/endpoints', payload: body })).statusCode, 201);
  const res = await app.inject({ method: 'PUT', url: '/v1/endpoints/web/policy', payload: { policy: { followClient: { sustainMs: 1000 } } } });
  t.is(res.statusCode, 200, res.body);
  t.like(res.json(), { policy: { followClient: { sustainMs: 1000, share: 0.7, windowMs: 5000 }, drain: true, minDwellMs: 30000, prepare: true } });
  table.merge({ node: 'node2', address: '172.31.0.2', seq: 1, endpoints: [{ name: 'db', ip: '10.244.2.1', mac: '02:72:0a:f4:02:01', node: 'node2', generation: 1, pid: 9, netns: '/y', state: 'running' }] });
  t.is((await app.inject({ method: 'PUT', url: '/v1/endpoints/db/policy', payload: {} })).statusCode, 200);
  t.deepEqual(remoteCalls, [`policy here web ${JSON.stringify(res.json().policy)}`, 'policy 172.31.0.2 db undefined']);
  await expectError(t, await app.inject({ method: 'PUT', url: '/v1/endpoints/web/policy', payload: { policy: { followClient: { share: 0.5 } } } }), 400, 'INPUT_INVALID', /share/);
  await expectError(t, await app.inject({ method: 'PUT', url: '/v1/endpoints/web/policy', payload: { policy: { follow: {} } } }), 400, 'INPUT_INVALID', /follow: unknown field/);
  await expectError(t, await app.inject({ method: 'PUT', url: '/v1/endpoints/ghost/policy', payload: {} }), 404, 'NOT_FOUND', /ghost/);
});

async function expectError(t: import('ava').ExecutionContext, res: { statusCode: number; json: () => unknown }, status: number, code: string, message: RegExp) {
  t.is(res.statusCode, status);
  const e = (res.json() as { error: { code: string; message: string } }).error;
  t.is(e.code, code);
  t.regex(e.message, message);
}

test('bad input gets a 4xx naming the field or the conflict', async (t) => {
  const { app } = await build();
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', headers: { 'content-type': 'application/json' }, payload: '{"name": ' }), 400, 'INPUT_INVALID', /malformed JSON/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, command: 'ls' } }), 400, 'INPUT_INVALID', /body\.command: expected array/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, colour: 'red' } }), 400, 'INPUT_INVALID', /body\.colour: unknown field/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { command: ['/bin/true'] } }), 400, 'INPUT_INVALID', /body\.name: required field is missing/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, ip: '10.244.1' } }), 400, 'INPUT_INVALID', /body\.ip: expected string to match 'ip' format/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, name: 'Web_1' } }), 400, 'INPUT_INVALID', /body\.name: .*DNS label/);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, node: 'node9' } }), 404, 'NOT_FOUND', /node: unknown node node9/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/endpoints/ghost' }), 404, 'NOT_FOUND', /endpoint ghost does not exist/);
  await expectError(t, await app.inject({ method: 'DELETE', url: '/v1/endpoints/ghost' }), 404, 'NOT_FOUND', /ghost/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/endpoints/web/logs?maxBytes=lots' }), 400, 'INPUT_INVALID', /querystring\.maxBytes/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/nowhere' }), 404, 'NOT_FOUND', /no route GET \/v1\/nowhere/);
  t.is((await app.inject({ method: 'POST', url: '/v1/endpoints', payload: body })).statusCode, 201);
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/endpoints', payload: body }), 409, 'CONFLICT', /web already exists/);
});

test('migration routes refuse bad input naming the field, and unknown things with 404', async (t) => {
  const { app } = await build();
  const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/migrations', payload: payload as Record<string, unknown> });
  await expectError(t, await app.inject({ method: 'POST', url: '/v1/migrations', headers: { 'content-type': 'application/json' }, payload: '{"endpoint"' }), 400, 'INPUT_INVALID', /malformed JSON/);
  await expectError(t, await post({ endpoint: 'web', to: 'node2', speed: 'warp' }), 400, 'INPUT_INVALID', /body\.speed: unknown field/);
  await expectError(t, await post({ endpoint: 'web', to: 7 }), 400, 'INPUT_INVALID', /body\.to: expected string/);
  await expectError(t, await post({ to: 'node2' }), 400, 'INPUT_INVALID', /body\.endpoint: required field is missing/);
  await expectError(t, await post({ endpoint: 'ghost', to: 'node2' }), 404, 'NOT_FOUND', /endpoint ghost does not exist/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/migrations/not-an-id' }), 400, 'INPUT_INVALID', /id: expected string to match/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/migrations/m-abc-123456' }), 404, 'NOT_FOUND', /migration m-abc-123456 is not known on node1/);
  await expectError(t, await app.inject({ method: 'GET', url: '/v1/migrations/m-abc-123456?from=node9' }), 404, 'NOT_FOUND', /from: unknown node node9/);
});

test('the OpenAPI document describes every control route, from the same schemas', async (t) => {
  const { app } = await build();
  const res = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
  t.is(res.statusCode, 200);
  const doc = res.json() as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: { 'application/json': { schema: { properties: Record<string, unknown>; additionalProperties: boolean } } } } }>> };
  t.is(doc.openapi, '3.0.3');
  const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
  t.deepEqual(routes, [
    'DELETE /v1/endpoints/{name}', 'GET /v1/endpoints', 'GET /v1/endpoints/{name}', 'GET /v1/endpoints/{name}/logs', 'GET /v1/health',
    'GET /v1/migrations/{id}', 'GET /v1/nodes', 'GET /v1/ready', 'POST /v1/endpoints', 'POST /v1/migrations', 'PUT /v1/endpoints/{name}/policy',
  ]);
  const create = doc.paths['/v1/endpoints']!.post!.requestBody!.content['application/json'].schema;
  t.deepEqual(Object.keys(create.properties).sort(), ['command', 'container', 'ip', 'name', 'node', 'policy']);
  t.false(create.additionalProperties);
});

test('starting a migration answers 202 with its id; its live status can be read', async (t) => {
  const { app, started } = await build();
  t.is((await app.inject({ method: 'POST', url: '/v1/endpoints', payload: body })).statusCode, 201);
  const res = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { endpoint: 'web', to: 'node2' } });
  t.is(res.statusCode, 202);
  t.deepEqual(res.json(), { id: 'm-x-000000', from: 'node1' });
  t.deepEqual(started, ['web->node2']);
  const status = await app.inject({ method: 'GET', url: '/v1/migrations/m-x-000000?from=node1' });
  t.is(status.statusCode, 200);
  t.like(status.json(), { state: 'running', phase: 'dump', completed: [{ phase: 'prepare', ms: 9 }] });
});
