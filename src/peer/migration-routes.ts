/**
 * The peer protocol's migration routes: a migration's steps as the target
 * serves them (prepare, images, restore, switch, unlock, abort…), and the
 * start or status of a move forwarded to the node the endpoint lives on.
 * With TLS, a step after the prepare comes from the node that prepared it
 * (peer/identity.ts), checked before its body is read and again just before
 * it runs. The forwarded start and status, and the container images
 * (content-addressed), are open to every peer the cluster CA signed.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RoamError } from '../errors/roam-error.js';
import { boundedChunks, boundedStream } from '../http/bounded-body.js';
import { HOLD_BUDGET_BYTES } from '../handover/hold.js';
import type { EventBus } from '../events/bus.js';
import type { MigrationSource } from '../migration/source.js';
import type { MigrationTarget } from '../migration/target.js';
import { parseHoldOutput, type HeldPackets } from '../sys/packet-hold.js';
import { callerOf, canonicalIp, migrationStepRefusal, refusePeer } from './identity.js';
import { receiveImages } from './image-framing.js';
import {
  ImageParams, MigrateBody, MigrationParams, PrepareBody, RestoreBody, TreeParams, UnlockBody, type StartedAnswer,
} from './schemas.js';
import type { PrepareRequest, RestoreRequest } from '../migration/target-agent.js';

export interface MigrationPeerDeps {
  node: string;
  source: MigrationSource;
  target: MigrationTarget;
  /** bounds on uploads (config limits): idle time, and the size of a container's files or image */
  uploads: { idleMs: number; fileBytes: number };
  /** where refusals are said and counted */
  events?: EventBus;
}

/** A move of an endpoint that lives here, started in the background. */
export function startMigrationHere(d: { node: string; source: MigrationSource }, body: MigrateBody): StartedAnswer {
  const { id } = d.source.start({ name: body.endpoint, to: body.to, mode: body.mode, handover: body.handover, ...(body.presync !== undefined ? { presync: body.presync } : {}) });
  return { id, from: d.node };
}

export function registerMigrationPeerRoutes(app: FastifyInstance, d: MigrationPeerDeps): void {
  // Images arrive as raw streams; the route reads them itself, within its bounds.
  app.addContentTypeParser('application/octet-stream', (_req, _payload, done) => done(null, undefined));
  const fileBounds = { maxBytes: d.uploads.fileBytes, idleMs: d.uploads.idleMs };

  /** Refuses (403) a step of a migration another node prepared here. */
  const fromItsSource = (req: FastifyRequest, step: string): void => {
    const id = (req.params as { id?: unknown }).id;
    if (typeof id !== 'string') return;
    const caller = callerOf(req);
    const refusal = migrationStepRefusal(caller, id, step, d.target.preparedBy(id));
    if (refusal) throw refusePeer(d.events, req, caller?.node ?? req.ip, refusal);
  };
  // Before the body is read; the handler checks again right before the step (a prepare may have ended meanwhile).
  const onlyItsSource = (step: string) => async (req: FastifyRequest): Promise<void> => fromItsSource(req, step);

  app.post<{ Body: MigrateBody }>('/peer/v1/migrations', { schema: { body: MigrateBody } }, async (req, reply) => reply.status(202).send(startMigrationHere(d, req.body)));

  app.get<{ Params: MigrationParams }>('/peer/v1/migrations/:id', { schema: { params: MigrationParams } }, async (req) => {
    const status = d.source.status(req.params.id);
    if (!status) throw new RoamError('NOT_FOUND', `migration ${req.params.id} is not known on ${d.node}`);
    return status;
  });

  app.post<{ Body: PrepareRequest }>('/peer/v1/migrations/prepare', { schema: { body: PrepareBody } }, async (req) => {
    const prepared = await d.target.prepare(req.body, callerOf(req)?.node, canonicalIp(req.ip.replace(/^::ffff:(?=\d+\.)/, '')));
    return { prepared: req.body.id, ...prepared };
  });

  app.put<{ Params: MigrationParams }>('/peer/v1/migrations/:id/images', { schema: { params: MigrationParams }, onRequest: onlyItsSource('send images to') }, async (req) => {
    fromItsSource(req, 'send images to');
    const what = `images of migration ${req.params.id}`;
    return d.target.receiveImages(req.params.id, (imagesDir, maxBytes) => receiveImages(imagesDir, req.raw, { maxBytes, idleMs: d.uploads.idleMs }, what));
  });

  app.get<{ Params: ImageParams }>('/peer/v1/images/:image', { schema: { params: ImageParams } }, async (req) => ({ present: d.target.hasImage(req.params.image) }));

  app.put<{ Params: ImageParams }>('/peer/v1/images/:image', { schema: { params: ImageParams } }, async (req) => ({
    image: await d.target.receiveImage(req.params.image, boundedStream(req.raw, fileBounds, `container image ${req.params.image}`)),
  }));

  app.put<{ Params: TreeParams }>('/peer/v1/migrations/:id/trees/:tree', { schema: { params: TreeParams }, onRequest: onlyItsSource('send files to') }, async (req) => {
    fromItsSource(req, 'send files to');
    await d.target.receiveTree(req.params.id, req.params.tree, boundedStream(req.raw, fileBounds, `${req.params.tree} files of migration ${req.params.id}`));
    return { tree: req.params.tree };
  });

  app.post<{ Params: MigrationParams; Body: RestoreRequest }>('/peer/v1/migrations/:id/restore', { schema: { params: MigrationParams, body: RestoreBody }, onRequest: onlyItsSource('restore') }, async (req) => {
    fromItsSource(req, 'restore');
    return d.target.restore(req.params.id, req.body);
  });

  app.get<{ Params: MigrationParams }>('/peer/v1/migrations/:id/pull', { schema: { params: MigrationParams }, onRequest: onlyItsSource('ask for the pull of') }, async (req) => {
    fromItsSource(req, 'ask for the pull of');
    return d.target.pullOf(req.params.id);
  });

  app.post<{ Params: MigrationParams }>('/peer/v1/migrations/:id/switch', { schema: { params: MigrationParams }, onRequest: onlyItsSource('switch') }, async (req) => {
    fromItsSource(req, 'switch');
    await d.target.switchOver(req.params.id);
    return { switched: req.params.id };
  });

  app.put<{ Params: MigrationParams }>('/peer/v1/migrations/:id/held', { schema: { params: MigrationParams }, onRequest: onlyItsSource('send held packets to') }, async (req) => {
    // An arrival known here before a byte is read (keep throws NOT_FOUND): no stranger's id gets a 128 MiB buffer.
    d.target.keep(req.params.id);
    const chunks: Buffer[] = [];
    for await (const c of boundedChunks(req.raw, { maxBytes: HOLD_BUDGET_BYTES * 2, idleMs: d.uploads.idleMs }, `held packets of migration ${req.params.id}`)) chunks.push(c);
    let held: HeldPackets;
    try {
      held = parseHoldOutput(Buffer.concat(chunks));
    } catch (err) {
      throw new RoamError('INPUT_INVALID', `held packets of migration ${req.params.id}: ${err instanceof Error ? err.message : String(err)}`);
    }
    fromItsSource(req, 'send held packets to');
    return d.target.receiveHeld(req.params.id, held);
  });

  app.post<{ Params: MigrationParams; Body: UnlockBody }>('/peer/v1/migrations/:id/unlock', { schema: { params: MigrationParams, body: UnlockBody }, onRequest: onlyItsSource('unlock') }, async (req) => {
    fromItsSource(req, 'unlock');
    return d.target.unlock(req.params.id, req.body.frozenMs);
  });

  app.get<{ Params: MigrationParams }>('/peer/v1/migrations/:id/stall', { schema: { params: MigrationParams }, onRequest: onlyItsSource('ask for the stall of') }, async (req) => {
    fromItsSource(req, 'ask for the stall of');
    return d.target.stallOf(req.params.id);
  });

  // A target prepared ahead of a predicted move is kept while the source still expects to use it.
  app.post<{ Params: MigrationParams }>('/peer/v1/migrations/:id/keep', { schema: { params: MigrationParams }, onRequest: onlyItsSource('keep') }, async (req) => {
    fromItsSource(req, 'keep');
    d.target.keep(req.params.id);
    return { kept: req.params.id };
  });

  app.post<{ Params: MigrationParams }>('/peer/v1/migrations/:id/abort', { schema: { params: MigrationParams }, onRequest: onlyItsSource('abort') }, async (req) => {
    fromItsSource(req, 'abort');
    await d.target.abort(req.params.id);
    return { aborted: req.params.id };
  });

  app.post<{ Params: MigrationParams }>('/peer/v1/migrations/:id/settled', { schema: { params: MigrationParams }, onRequest: onlyItsSource('settle') }, async (req) => {
    fromItsSource(req, 'settle');
    d.target.settled(req.params.id);
    return { settled: req.params.id };
  });
}
