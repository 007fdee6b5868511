/**
 * The policies' judgement, pure: given what the agent observes (where each
 * local endpoint's traffic enters, its clients' RTT, which nodes could take
 * it, whether this node is draining), what to do now. The planner
 * (planner.ts) feeds it once per observation and carries out its actions.
 *
 * Hysteresis lives here: follow-client needs one node's share above a
 * threshold over one half, held for sustainMs; latency needs the target
 * missed for sustainMs; both wait minDwellMs after an arrival. A decision
 * that is declined is recorded once per episode (until its condition goes
 * away), not once per observation.
 */
import type { Decision, DecisionCode, DecisionOutcome } from '../records/decision.js';
import type { EndpointPolicy, PolicyKind } from '../records/policy.js';
import { LOCAL_VIA } from '../records/traffic.js';
import type { EntryRates } from './traffic-window.js';

export interface EndpointView {
  name: string;
  policy: EndpointPolicy;
  /** when this node first saw it as its own (its arrival, or the agent's start) */
  hereSince: number;
  /** a migration of it is under way */
  moving: boolean;
  /** median smoothed RTT of its TCP connections, ms; undefined without connections */
  rttMs: number | undefined;
}

export interface NodeChoice {
  node: string;
  reachable: boolean;
  draining: boolean;
  endpoints: number;
}

export interface EvaluationInput {
  now: number;
  self: string;
  selfDraining: boolean;
  endpoints: EndpointView[];
  /** the other nodes */
  peers: NodeChoice[];
  rates: (endpoint: string, windowMs: number) => EntryRates;
}

export type Action =
  | { kind: 'move'; endpoint: string; to: string; decision: Decision }
  | { kind: 'prepare'; endpoint: string; to: string; decision: Decision }
  | { kind: 'withdraw'; endpoint: string; decision: Decision }
  /** nothing to do but record why not */
  | { kind: 'decline'; endpoint: string; decision: Decision };

/** After a move this engine asked for, how long before it asks for another of the same endpoint (one that failed leaves it here). */
export const RETRY_AFTER_MS = 15000;

interface EndpointState {
  /** follow-client: the node whose share is above threshold, and since when */
  follow?: { node: string; since: number };
  /** latency: since when the target has been missed */
  slowSince?: number;
  prepared?: string;
  lastMoveAt?: number;
  /** declines already recorded in the current episode, by policy */
  declined: Map<PolicyKind, DecisionCode>;
}

export class PolicyEngine {
  private readonly state = new Map<string, EndpointState>();

  evaluate(input: EvaluationInput): Action[] {
    const actions: Action[] = [];
    const present = new Set(input.endpoints.map((e) => e.name));
    for (const name of [...this.state.keys()]) if (!present.has(name)) this.state.delete(name);
    for (const ep of input.endpoints) {
      const st = this.state.get(ep.name) ?? { declined: new Map() };
      this.state.set(ep.name, st);
      if (ep.moving) continue;
      const action = this.evaluateOne(input, ep, st);
      if (action) actions.push(action);
    }
    return actions;
  }

  private evaluateOne(input: EvaluationInput, ep: EndpointView, st: EndpointState): Action | undefined {
    const { now } = input;
    const decide = (policy: PolicyKind, outcome: DecisionOutcome, code: DecisionCode, reason: string, to?: string): Decision =>
      ({ at: now, endpoint: ep.name, policy, outcome, code, reason, ...(to ? { to } : {}) });
    const decline = (policy: PolicyKind, code: DecisionCode, reason: string, to?: string): Action | undefined => {
      if (st.declined.get(policy) === code) return undefined;
      st.declined.set(policy, code);
      return { kind: 'decline', endpoint: ep.name, decision: decide(policy, 'declined', code, reason, to) };
    };
    const calm = (policy: PolicyKind) => st.declined.delete(policy);
    const eligible = (node: string): { ok: true } | { ok: false; code: DecisionCode; why: string } => {
      const peer = input.peers.find((p) => p.node === node);
      if (!peer) return { ok: false, code: 'no-better-node', why: `${node} is not a node of the cluster` };
      if (peer.draining) return { ok: false, code: 'target-draining', why: `${node} is draining` };
      if (!peer.reachable) return { ok: false, code: 'target-unreachable', why: `${node} is not reachable` };
      return { ok: true };
    };
    const move = (policy: PolicyKind, code: DecisionCode, to: string, reason: string): Action => {
      st.lastMoveAt = now;
      // A preparation elsewhere is given up by the source when the move starts; one here is used by it.
      st.prepared = undefined;
      st.follow = undefined;
      st.slowSince = undefined;
      st.declined.clear();
      return { kind: 'move', endpoint: ep.name, to, decision: decide(policy, 'moved', code, reason, to) };
    };
    const retryWait = st.lastMoveAt !== undefined && now - st.lastMoveAt < RETRY_AFTER_MS;
    const dwelt = now - ep.hereSince;

    // Drain: every endpoint that allows it leaves, now; nothing else is considered on a draining node.
    if (input.selfDraining) {
      if (!ep.policy.drain) return decline('drain', 'policy-keeps', `${input.self} is draining but ${ep.name}'s policy keeps it (drain: false)`);
      if (retryWait) return undefined;
      const to = drainTarget(input, ep);
      if (!to) return decline('drain', 'no-node', `${input.self} is draining and no other node can take ${ep.name} (none reachable and not draining)`);
      return move('drain', 'node-draining', to, `${input.self} is draining`);
    }
    calm('drain');

    const follow = ep.policy.followClient;
    if (follow) {
      const r = input.rates(ep.name, follow.windowMs);
      const top = r.top !== undefined && r.top !== LOCAL_VIA && r.top !== input.self ? r.top : undefined;
      // A window not yet full (the endpoint is new here, or the agent is) says too little to act on.
      const thick = r.total >= follow.minBytesPerSecond && r.spanMs >= follow.windowMs;
      const pct = (share: number) => `${Math.round(share * 100)}%`;
      // Prediction: the target is prepared while the share grows, withdrawn when it fades.
      if (st.prepared && (!thick || top !== st.prepared || r.topShare < follow.prepareShare - 0.1)) {
        const was = st.prepared;
        st.prepared = undefined;
        return { kind: 'withdraw', endpoint: ep.name, decision: decide('follow-client', 'withdrawn', 'prediction-faded', `${was} no longer carries most of the traffic (${pct((r.byVia.get(was) ?? 0) / (r.total || 1))})`, was) };
      }
      if (thick && top && r.topShare >= follow.share) {
        if (st.follow?.node !== top) st.follow = { node: top, since: now };
      } else {
        st.follow = undefined;
        calm('follow-client');
      }
      if (thick && top && ep.policy.prepare && !st.prepared && r.topShare >= follow.prepareShare && eligible(top).ok && !retryWait) {
        st.prepared = top;
        return { kind: 'prepare', endpoint: ep.name, to: top, decision: decide('follow-client', 'prepared', 'predicted', `${pct(r.topShare)} of the traffic enters at ${top}`, top) };
      }
      if (st.follow && now - st.follow.since >= follow.sustainMs) {
        const to = st.follow.node;
        const why = `${pct(r.topShare)} of its traffic has entered at ${to} for ${Math.round((now - st.follow.since) / 1000)} s`;
        const ok = eligible(to);
        if (!ok.ok) return decline('follow-client', ok.code, `${why}, but ${ok.why}`, to);
        if (dwelt < ep.policy.minDwellMs) return decline('follow-client', 'dwell', `${why}, but it arrived ${Math.round(dwelt / 1000)} s ago (minDwellMs ${ep.policy.minDwellMs})`, to);
        if (retryWait) return decline('follow-client', 'retry-wait', `${why}, but a move was asked for ${Math.round((now - st.lastMoveAt!) / 1000)} s ago`, to);
        return move('follow-client', 'client-moved', to, why);
      }
    }

    const latency = ep.policy.latency;
    if (latency) {
      if (ep.rttMs === undefined || ep.rttMs <= latency.targetMs) {
        st.slowSince = undefined;
        calm('latency');
        return undefined;
      }
      st.slowSince ??= now;
      if (now - st.slowSince < latency.sustainMs) return undefined;
      const why = `its clients' RTT has been ${ep.rttMs.toFixed(1)} ms, above ${latency.targetMs} ms, for ${Math.round((now - st.slowSince) / 1000)} s`;
      const r = input.rates(ep.name, follow?.windowMs ?? 5000);
      const top = r.top;
      if (!top || top === LOCAL_VIA || top === input.self || r.topShare <= 0.5) {
        const where = !top ? 'no traffic was counted' : top === LOCAL_VIA || top === input.self ? 'most of its traffic enters here already' : 'no node carries most of its traffic';
        return decline('latency', 'no-better-node', `${why}, but ${where}: no node is nearer its clients`);
      }
      const ok = eligible(top);
      if (!ok.ok) return decline('latency', ok.code, `${why}, but ${ok.why}`, top);
      if (dwelt < ep.policy.minDwellMs) return decline('latency', 'dwell', `${why}, but it arrived ${Math.round(dwelt / 1000)} s ago (minDwellMs ${ep.policy.minDwellMs})`, top);
      if (retryWait) return decline('latency', 'retry-wait', `${why}, but a move was asked for ${Math.round((now - st.lastMoveAt!) / 1000)} s ago`, top);
      return move('latency', 'latency-above-target', top, `${why}; most of its traffic enters at ${top}`);
    }
    return undefined;
  }
}

/** Off a draining node: where its clients are if that node can take it, else the node with the fewest endpoints. */
function drainTarget(input: EvaluationInput, ep: EndpointView): string | undefined {
  const open = input.peers.filter((p) => p.reachable && !p.draining);
  const r = input.rates(ep.name, ep.policy.followClient?.windowMs ?? 5000);
  if (r.top && open.some((p) => p.node === r.top)) return r.top;
  return [...open].sort((a, b) => a.endpoints - b.endpoints || a.node.localeCompare(b.node))[0]?.node;
}
