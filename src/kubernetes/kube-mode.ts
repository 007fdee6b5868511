/**
 * The agent's Kubernetes mode (config `kubernetes`): the API server is the
 * source of truth for membership (Node objects), for migration requests
 * (Migration resources), for which pods get a mobile IP (Pod annotations,
 * named by EndpointSlices) and for the record of where endpoints live
 * (RoamEndpoint resources). Joins in two steps because the node's overlay
 * range, claimed from the cluster, is needed before the endpoints can be.
 */
import { DecisionEvents } from './decision-events.js';
import type { LocationTable } from '../cluster/locations.js';
import type { AgentConfig } from '../config/schema.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { EventBus } from '../events/bus.js';
import { VERSION } from '../version.js';
import { KubeClient } from './client.js';
import { EndpointRecords } from './endpoint-records.js';
import { MigrationController, type MigrationRunner } from './migration-controller.js';
import { NodeDiscovery } from './node-discovery.js';
import { PodEndpoints } from './pod-endpoints.js';

export class KubernetesMode {
  private readonly client: KubeClient;
  private readonly discovery: NodeDiscovery;
  private records: EndpointRecords | undefined;
  private migrations: MigrationController | undefined;
  private pods: PodEndpoints | undefined;
  private decisions: DecisionEvents | undefined;

  constructor(
    private readonly c: Readonly<AgentConfig> & { kubernetes: NonNullable<AgentConfig['kubernetes']> }, private readonly table: LocationTable, private readonly events: EventBus, client?: KubeClient,
    /** the node was cordoned or uncordoned */
    onCordon?: (cordoned: boolean) => void,
  ) {
    this.client = client ?? KubeClient.connect(c.kubernetes.kubeconfig);
    this.discovery = new NodeDiscovery(this.client, table, {
      node: c.node, vtep: c.underlay.address, subnet: c.overlay.subnet, rangePrefixLength: c.kubernetes.rangePrefixLength,
      fixedRange: c.overlay.range, version: VERSION, events, ...(onCordon ? { onCordon } : {}),
    });
  }

  /** Publishes this node, learns the others; resolves with this node's overlay range. */
  join(): Promise<string> {
    return this.discovery.start();
  }

  /** Starts recording endpoints and running Migrations, once the node can run them. */
  run(manager: EndpointManager, runner: MigrationRunner): void {
    const node = this.c.node;
    this.records = new EndpointRecords(this.client, {
      node,
      local: () => manager.records().map((r) => {
        const stored = manager.stored(r.name);
        return { ...r, container: stored?.container !== undefined, pod: stored?.pod };
      }),
      cluster: () => this.table.endpoints(),
      resyncMs: this.c.kubernetes.resyncMs,
      events: this.events,
    });
    this.records.start();
    manager.onChange(() => void this.records?.sync());
    this.migrations = new MigrationController(this.client, {
      node, runner,
      hosts: (name) => manager.has(name),
      whereIs: (name) => this.table.endpoints().find((e) => e.name === name)?.node ?? '',
      resyncMs: this.c.kubernetes.resyncMs,
      events: this.events,
    });
    this.migrations.start();
    this.pods = new PodEndpoints(this.client, {
      node, runtimeRoot: this.c.kubernetes.runtimeRoot, host: manager, resyncMs: this.c.kubernetes.resyncMs, events: this.events,
    });
    this.pods.start();
    this.decisions = new DecisionEvents(this.client, node, this.events);
    this.decisions.start();
  }

  stop(): void {
    this.decisions?.stop();
    this.pods?.stop();
    this.migrations?.stop();
    this.records?.stop();
    this.discovery.stop();
  }
}
