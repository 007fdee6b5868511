/**
 * The policies' series: what they observe (where each endpoint's traffic
 * enters the overlay, its clients' RTT), what they decided, and the node's
 * maintenance state. Read from the planner when scraped, or fed by events.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EventBus } from '../events/bus.js';

export interface PolicyView {
  /** cumulative bytes per endpoint and entry node (a node name, or "local") since the agent started */
  ingress: { endpoint: string; via: string; bytes: number }[];
  rttMs: { endpoint: string; ms: number }[];
  draining: boolean;
  preparedAhead: number;
}

export function registerPolicyMetrics(registry: Registry, events: EventBus, view: () => PolicyView | undefined): void {
  new Gauge({
    name: 'roam_endpoint_ingress_bytes', labelNames: ['endpoint', 'via'], registers: [registry],
    help: 'Bytes sent to a local endpoint since the agent started, by the node where they entered the overlay (via: its name, or local for clients on this node). A counter in meaning; a gauge because endpoints come and go.',
    collect() {
      this.reset();
      for (const i of view()?.ingress ?? []) this.set({ endpoint: i.endpoint, via: i.via }, i.bytes);
    },
  });
  new Gauge({
    name: 'roam_endpoint_client_rtt_seconds', labelNames: ['endpoint'], registers: [registry],
    help: "Median smoothed round-trip time of a local endpoint's TCP connections (what its clients see), from tcp_info.",
    collect() {
      this.reset();
      for (const r of view()?.rttMs ?? []) this.set({ endpoint: r.endpoint }, r.ms / 1000);
    },
  });
  new Gauge({ name: 'roam_node_draining', help: '1 while this node is marked for maintenance (its endpoints leave it).', registers: [registry], collect() { this.set(view()?.draining ? 1 : 0); } });
  new Gauge({
    name: 'roam_migrations_prepared_ahead', help: 'Predicted moves whose target is prepared, waiting for the move.', registers: [registry],
    collect() { this.set(view()?.preparedAhead ?? 0); },
  });
  const decisions = new Counter({
    name: 'roam_policy_decisions_total', labelNames: ['policy', 'outcome', 'code'], registers: [registry],
    help: 'Policy decisions about local endpoints: moved, prepared, withdrawn or declined, and why (code).',
  });
  events.on('policy.decision', ({ decision: d }) => decisions.inc({ policy: d.policy, outcome: d.outcome, code: d.code }));
}
