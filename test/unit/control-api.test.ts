import test from 'ava';
import { createApp } from '../../src/api/app.js';
import { registerControlRoutes } from '../../src/api/control-routes.js';
import { EndpointRouter, type LocalEndpoints, type RemoteEndpoints } from '../../src/cluster/endpoint-router.js';
import { LocationTable, type EndpointRecord } from '../../src/cluster/locations.js';
import { RoamError } from '../../src/errors/roam-error.js';

function build() {
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
  };
  const remote: RemoteEndpoints = {
    async createEndpoint(address, body) {
      remoteCalls.push(`create ${address} ${body.name}`);
      return { name: body.name, ip: '10.244.2.1', mac: '02:72:0a:f4:02:01', node: 'node2', generation: 1, pid: 9, netns: '/y', state: 'running' };
    },
    async stopEndpoint(address, name) {
      remoteCalls.push(`stop ${address} ${name}`);
    },
    async logs() {
      return '';
    },
  };
  const app = createApp();
  registerControlRoutes(app, { node: 'node1', router: new EndpointRouter('node1', table, endpoints, remote), table, ready: () => true });
  return { app, remoteCalls, table };
}

const body = { name: 'web', command: ['/bin/true'] };

test('health, readiness and nodes answer', async (t) => {
  const { app } = build();
  t.deepEqual((await app.inject({ method: 'GET', url: '/v1/health' })).json(), { status: 'ok', node: 'node1' });
  t.is((await app.inject({ method: 'GET', url: '/v1/ready' })).statusCode, 200);
  const nodes = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json() as { node: string }[];
  t.deepEqual(nodes.map((n) => n.node), ['node1', 'node2']);
});

test('create, list, get, logs, stop: the happy path', async (t) => {
  const { app } = build();
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
  const { app, remoteCalls } = build();
  const res = await app.inject({ method: 'POST', url: '/v1/endpoints', payload: { ...body, node: 'node2' } });
  t.is(res.statusCode, 201);
  t.deepEqual(remoteCalls, ['create 172.31.0.2 web']);
});

async function expectError(t: import('ava').ExecutionContext, res: { statusCode: number; json: () => unknown }, status: number, code: string, message: RegExp) {
  t.is(res.statusCode, status);
  const e = (res.json() as { error: { code: string; message: string } }).error;
  t.is(e.code, code);
  t.regex(e.message, message);
}

test('bad input gets a 4xx naming the field or the conflict', async (t) => {
  const { app } = build();
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
