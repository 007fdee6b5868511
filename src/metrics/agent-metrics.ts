/**
 * The agent's Prometheus series, on its own Registry. Fed only by events and
 * by read-only gauges; the core never calls in here.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PEER_REFUSALS, type EventBus } from '../events/bus.js';

export interface MetricsSources {
  node: string;
  version: string;
  peersKnown: () => number;
  peersReachable: () => number;
  endpointsLocal: () => number;
  migrationsInFlight: () => { source: number; target: number };
  /** migrations waiting for a slot on this node (as their source) */
  migrationsQueued: () => number;
}

/** Handover times: a few ms (zero-wait goals) to tens of seconds (stop-copy of large memory). */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Image sizes: 1 MiB to 16 GiB, by powers of four. */
const BYTES_BUCKETS = Array.from({ length: 8 }, (_, i) => 2 ** (20 + 2 * i));
const CONNECTION_BUCKETS = [0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000];

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
  const tlsRefused = new Counter({ name: 'roam_peer_tls_refusals_total', help: 'Connections refused at the TLS handshake (no certificate, or one the cluster CA did not sign), on the peer port or a CRIU page server.', registers: [registry] });
  tlsRefused.inc(0);
  events.on('peer.tls-refused', () => tlsRefused.inc());
  const peerRefused = new Counter({
    name: 'roam_peer_refusals_total',
    help: "Peer messages refused past the TLS handshake, by reason: a certificate naming no node (no-identity), an announcement of another node (not-its-node) or address (not-its-address), a step of another node's migration (not-its-migration), a sequence from the future (seq-ahead), an answer for another node (answer-mismatch).",
    labelNames: ['reason'], registers: [registry],
  });
  for (const reason of PEER_REFUSALS) peerRefused.inc({ reason }, 0);
  events.on('peer.refused', ({ reason }) => peerRefused.inc({ reason }));
  const apiRefused = new Counter({
    name: 'roam_api_refusals_total', help: 'Requests to the control API over the network refused, by reason (no-token, wrong-token, tls-handshake).', labelNames: ['reason'], registers: [registry],
  });
  for (const reason of ['no-token', 'wrong-token', 'tls-handshake']) apiRefused.inc({ reason }, 0);
  events.on('api.refused', ({ reason }) => apiRefused.inc({ reason }));

  new Gauge({
    name: 'roam_migrations_in_flight', help: 'Migrations under way, as source or as target.', labelNames: ['role'], registers: [registry],
    collect() {
      const n = src.migrationsInFlight();
      this.set({ role: 'source' }, n.source);
      this.set({ role: 'target' }, n.target);
    },
  });
  new Gauge({ name: 'roam_migrations_queued', help: 'Migrations waiting for a slot on this node (migration.maxConcurrent), as their source.', registers: [registry], collect() { this.set(src.migrationsQueued()); } });
  const migrations = new Counter({ name: 'roam_migrations_total', help: 'Finished migrations by role, mode and result (success, rolled_back, failed).', labelNames: ['role', 'mode', 'result'], registers: [registry] });
  const frozen = new Histogram({ name: 'roam_migration_frozen_seconds', help: 'Time the service was frozen, from the dump to the unlock on the target.', labelNames: ['mode'], buckets: SECONDS_BUCKETS, registers: [registry] });
  const phase = new Histogram({ name: 'roam_migration_phase_seconds', help: 'Duration of each phase of a migration.', labelNames: ['phase'], buckets: SECONDS_BUCKETS, registers: [registry] });
  const imageBytes = new Histogram({ name: 'roam_migration_image_bytes', help: 'Checkpoint image bytes moved per migration.', buckets: BYTES_BUCKETS, registers: [registry] });
  const connections = new Histogram({ name: 'roam_migration_tcp_connections', help: 'Established TCP connections carried per migration.', buckets: CONNECTION_BUCKETS, registers: [registry] });
  const fileBytes = new Counter({
    name: 'roam_migration_file_bytes_total',
    help: "Containers' file bytes (root filesystem changes, volumes) sent by migrations from this node: while the container ran (presync), or in the freeze (frozen).",
    labelNames: ['when'], registers: [registry],
  });
  for (const when of ['presync', 'frozen']) fileBytes.inc({ when }, 0);
  for (const role of ['source', 'target']) for (const result of ['success', 'rolled_back', 'failed']) migrations.inc({ role, mode: 'stop-copy', result }, 0);
  events.on('migration.finished', ({ report }) => {
    migrations.inc({ role: 'source', mode: report.mode, result: report.result });
    if (report.result !== 'success') return;
    frozen.observe({ mode: report.mode }, report.frozen_ms / 1000);
    for (const [name, ms] of Object.entries(report.phases)) phase.observe({ phase: name.replace(/_ms$/, '') }, ms / 1000);
    imageBytes.observe(report.image_bytes);
    connections.observe(report.tcp_connections);
    if (report.files) {
      fileBytes.inc({ when: 'presync' }, report.files.presync_bytes);
      fileBytes.inc({ when: 'frozen' }, report.files.frozen_bytes);
    }
  });
  events.on('migration.arrival', (e) => migrations.inc({ role: 'target', mode: e.mode, result: e.result }));
  const stall = new Histogram({
    name: 'roam_migration_client_stall_seconds',
    help: "Per restored connection with an active client: the frozen window plus the time until the client's data arrived again, from the restored socket's tcp_info.",
    buckets: SECONDS_BUCKETS, registers: [registry],
  });
  const idle = new Counter({ name: 'roam_migration_idle_connections_total', help: 'Restored connections whose client sent nothing within 3 s of the unlock (idle, not stalled).', registers: [registry] });
  const handoverPackets = new Counter({
    name: 'roam_handover_packets_total',
    help: 'Packets the locks dropped during freezes, by what became of them: held (kept), replayed (delivered to the restored service), refused (kept but not exact or not its), not_held (over budget or lost on the way to the keeper).',
    labelNames: ['outcome'], registers: [registry],
  });
  const handoverConnections = new Counter({
    name: 'roam_handover_connections_total',
    help: 'Restored connections by what the handover did for them: replayed (had packets delivered), kicked (challenge ACK sent to the client), fallback (left to plain retransmission).',
    labelNames: ['outcome'], registers: [registry],
  });
  events.on('migration.handover', ({ counts }) => {
    handoverPackets.inc({ outcome: 'held' }, counts.packets_held);
    handoverPackets.inc({ outcome: 'replayed' }, counts.packets_replayed);
    handoverPackets.inc({ outcome: 'refused' }, counts.packets_refused);
    handoverPackets.inc({ outcome: 'not_held' }, counts.packets_not_held);
    handoverConnections.inc({ outcome: 'replayed' }, counts.connections_replayed);
    handoverConnections.inc({ outcome: 'kicked' }, counts.connections_kicked);
    handoverConnections.inc({ outcome: 'fallback' }, counts.connections_fallback);
  });
  events.on('migration.stall', (e) => {
    for (const ms of e.stallsMs) stall.observe(ms / 1000);
    idle.inc(e.idle);
  });

  // Post-copy: the pull after the switch, while the service depends on the source node.
  const pulls = new Counter({ name: 'roam_postcopy_pulls_total', help: 'Post-copy pulls that ended, by result: complete (the target has every page) or incomplete (the service was lost).', labelNames: ['result'], registers: [registry] });
  for (const result of ['complete', 'incomplete']) pulls.inc({ result }, 0);
  const pullSeconds = new Histogram({ name: 'roam_postcopy_pull_seconds', help: 'Post-copy: from the unlock on the target until it had every page.', buckets: SECONDS_BUCKETS, registers: [registry] });
  const pulledBytes = new Counter({ name: 'roam_postcopy_pulled_bytes_total', help: 'Post-copy: memory bytes the targets acknowledged pulling from this node.', registers: [registry] });
  const pulling = new Map<string, { lazy: number; pulled: number }>();
  new Gauge({
    name: 'roam_postcopy_pull_remaining_bytes', help: 'Post-copy pulls under way from this node: memory the targets have not pulled yet (the service needs this node until it is 0).', registers: [registry],
    collect() {
      let remaining = 0;
      for (const p of pulling.values()) remaining += Math.max(0, p.lazy - p.pulled);
      this.set(remaining);
    },
  });
  new Gauge({ name: 'roam_postcopy_pulls_in_flight', help: 'Post-copy pulls under way from this node.', registers: [registry], collect() { this.set(pulling.size); } });
  events.on('migration.pull', (e) => {
    if (e.state === 'progress') {
      pulling.set(e.id, { lazy: e.lazyBytes, pulled: e.pulledBytes });
      return;
    }
    pulling.delete(e.id);
    pulls.inc({ result: e.state });
    pulledBytes.inc(e.pulledBytes);
    if (e.state === 'complete') pullSeconds.observe(e.durationMs / 1000);
  });
  return registry;
}
