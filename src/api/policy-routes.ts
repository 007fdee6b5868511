/**
 * Policies over HTTP: marking a node for maintenance (drain), and the
 * decisions the policies took or declined. A drain is set on the node's own
 * agent; the decisions are gathered from every reachable agent, so any one
 * of them can answer for the cluster.
 */
import type { FastifyInstance } from 'fastify';
import type { LocationTable } from '../cluster/locations.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { DrainBody, NodeParams } from './schemas.js';
import type { Decision, DecisionWire } from '../records/decision.js';

export interface PolicyRouteDeps {
  node: string;
  table: LocationTable;
  decisions: () => Decision[];
  setDraining: (draining: boolean) => Promise<void>;
  /** another agent's decisions, over the peer protocol */
  peerDecisions: (address: string) => Promise<DecisionWire[]>;
  events: EventBus;
}

export function decisionWire(node: string, d: Decision): DecisionWire {
  return { at: new Date(d.at).toISOString(), node, endpoint: d.endpoint, policy: d.policy, outcome: d.outcome, ...(d.to ? { to: d.to } : {}), code: d.code, reason: d.reason, ...(d.migration ? { migration: d.migration } : {}) };
}

export function registerPolicyControlRoutes(app: FastifyInstance, d: PolicyRouteDeps): void {
  app.put<{ Params: NodeParams; Body: DrainBody }>('/v1/nodes/:node/drain', { schema: { params: NodeParams, body: DrainBody } }, async (req) => {
    if (req.params.node !== d.node) {
      const known = d.table.node(req.params.node) ? `ask ${req.params.node}'s own agent` : `no node ${req.params.node} is known`;
      throw new RoamError('NOT_FOUND', `node: this agent is ${d.node}; ${known}`);
    }
    await d.setDraining(req.body.draining);
    return { node: d.node, draining: req.body.draining };
  });

  app.get('/v1/decisions', async (): Promise<DecisionWire[]> => {
    const mine = d.decisions().map((x) => decisionWire(d.node, x));
    const theirs = await Promise.all(d.table.peers().filter((p) => p.reachable).map((p) => d.peerDecisions(p.address).catch((err: unknown) => {
      d.events.warn(`decisions of ${p.node}: ${describeError(err)}`);
      return [];
    })));
    return [...mine, ...theirs.flat()].sort((a, b) => a.at.localeCompare(b.at));
  });
}

export function registerPolicyPeerRoutes(app: FastifyInstance, d: Pick<PolicyRouteDeps, 'node' | 'decisions'>): void {
  app.get('/peer/v1/decisions', async (): Promise<DecisionWire[]> => d.decisions().map((x) => decisionWire(d.node, x)));
}
