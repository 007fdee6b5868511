/**
 * The policies' decisions as Kubernetes Events, so that `kubectl describe
 * roamendpoint NAME` and `kubectl get events` show why an endpoint moved, or
 * why it did not. RoamEndpoints are cluster-scoped: their Events go to the
 * default namespace, as a Node's do. Writing one is best effort: a decision
 * is also in the agent's log, its metrics and GET /v1/decisions.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Event } from '@kubernetes/client-node';
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { Decision } from '../records/decision.js';
import type { KubeClient } from './client.js';
import { API_VERSION, ENDPOINT_KIND, GROUP } from './resources.js';

export const EVENTS_NAMESPACE = 'default';
export const REPORTING_COMPONENT = 'roam.dev/agent';

/** "follow-client" + "declined" -> "FollowClientDeclined": Event reasons are UpperCamelCase words. */
export function eventReason(d: Decision): string {
  return `${d.policy}-${d.outcome}`.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

export function decisionEvent(node: string, d: Decision): CoreV1Event {
  const at = new Date(d.at);
  return {
    metadata: { name: `${d.endpoint}.${d.at.toString(16)}${randomBytes(3).toString('hex')}`, namespace: EVENTS_NAMESPACE },
    involvedObject: { apiVersion: `${GROUP}/${API_VERSION}`, kind: ENDPOINT_KIND.kind, name: d.endpoint },
    reason: eventReason(d),
    message: `${d.outcome}${d.to ? ` ${d.to}` : ''} (${d.code}): ${d.reason}${d.migration ? `; migration ${d.migration}` : ''}`,
    type: d.outcome === 'declined' ? 'Warning' : 'Normal',
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
    source: { component: 'roam-agent', host: node },
    reportingComponent: REPORTING_COMPONENT,
    reportingInstance: node,
    action: d.outcome,
  };
}

export class DecisionEvents {
  private unsubscribe: (() => void) | undefined;
  private failing = false;

  constructor(private readonly client: KubeClient, private readonly node: string, private readonly events: EventBus) {}

  start(): void {
    this.unsubscribe = this.events.on('policy.decision', ({ decision }) => {
      this.client.createEvent(decisionEvent(this.node, decision)).then(
        () => {
          if (this.failing) this.events.info('kubernetes: decision Events are written again');
          this.failing = false;
        },
        (err: unknown) => {
          // Said once until it works again: a flapping API server must not flood the log.
          if (!this.failing) this.events.warn(`kubernetes: writing a decision as an Event: ${describeError(err)}`);
          this.failing = true;
        },
      );
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }
}
