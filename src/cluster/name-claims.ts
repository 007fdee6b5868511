/**
 * An endpoint name is the cluster's: two nodes asked at the same moment to
 * create `web` must not both do it, whatever each one's view of the others
 * says (views are seconds old). So a node claims the name before it
 * creates the endpoint, from itself and from every peer it knows, and goes
 * on only with a majority of all the nodes it knows, itself included.
 *
 * Each node grants a name to one claimant at a time: refused where an
 * endpoint of that name already runs on another node (its table), or where
 * another node's claim on it is still held. A claim is given back once the
 * endpoint is created and its announcement has reached the peers (from then
 * on their tables answer for it), or once its create failed; a claimant
 * that dies meanwhile loses it after 30 s (longer than a create takes). Two
 * claims at once cannot both reach a majority, since every node grants one;
 * both may fail (two nodes only: each refuses the other), and are said to
 * be racing, so the user asks again. Any answer that the endpoint exists
 * settles it at once. Too few answers (peers down) refuse the create: the
 * name cannot be known to be free.
 */
import { RoamError } from '../errors/roam-error.js';
import type { NameClaimAnswer, NameClaimBody } from '../records/name-claim.js';

export const CLAIM_TTL_MS = 30000;

/** The peers a claim asks (peer/client.ts). */
export interface NameClaimPeers {
  claimName(address: string, body: NameClaimBody): Promise<NameClaimAnswer>;
  releaseName(address: string, body: NameClaimBody): Promise<void>;
}

/** The claims this node has granted, and its answer to a new one. */
export class NameClaims {
  private readonly held = new Map<string, { node: string; until: number }>();

  constructor(
    /** the node an endpoint `name` runs on, as this node knows it */
    private readonly ownerOf: (name: string) => string | undefined,
    private readonly ttlMs = CLAIM_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  answer(name: string, node: string): NameClaimAnswer {
    const owner = this.ownerOf(name);
    if (owner !== undefined && owner !== node) return { granted: false, holder: owner, exists: true };
    const now = this.now();
    for (const [n, c] of this.held) if (c.until <= now) this.held.delete(n);
    const claim = this.held.get(name);
    if (claim && claim.node !== node) return { granted: false, holder: claim.node, exists: false };
    this.held.set(name, { node, until: now + this.ttlMs });
    return { granted: true };
  }

  release(name: string, node: string): void {
    if (this.held.get(name)?.node === node) this.held.delete(name);
  }
}

/** A name claimed across the cluster: give it back when the create failed, or say the endpoint was made. */
export interface ClaimedName {
  release(): void;
  /** the endpoint runs: the claim goes once `announce` (the announcement to the peers) has ended */
  created(announce: () => Promise<void>): void;
}

/**
 * Claims `name` for `self` across the cluster (this node's own claims and
 * `peers`); resolves with the claim, or refuses with CONFLICT (it exists, or
 * another node is creating it) or PEER_UNREACHABLE (too few nodes answered).
 */
export async function claimName(name: string, self: string, mine: NameClaims, peers: readonly { node: string; address: string }[], ask: NameClaimPeers): Promise<ClaimedName> {
  const body = { name, node: self };
  const own = mine.answer(name, self);
  if (!own.granted) throw refusal(name, own);
  const answers = await Promise.all(peers.map(async (p) => {
    try {
      return { peer: p, answer: await ask.claimName(p.address, body) };
    } catch (err) {
      return { peer: p, error: err instanceof Error ? err.message : String(err) };
    }
  }));
  const grantedBy = answers.filter((a) => a.answer?.granted).map((a) => a.peer);
  const release = () => {
    mine.release(name, self);
    for (const p of grantedBy) void ask.releaseName(p.address, body).catch(() => undefined);
  };
  const existing = answers.find((a) => a.answer?.exists);
  const total = peers.length + 1;
  const majority = Math.floor(total / 2) + 1;
  if (existing?.answer || grantedBy.length + 1 < majority) {
    release();
    if (existing?.answer) throw refusal(name, existing.answer);
    const racing = answers.find((a) => a.answer && !a.answer.granted)?.answer;
    if (racing) throw refusal(name, racing);
    const silent = answers.filter((a) => a.error).map((a) => `${a.peer.node} (${a.error})`);
    throw new RoamError('PEER_UNREACHABLE', `name: cannot make sure no other node has endpoint ${name}: ${grantedBy.length + 1} of ${total} nodes agreed, ${majority} are needed; no answer from ${silent.join(', ')}`);
  }
  return { release, created: (announce) => void announce().catch(() => undefined).finally(release) };
}

function refusal(name: string, a: NameClaimAnswer): RoamError {
  return a.exists
    ? new RoamError('CONFLICT', `name: endpoint ${name} already exists on ${a.holder}`)
    : new RoamError('CONFLICT', `name: endpoint ${name} is being created on ${a.holder} at this moment; ask again once it is`);
}
