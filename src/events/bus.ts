/**
 * What the core tells the world. Modules emit; metrics/ and logging listen.
 * Nothing in the core ever calls metrics directly.
 */
import { EventEmitter } from 'node:events';
import type { Decision } from '../records/decision.js';
import type { HandoverCounts } from '../records/handover.js';
import type { HandoverReport } from '../records/migration-report.js';

/** Why a request to the control API over the network was refused. */
export type ApiRefusal = 'no-token' | 'wrong-token' | 'tls-handshake';

/**
 * Why a peer's message was refused although its TLS handshake passed
 * (peer/identity.ts, cluster/peer-sync.ts): a certificate that names no node
 * (`no-identity`); an announcement of another node (`not-its-node`) or at an
 * address its certificate does not name (`not-its-address`); a step of a
 * migration another node prepared (`not-its-migration`); a sequence number
 * too far ahead of this node's clock (`seq-ahead`); an answer to our
 * announcement that speaks for another node or address than the one called
 * (`answer-mismatch`).
 */
export type PeerRefusal = 'no-identity' | 'not-its-node' | 'not-its-address' | 'not-its-migration' | 'seq-ahead' | 'answer-mismatch';
export const PEER_REFUSALS: readonly PeerRefusal[] = ['no-identity', 'not-its-node', 'not-its-address', 'not-its-migration', 'seq-ahead', 'answer-mismatch'];

export interface AgentEvents {
  'overlay.reconciled': { added: number; removed: number; errors: number; durationMs: number };
  'overlay.fdb_write': { op: 'ensure' | 'delete'; table: 'self' | 'master'; ok: boolean };
  'overlay.error': { message: string };
  'peer.sync': { node: string; ok: boolean; durationMs: number };
  /** a peer connection that failed the TLS handshake (no certificate, or one the cluster CA did not sign) */
  'peer.tls-refused': { from: string; reason: string };
  /** a peer's request or answer refused past the handshake: `peer` is who it says or its certificate says it is, `from` its address */
  'peer.refused': { peer: string; from: string; reason: PeerRefusal };
  /** a request to the control API over the network refused: no or a wrong token, or a failed TLS handshake */
  'api.refused': { from: string; reason: ApiRefusal };
  'peer.joined': { node: string; address: string };
  'endpoint.started': { name: string; ip: string };
  'endpoint.stopped': { name: string };
  'endpoint.exited': { name: string; status: string };
  'migration.phase': { id: string; name: string; phase: string; state: 'started' | 'done'; ms: number };
  'migration.finished': { report: HandoverReport };
  /** the target's view: an arrival ended, switched (success) or aborted (rolled_back) */
  'migration.arrival': { id: string; name: string; mode: string; result: 'success' | 'rolled_back' };
  /** the target's view: what the handover delivered and kicked when the service came back */
  'migration.handover': { id: string; name: string; counts: HandoverCounts };
  /** post-copy: progress of the target's pull, and its end */
  'migration.pull': { id: string; name: string; state: 'progress' | 'complete' | 'incomplete'; lazyBytes: number; pulledBytes: number; durationMs: number };
  /** per active restored connection: what its client felt (frozen window + time until its data came back) */
  'migration.stall': { id: string; name: string; stallsMs: number[]; idle: number };
  /** a policy decided something about an endpoint here: a move, a preparation, a withdrawal, or why not */
  'policy.decision': { decision: Decision };
  log: { level: 'info' | 'warn' | 'error'; message: string };
}

type Listener<K extends keyof AgentEvents> = (payload: AgentEvents[K]) => void;

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(50);
  }

  emit<K extends keyof AgentEvents>(event: K, payload: AgentEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  on<K extends keyof AgentEvents>(event: K, listener: Listener<K>): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  info(message: string): void {
    this.emit('log', { level: 'info', message });
  }

  warn(message: string): void {
    this.emit('log', { level: 'warn', message });
  }

  error(message: string): void {
    this.emit('log', { level: 'error', message });
  }
}
