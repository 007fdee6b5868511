/**
 * The agent's policy loop: once per interval it observes this node's
 * endpoints (observer.ts), asks the engine what to do (engine.ts), and does
 * it through the migration source — a move, a preparation ahead of a
 * predicted move, or the withdrawal of one. Every decision, taken or
 * declined, is kept (the latest few hundred), emitted as an event (metrics,
 * the log, Kubernetes Events) and readable through the control API.
 */
import type { EndpointRecord } from '../records/endpoint.js';
import type { LocationTable } from '../cluster/locations.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { MigrationSource } from '../migration/source.js';
import { PolicyEngine, type Action } from './engine.js';
import type { Decision } from '../records/decision.js';
import type { TrafficObserver } from './observer.js';
import type { EndpointPolicy } from '../records/policy.js';

export interface PlannerDeps {
  self: string;
  intervalMs: number;
  /** the policy of endpoints that have none of their own (every policy here is whole: the schema's defaults were filled where it came in) */
  defaultPolicy: EndpointPolicy;
  table: LocationTable;
  manager: { records(): EndpointRecord[]; stored(name: string): StoredEndpoint | undefined };
  source: Pick<MigrationSource, 'start' | 'prepareAhead' | 'withdrawAhead' | 'preparedAhead' | 'isMoving'>;
  observer: TrafficObserver;
  events: EventBus;
  draining: () => boolean;
}

const KEEP_DECISIONS = 500;

export class PolicyPlanner {
  private readonly engine = new PolicyEngine();
  private readonly hereSince = new Map<string, number>();
  private readonly recent: Decision[] = [];
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;

  constructor(private readonly d: PlannerDeps) {}

  start(): void {
    this.timer = setInterval(() => void this.runRound(), this.d.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
    this.d.observer.close();
  }

  /** The latest decisions of this node, oldest first. */
  decisions(): Decision[] {
    return [...this.recent];
  }

  /** One round now (rounds never overlap: a call during one waits for it). */
  runRound(): Promise<void> {
    this.round ??= this.observeAndDecide().finally(() => {
      this.round = undefined;
    });
    return this.round;
  }

  private async observeAndDecide(): Promise<void> {
    const d = this.d;
    try {
      const now = Date.now();
      // Pods are the kubelet's: they are observed nowhere and moved by no policy.
      const local = d.manager.records().filter((r) => r.state === 'running' && !d.manager.stored(r.name)?.pod);
      const peers = d.table.peers();
      await d.observer.observe(now, local.map((r) => ({ name: r.name, ip: r.ip, mac: r.mac, netns: r.netns })), peers.map((p) => ({ node: p.node, address: p.address })));
      for (const name of [...this.hereSince.keys()]) if (!local.some((r) => r.name === name)) this.hereSince.delete(name);
      for (const r of local) if (!this.hereSince.has(r.name)) this.hereSince.set(r.name, now);
      // A preparation for an endpoint that left (or stopped) some other way is given up.
      for (const p of d.source.preparedAhead()) if (!local.some((r) => r.name === p.name)) d.source.withdrawAhead(p.name);
      const actions = this.engine.evaluate({
        now, self: d.self, selfDraining: d.draining(),
        endpoints: local.map((r) => ({
          name: r.name, policy: d.manager.stored(r.name)?.policy ?? d.defaultPolicy, hereSince: this.hereSince.get(r.name)!,
          moving: d.source.isMoving(r.name), rttMs: d.observer.rttMs(r.name),
        })),
        peers: peers.map((p) => ({ node: p.node, reachable: p.reachable, draining: p.draining === true, endpoints: p.endpoints.length })),
        rates: (name, windowMs) => d.observer.window.rates(name, now, windowMs),
      });
      for (const a of actions) this.act(a);
    } catch (err) {
      d.events.warn(`policy round: ${describeError(err)}`);
    }
  }

  private record(decision: Decision): void {
    this.recent.push(decision);
    if (this.recent.length > KEEP_DECISIONS) this.recent.shift();
    this.d.events.emit('policy.decision', { decision });
    const to = decision.to ? ` (${decision.to})` : '';
    this.d.events.info(`policy ${decision.policy} for ${decision.endpoint}: ${decision.outcome}${to}, ${decision.reason}`);
  }

  private act(a: Action): void {
    if (a.kind !== 'move') this.record(a.decision);
    try {
      switch (a.kind) {
        case 'move': {
          let started: ReturnType<PlannerDeps['source']['start']>;
          try {
            started = this.d.source.start({ name: a.endpoint, to: a.to, mode: undefined, handover: 'full', presync: true });
            a.decision.migration = started.id;
          } finally {
            this.record(a.decision);
          }
          void started.done.then(
            (r) => this.d.events.info(`policy move of ${a.endpoint} to ${a.to} (${started.id}): ${r.result}${r.reason ? `, ${r.reason}` : ''}`),
            (err: unknown) => this.d.events.warn(`policy move of ${a.endpoint} to ${a.to}: ${describeError(err)}`),
          );
          return;
        }
        case 'prepare':
          void this.d.source.prepareAhead(a.endpoint, a.to).ready.catch(() => undefined); // its failure is said by the source
          return;
        case 'withdraw':
          this.d.source.withdrawAhead(a.endpoint);
          return;
        case 'decline':
          return;
      }
    } catch (err) {
      // Refused at once (the endpoint began moving by hand, the target just became unreachable): the next round sees again.
      this.d.events.warn(`policy ${a.decision.policy} for ${a.endpoint}: ${a.kind} refused: ${describeError(err)}`);
    }
  }
}
