/**
 * Keeps a RoamEndpoint resource for every endpoint, written by the node it
 * runs on: its IP and MAC (spec) and where it runs, at which generation
 * (status). Level-triggered: every local change and every resync compares
 * what runs here with what the API server records and writes the
 * difference, each write conditioned on the resourceVersion it read (a 409
 * waits for the next round, which sees the newer object).
 *
 * A record that names this node for an endpoint no longer here is left to
 * the endpoint's new node when the cluster knows it elsewhere at least as
 * new (a migration), and deleted only when it runs nowhere (stopped).
 */
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { EndpointRecord } from '../records/endpoint.js';
import { isConflict, isNotFound, type KubeClient, type Watcher } from './client.js';
import { Rounds } from '../cluster/rounds.js';
import { API_VERSION, ENDPOINT_KIND, GROUP, type RoamEndpointResource, type RoamEndpointSpec, type RoamEndpointStatus } from './resources.js';

export interface LocalEndpoint extends EndpointRecord {
  container: boolean;
  pod?: { namespace: string; name: string } | undefined;
}

export interface EndpointRecordsDeps {
  node: string;
  /** what runs on this node */
  local: () => LocalEndpoint[];
  /** what the cluster knows, all nodes (the location table) */
  cluster: () => EndpointRecord[];
  resyncMs: number;
  events: EventBus;
}

export class EndpointRecords {
  private watcher: Watcher<RoamEndpointResource> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly rounds = new Rounds(() => this.once());

  constructor(private readonly k: KubeClient, private readonly d: EndpointRecordsDeps) {}

  start(): void {
    this.watcher = this.k.watchCustom<RoamEndpointResource>(ENDPOINT_KIND, {
      // What another writer changed about this node's endpoints is compared again (also how a lost race is retried).
      changed: (o) => this.concernsUs(o) && void this.sync(),
      deleted: (o) => this.concernsUs(o) && void this.sync(),
      error: (reason) => this.d.events.warn(`kubernetes: ${reason}; retrying`),
      reconnected: () => void this.sync(),
    });
    void this.watcher.synced.then(() => this.sync());
    this.timer = setInterval(() => void this.sync(), this.d.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.watcher?.stop();
  }

  private concernsUs(o: RoamEndpointResource): boolean {
    return o.status?.node === this.d.node || this.d.local().some((e) => e.name === o.metadata?.name);
  }

  /** One round now; calls during a round coalesce into one more after it. Resolves when the records match what ran here when it was called. */
  sync(): Promise<void> {
    return this.rounds.run();
  }

  private async once(): Promise<void> {
    if (!this.watcher) return;
    const local = this.d.local();
    for (const ep of local) await this.guard(ep.name, () => this.write(ep, this.watcher!.get(ep.name)));
    const here = new Set(local.map((e) => e.name));
    for (const rec of this.watcher.list()) {
      const name = rec.metadata?.name ?? '';
      if (here.has(name) || rec.status?.node !== this.d.node) continue;
      const elsewhere = this.d.cluster().find((e) => e.name === name && e.node !== this.d.node);
      if (elsewhere && elsewhere.generation >= (rec.status?.generation ?? 0)) continue;
      await this.guard(name, () => this.k.deleteCustom(ENDPOINT_KIND, name, rec.metadata?.resourceVersion ?? ''));
    }
  }

  private async write(ep: LocalEndpoint, current: RoamEndpointResource | undefined): Promise<void> {
    const spec: RoamEndpointSpec = { ip: ep.ip, mac: ep.mac };
    const status: RoamEndpointStatus = {
      node: this.d.node, generation: ep.generation, state: ep.state, container: ep.container,
      ...(ep.pod ? { pod: { namespace: ep.pod.namespace, name: ep.pod.name } } : {}),
    };
    let obj = current;
    if (!obj) {
      obj = await this.k.createCustom<RoamEndpointResource>(ENDPOINT_KIND, { apiVersion: `${GROUP}/${API_VERSION}`, kind: 'RoamEndpoint', metadata: { name: ep.name }, spec });
    } else if ((obj.status?.generation ?? 0) > ep.generation) {
      return; // a newer copy of it is recorded: its node writes
    } else if (JSON.stringify(obj.spec) !== JSON.stringify(spec)) {
      obj = await this.k.replaceCustom(ENDPOINT_KIND, { ...obj, spec });
    }
    if (JSON.stringify(obj.status) === JSON.stringify(status)) return;
    await this.k.replaceCustomStatus(ENDPOINT_KIND, { ...obj, status });
  }

  /** A lost race (409) or a record gone meanwhile (404) waits for the round the watch starts; anything else is said. */
  private async guard(name: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return; // the watch brings the newer object, and with it another round
      this.d.events.warn(`kubernetes: endpoint record ${name}: ${describeError(err)}`);
    }
  }
}
