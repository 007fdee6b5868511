/**
 * What the policies look at, read from the kernel once per round: where each
 * local endpoint's traffic enters the overlay (sys/ingress-counters.ts,
 * kept as rates in a TrafficWindow) and what RTT its TCP connections have
 * (tcp_info through sock_diag, in the endpoint's namespace).
 */
import { describeError } from '../errors/roam-error.js';
import { LOCAL_VIA } from '../records/traffic.js';
import { readIngressCounters, removeIngressCounters, writeIngressCounters, type IngressRuleSet } from '../sys/ingress-counters.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { TrafficWindow, type TrafficSample } from './traffic-window.js';

export interface ObservedEndpoint {
  name: string;
  ip: string;
  mac: string;
  netns: string | undefined;
}

export class TrafficObserver {
  readonly window = new TrafficWindow();
  private written: string | undefined;
  private readonly rtts = new Map<string, number>();

  constructor(
    /** the agent's own namespace, where its VXLAN device and bridge are */
    private readonly netns: string,
    private readonly devices: { vxlanPort: number; vxlanDevice: string },
    private readonly warn: (message: string) => void,
  ) {}

  /**
   * One round: reads the counters, then (if the endpoints or peers changed)
   * rewrites the rules, whose counters start again from zero.
   */
  async observe(now: number, endpoints: ObservedEndpoint[], peers: { node: string; address: string }[]): Promise<void> {
    const set: IngressRuleSet = { ...this.devices, endpoints: endpoints.map((e) => ({ name: e.name, ip: e.ip, mac: e.mac })), peers };
    const key = JSON.stringify(set);
    const samples: TrafficSample[] = this.written === undefined ? [] : this.readCounters();
    // Endpoints without a counter yet are still present: absent ones are forgotten by the window.
    const counted = new Set(samples.map((s) => s.endpoint));
    for (const e of endpoints) if (!counted.has(e.name)) samples.push({ endpoint: e.name, via: LOCAL_VIA, bytes: 0 });
    this.window.record(now, samples);
    if (key !== this.written) {
      writeIngressCounters(this.netns, set);
      this.written = key;
      this.window.rebase();
    }
    await Promise.all(endpoints.map(async (e) => {
      if (!e.netns) return this.rtts.delete(e.name);
      try {
        const rtts = (await listTcpConnections(e.netns)).map((c) => c.rttMs).filter((r) => r > 0).sort((a, b) => a - b);
        if (rtts.length === 0) this.rtts.delete(e.name);
        else this.rtts.set(e.name, rtts[Math.floor((rtts.length - 1) / 2)]!);
      } catch (err) {
        // An endpoint that is leaving (its namespace gone mid-read) is no reason to stop observing the rest.
        this.rtts.delete(e.name);
        this.warn(`observing ${e.name}'s connections: ${describeError(err)}`);
      }
    }));
    for (const name of [...this.rtts.keys()]) if (!endpoints.some((e) => e.name === name)) this.rtts.delete(name);
  }

  /** The counters as they are; tables that went (someone flushed the ruleset) are written again this round. */
  private readCounters(): TrafficSample[] {
    try {
      return readIngressCounters(this.netns).map((c) => ({ endpoint: c.endpoint, via: c.via, bytes: c.bytes }));
    } catch (err) {
      this.warn(`reading the ingress counters: ${describeError(err)}; writing them again`);
      this.written = undefined;
      return [];
    }
  }

  /** The median smoothed RTT of each endpoint's TCP connections, ms (those with connections). */
  rttsMs(): [string, number][] {
    return [...this.rtts];
  }

  /** The median smoothed RTT of the endpoint's TCP connections, ms (none without connections). */
  rttMs(name: string): number | undefined {
    return this.rtts.get(name);
  }

  close(): void {
    if (this.written === undefined) return;
    try {
      removeIngressCounters(this.netns);
    } catch (err) {
      this.warn(`removing the ingress counters: ${describeError(err)}`);
    }
    this.written = undefined;
  }
}
