/** The control API (CLI and tools), served on the agent's unix socket. */
import type { FastifyInstance } from 'fastify';
import type { EndpointRouter } from '../cluster/endpoint-router.js';
import type { LocationTable } from '../cluster/locations.js';
import { CreateEndpointBody, LogsQuery, NameParams, PolicyBody } from '../records/endpoint-requests.js';
import type { NodeStatus } from './schemas.js';

export interface ControlDeps {
  node: string;
  router: EndpointRouter;
  table: LocationTable;
  ready: () => boolean;
}

export function registerControlRoutes(app: FastifyInstance, d: ControlDeps): void {
  app.get('/v1/health', async () => ({ status: 'ok', node: d.node }));

  app.get('/v1/ready', async (_req, reply) => {
    if (!d.ready()) return reply.status(503).send({ ready: false, node: d.node });
    return { ready: true, node: d.node };
  });

  app.get('/v1/nodes', async (): Promise<NodeStatus[]> =>
    d.table.nodeViews().map((n) => ({ node: n.node, address: n.address, reachable: n.reachable, endpoints: n.endpoints.length, lastHeardMs: n.lastHeardMs ?? null, draining: n.draining === true })),
  );

  app.get('/v1/endpoints', async () => d.router.list());

  app.get<{ Params: NameParams }>('/v1/endpoints/:name', { schema: { params: NameParams } }, async (req) => d.router.get(req.params.name));

  app.post<{ Body: CreateEndpointBody }>('/v1/endpoints', { schema: { body: CreateEndpointBody } }, async (req, reply) => {
    const b = req.body;
    const record = await d.router.create({ name: b.name, node: b.node, ip: b.ip, command: b.command, ...(b.container ? { container: b.container } : {}), ...(b.policy ? { policy: b.policy } : {}) });
    return reply.status(201).send(record);
  });

  app.put<{ Params: NameParams; Body: PolicyBody }>('/v1/endpoints/:name/policy', { schema: { params: NameParams, body: PolicyBody } }, async (req) => {
    await d.router.setPolicy(req.params.name, req.body.policy);
    return { name: req.params.name, policy: req.body.policy ?? null };
  });

  app.delete<{ Params: NameParams }>('/v1/endpoints/:name', { schema: { params: NameParams } }, async (req) => {
    await d.router.stop(req.params.name);
    return { stopped: req.params.name };
  });

  app.get<{ Params: NameParams; Querystring: LogsQuery }>('/v1/endpoints/:name/logs', { schema: { params: NameParams, querystring: LogsQuery } }, async (req, reply) => {
    const text = await d.router.logs(req.params.name, Number(req.query.maxBytes ?? 262144));
    return reply.type('text/plain; charset=utf-8').send(text);
  });
}
