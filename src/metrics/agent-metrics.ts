/**
 * The agent's Prometheus series, on its own Registry. Fed only by events and
 * by read-only gauges; the core never calls in here.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventBus } from '../events/bus.js';

export interface MetricsSources {
  node: string;
  version: string;
  peersKnown: () => number;
  peersReachable: () => number;
  endpointsLocal: () => number;
}

export function createAgentMetrics(events: EventBus, src: MetricsSources): Registry {
  const registry = new Registry();
  new Gauge({ name: 'roam_build_info', help: 'Build information; always 1.', labelNames: ['version', 'node'], registers: [registry] }).set({ version: src.version, node: src.node }, 1);
  new Gauge({ name: 'roam_peers_known', help: 'Peer nodes this agent knows of.', registers: [registry], collect() { this.set(src.peersKnown()); } });
  new Gauge({ name: 'roam_peers_reachable', help: 'Peer nodes that answered the last exchange.', registers: [registry], collect() { this.set(src.peersReachable()); } });
  new Gauge({ name: 'roam_endpoints_local', help: 'Endpoints living on this node.', registers: [registry], collect() { this.set(src.endpointsLocal()); } });
  const fdbWrites = new Counter({ name: 'roam_fdb_writes_total', help: 'FDB writes by operation, table and result.', labelNames: ['op', 'table', 'result'], registers: [registry] });
  const reconcileErrors = new Counter({ name: 'roam_reconcile_errors_total', help: 'Failed writes or reads during overlay reconciliation.', registers: [registry] });
  const reconcileSeconds = new Histogram({
    name: 'roam_reconcile_duration_seconds',
    help: 'Time for one overlay reconcile run.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const peerSyncs = new Counter({ name: 'roam_peer_syncs_total', help: 'Announcement exchanges with peers by result.', labelNames: ['result'], registers: [registry] });
  events.on('overlay.fdb_write', (e) => fdbWrites.inc({ op: e.op, table: e.table, result: e.ok ? 'ok' : 'error' }));
  events.on('overlay.reconciled', (e) => {
    reconcileSeconds.observe(e.durationMs / 1000);
    if (e.errors > 0) reconcileErrors.inc(e.errors);
  });
  events.on('peer.sync', (e) => peerSyncs.inc({ result: e.ok ? 'ok' : 'error' }));
  return registry;
}
