/**
 * Migration routes. Control API: start a migration of an endpoint wherever
 * it lives, and read its live status and final report. Peer protocol: the
 * target's steps (prepare, images, restore, switch, unlock, abort) and the
 * forwarding of a start or status request to the node the endpoint lives on.
 */
import type { FastifyInstance } from 'fastify';
import type { LocationTable } from '../cluster/locations.js';
import { RoamError } from '../errors/roam-error.js';
import type { MigrationSource } from '../migration/source.js';
import type { MigrationTarget } from '../migration/target.js';
import { HOLD_BUDGET_BYTES } from '../handover/hold.js';
import { parseHoldOutput, type HeldPackets } from '../sys/packet-hold.js';
import type { PeerClient } from './peer-client.js';
import {
  ImageParams, MigrateBody, MigrationParams, MigrationQuery, PrepareBody, RestoreBody, TreeParams, UnlockBody, type UnlockBody as UnlockBodyT,
  type ImageParams as ImageParamsT, type TreeParams as TreeParamsT,
  type MigrateBody as MigrateBodyT, type MigrationParams as MigrationParamsT,
  type MigrationQuery as MigrationQueryT, type PrepareBody as PrepareBodyT, type RestoreBody as RestoreBodyT,
} from './schemas.js';

export interface MigrationDeps {
  node: string;
  source: MigrationSource;
  table: LocationTable;
  peers: PeerClient;
}

function start(d: MigrationDeps, body: MigrateBodyT): { id: string; from: string } {
  const { id } = d.source.start({ name: body.endpoint, to: body.to, mode: body.mode, handover: body.handover, ...(body.presync !== undefined ? { presync: body.presync } : {}) });
  return { id, from: d.node };
}

function ownerOf(d: MigrationDeps, name: string): { node: string; address: string } {
  const ep = d.table.endpoints().find((e) => e.name === name);
  if (!ep) throw new RoamError('NOT_FOUND', `endpoint ${name} does not exist`);
  const node = d.table.node(ep.node);
  if (!node) throw new RoamError('NOT_FOUND', `endpoint ${name} lives on unknown node ${ep.node}`);
  return { node: ep.node, address: node.address };
}

export function registerMigrationControlRoutes(app: FastifyInstance, d: MigrationDeps): void {
  app.post<{ Body: MigrateBodyT }>('/v1/migrations', { schema: { body: MigrateBody } }, async (req, reply) => {
    const owner = ownerOf(d, req.body.endpoint);
    if (owner.node !== d.node) {
      if (!d.table.node(req.body.to)) throw new RoamError('NOT_FOUND', `to: unknown node ${req.body.to}`);
      return reply.status(202).send(await d.peers.startMigration(owner.address, req.body));
    }
    return reply.status(202).send(start(d, req.body));
  });

  app.get<{ Params: MigrationParamsT; Querystring: MigrationQueryT }>('/v1/migrations/:id', { schema: { params: MigrationParams, querystring: MigrationQuery } }, async (req) => {
    const from = req.query.from ?? d.node;
    if (from !== d.node) {
      const node = d.table.node(from);
      if (!node) throw new RoamError('NOT_FOUND', `from: unknown node ${from}`);
      return d.peers.migrationStatus(node.address, req.params.id);
    }
    const status = d.source.status(req.params.id);
    if (!status) throw new RoamError('NOT_FOUND', `migration ${req.params.id} is not known on ${d.node}`);
    return status;
  });
}

export function registerMigrationPeerRoutes(app: FastifyInstance, d: MigrationDeps & { target: MigrationTarget }): void {
  // Images arrive as raw streams; the route reads them itself.
  app.addContentTypeParser('application/octet-stream', (_req, _payload, done) => done(null, undefined));

  app.post<{ Body: MigrateBodyT }>('/peer/v1/migrations', { schema: { body: MigrateBody } }, async (req, reply) => reply.status(202).send(start(d, req.body)));

  app.get<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id', { schema: { params: MigrationParams } }, async (req) => {
    const status = d.source.status(req.params.id);
    if (!status) throw new RoamError('NOT_FOUND', `migration ${req.params.id} is not known on ${d.node}`);
    return status;
  });

  app.post<{ Body: PrepareBodyT }>('/peer/v1/migrations/prepare', { schema: { body: PrepareBody } }, async (req) => {
    const prepared = await d.target.prepare(req.body);
    return { prepared: req.body.id, ...prepared };
  });

  app.put<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/images', { schema: { params: MigrationParams } }, async (req) => d.target.receiveImages(req.params.id, req.raw));

  app.get<{ Params: ImageParamsT }>('/peer/v1/images/:image', { schema: { params: ImageParams } }, async (req) => ({ present: d.target.hasImage(req.params.image) }));

  app.put<{ Params: ImageParamsT }>('/peer/v1/images/:image', { schema: { params: ImageParams } }, async (req) => ({ image: await d.target.receiveImage(req.params.image, req.raw) }));

  app.put<{ Params: TreeParamsT }>('/peer/v1/migrations/:id/trees/:tree', { schema: { params: TreeParams } }, async (req) => {
    await d.target.receiveTree(req.params.id, req.params.tree, req.raw);
    return { tree: req.params.tree };
  });

  app.post<{ Params: MigrationParamsT; Body: RestoreBodyT }>('/peer/v1/migrations/:id/restore', { schema: { params: MigrationParams, body: RestoreBody } }, async (req) =>
    d.target.restore(req.params.id, req.body.pipeKeys, req.body.connections ?? 0, req.body.lazySource),
  );

  app.get<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/pull', { schema: { params: MigrationParams } }, async (req) => d.target.pullOf(req.params.id));

  app.post<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/switch', { schema: { params: MigrationParams } }, async (req) => {
    await d.target.switchOver(req.params.id);
    return { switched: req.params.id };
  });

  app.put<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/held', { schema: { params: MigrationParams } }, async (req) => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req.raw as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > HOLD_BUDGET_BYTES * 2) throw new RoamError('INPUT_INVALID', `held packets of migration ${req.params.id}: more than ${HOLD_BUDGET_BYTES * 2} bytes`);
      chunks.push(c);
    }
    let held: HeldPackets;
    try {
      held = parseHoldOutput(Buffer.concat(chunks));
    } catch (err) {
      throw new RoamError('INPUT_INVALID', `held packets of migration ${req.params.id}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return d.target.receiveHeld(req.params.id, held);
  });

  app.post<{ Params: MigrationParamsT; Body: UnlockBodyT }>('/peer/v1/migrations/:id/unlock', { schema: { params: MigrationParams, body: UnlockBody } }, async (req) =>
    d.target.unlock(req.params.id, req.body.frozenMs),
  );

  app.get<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/stall', { schema: { params: MigrationParams } }, async (req) => d.target.stallOf(req.params.id));

  // A target prepared ahead of a predicted move is kept while the source still expects to use it.
  app.post<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/keep', { schema: { params: MigrationParams } }, async (req) => {
    d.target.keep(req.params.id);
    return { kept: req.params.id };
  });

  app.post<{ Params: MigrationParamsT }>('/peer/v1/migrations/:id/abort', { schema: { params: MigrationParams } }, async (req) => {
    await d.target.abort(req.params.id);
    return { aborted: req.params.id };
  });
}
