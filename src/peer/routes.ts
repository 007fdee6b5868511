/**
 * The agent-to-agent protocol, served on the underlay address: announcements
 * and endpoint requests (migrations: migration-routes.ts). With TLS, an
 * announcement speaks only for the node its sender's certificate names, at
 * an address it names (peer/identity.ts). The endpoint requests carry what a
 * user asked another node's API, and are open to every peer the CA signed.
 */
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../events/bus.js';
import { announcementRefusal, callerOf, nameClaimRefusal, refusePeer } from './identity.js';
import type { NameClaims } from '../cluster/name-claims.js';
import { NameClaimBody } from '../records/name-claim.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { PeerSync } from '../cluster/peer-sync.js';
import { NodeAnnouncement } from '../records/announcement.js';
import { CreateEndpointBody, LogsQuery, NameParams, PolicyBody } from '../records/endpoint-requests.js';

export interface PeerDeps {
  manager: EndpointManager;
  sync: PeerSync;
  /** the endpoint names this node granted to creating nodes */
  names: NameClaims;
  /** where refusals are said and counted */
  events?: EventBus;
}

export function registerPeerRoutes(app: FastifyInstance, d: PeerDeps): void {
  app.post<{ Body: NodeAnnouncement }>('/peer/v1/announce', { schema: { body: NodeAnnouncement } }, async (req) => {
    const caller = callerOf(req);
    const refusal = announcementRefusal(caller, req.body);
    if (refusal) throw refusePeer(d.events, req, caller?.node ?? req.ip, refusal);
    return d.sync.receive(req.body);
  });

  // A node about to create an endpoint claims its name from every node (cluster/name-claims.ts), for itself only.
  for (const verb of ['claim', 'release'] as const) {
    app.post<{ Body: NameClaimBody }>(`/peer/v1/names/${verb}`, { schema: { body: NameClaimBody } }, async (req) => {
      const caller = callerOf(req);
      const refused = nameClaimRefusal(caller, req.body);
      if (refused) throw refusePeer(d.events, req, caller?.node ?? req.ip, refused);
      if (verb === 'claim') return d.names.answer(req.body.name, req.body.node);
      d.names.release(req.body.name, req.body.node);
      return { released: req.body.name };
    });
  }

  app.post<{ Body: CreateEndpointBody }>('/peer/v1/endpoints', { schema: { body: CreateEndpointBody } }, async (req, reply) => {
    const b = req.body;
    const record = await d.manager.create({ name: b.name, ip: b.ip, command: b.command, ...(b.container ? { container: b.container } : {}), ...(b.policy ? { policy: b.policy } : {}) });
    return reply.status(201).send(record);
  });

  app.put<{ Params: NameParams; Body: PolicyBody }>('/peer/v1/endpoints/:name/policy', { schema: { params: NameParams, body: PolicyBody } }, async (req) => {
    await d.manager.setPolicy(req.params.name, req.body.policy);
    return { name: req.params.name, policy: req.body.policy ?? null };
  });

  app.delete<{ Params: NameParams }>('/peer/v1/endpoints/:name', { schema: { params: NameParams } }, async (req) => {
    await d.manager.stop(req.params.name);
    return { stopped: req.params.name };
  });

  app.get<{ Params: NameParams; Querystring: LogsQuery }>(
    '/peer/v1/endpoints/:name/logs',
    { schema: { params: NameParams, querystring: LogsQuery } },
    async (req, reply) => reply.type('text/plain; charset=utf-8').send(d.manager.logs(req.params.name, Number(req.query.maxBytes ?? 262144))),
  );
}
