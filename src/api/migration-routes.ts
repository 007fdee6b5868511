/**
 * The control API's migration routes: start a migration of an endpoint
 * wherever it lives (forwarded over the peer protocol to its node), and read
 * its live status and final report.
 */
import type { FastifyInstance } from 'fastify';
import type { LocationTable } from '../cluster/locations.js';
import { RoamError } from '../errors/roam-error.js';
import type { MigrationSource } from '../migration/source.js';
import type { PeerClient } from '../peer/client.js';
import { startMigrationHere } from '../peer/migration-routes.js';
import { MigrateBody, MigrationParams } from '../peer/schemas.js';
import { MigrationQuery } from './schemas.js';

export interface MigrationControlDeps {
  node: string;
  source: MigrationSource;
  table: LocationTable;
  peers: Pick<PeerClient, 'startMigration' | 'migrationStatus'>;
}

function ownerOf(d: MigrationControlDeps, name: string): { node: string; address: string } {
  const ep = d.table.endpoints().find((e) => e.name === name);
  if (!ep) throw new RoamError('NOT_FOUND', `endpoint ${name} does not exist`);
  const node = d.table.node(ep.node);
  if (!node) throw new RoamError('NOT_FOUND', `endpoint ${name} lives on unknown node ${ep.node}`);
  return { node: ep.node, address: node.address };
}

export function registerMigrationControlRoutes(app: FastifyInstance, d: MigrationControlDeps): void {
  app.post<{ Body: MigrateBody }>('/v1/migrations', { schema: { body: MigrateBody } }, async (req, reply) => {
    const owner = ownerOf(d, req.body.endpoint);
    if (owner.node !== d.node) {
      if (!d.table.node(req.body.to)) throw new RoamError('NOT_FOUND', `to: unknown node ${req.body.to}`);
      return reply.status(202).send(await d.peers.startMigration(owner.address, req.body));
    }
    return reply.status(202).send(startMigrationHere(d, req.body));
  });

  app.get<{ Params: MigrationParams; Querystring: MigrationQuery }>('/v1/migrations/:id', { schema: { params: MigrationParams, querystring: MigrationQuery } }, async (req) => {
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

