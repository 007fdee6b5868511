/**
 * The agent-to-agent protocol, client side: the announcements, endpoint
 * requests forwarded to their node, and a migration's steps as its source
 * drives them (the migration's TargetAgent port). Every answer is checked
 * against the wire schema before anything is believed.
 */
import type { Readable } from 'node:stream';
import type { PullOutcome } from '../checkpoint/checkpointer.js';
import { parseWithSchema } from '../config/validate.js';
import { callJson, callRaw, type TlsMaterial } from '../http/client.js';
import type { Prepared, PrepareRequest, Restored, RestoreRequest, TargetAgent } from '../migration/target-agent.js';
import { AnnounceResponse, type NodeAnnouncement } from '../records/announcement.js';
import { DecisionList, type DecisionWire } from '../records/decision.js';
import { EndpointRecord, type EndpointRecord as EndpointRecordT } from '../records/endpoint.js';
import type { CreateEndpointBody } from '../records/endpoint-requests.js';
import { HandoverCounts, ResumeMeasurement } from '../records/handover.js';
import { MigrationStatus } from '../records/migration-report.js';
import { NameClaimAnswer, type NameClaimAnswer as NameClaimAnswerT, type NameClaimBody } from '../records/name-claim.js';
import type { EndpointPolicy } from '../records/policy.js';
import { sendImages } from './image-framing.js';
import { PreparedAnswer, PullAnswer, RestoredAnswer, StartedAnswer, type MigrateBody } from './schemas.js';

export interface AnnounceResult {
  self: NodeAnnouncement;
  peers: { node: string; address: string }[];
}

export class PeerClient implements TargetAgent {
  constructor(private readonly port: number, private readonly timeoutMs = 3000, private tls?: TlsMaterial) {}

  /** A renewed certificate: the next connections present it (http/client.ts keeps connections per material). */
  useTls(tls: TlsMaterial): void {
    this.tls = tls;
  }

  private target(address: string): { host: string; port: number; tls?: TlsMaterial } {
    return { host: address, port: this.port, ...(this.tls ? { tls: this.tls } : {}) };
  }

  async announce(address: string, mine: NodeAnnouncement): Promise<AnnounceResult> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/announce', mine, { timeoutMs: this.timeoutMs });
    return parseWithSchema(AnnounceResponse, answer, 'PEER_PROTOCOL', `announce answer from ${address}`) as AnnounceResult;
  }

  async claimName(address: string, body: NameClaimBody): Promise<NameClaimAnswerT> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/names/claim', body, { timeoutMs: this.timeoutMs });
    return parseWithSchema(NameClaimAnswer, answer, 'PEER_PROTOCOL', `name claim answer from ${address}`) as NameClaimAnswerT;
  }

  async releaseName(address: string, body: NameClaimBody): Promise<void> {
    await callJson<unknown>(this.target(address), 'POST', '/peer/v1/names/release', body, { timeoutMs: this.timeoutMs });
  }

  async createEndpoint(address: string, body: CreateEndpointBody): Promise<EndpointRecordT> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/endpoints', body, { timeoutMs: 30000 });
    return parseWithSchema(EndpointRecord, answer, 'PEER_PROTOCOL', `create answer from ${address}`);
  }

  async setPolicy(address: string, name: string, policy: EndpointPolicy | undefined): Promise<void> {
    await callRaw(this.target(address), 'PUT', `/peer/v1/endpoints/${encodeURIComponent(name)}/policy`, policy ? { policy } : {}, { timeoutMs: 15000 });
  }

  async decisions(address: string): Promise<DecisionWire[]> {
    const answer = await callJson<unknown>(this.target(address), 'GET', '/peer/v1/decisions', undefined, { timeoutMs: 5000 });
    return parseWithSchema(DecisionList, answer, 'PEER_PROTOCOL', `decisions from ${address}`);
  }

  async stopEndpoint(address: string, name: string): Promise<void> {
    await callRaw(this.target(address), 'DELETE', `/peer/v1/endpoints/${encodeURIComponent(name)}`, undefined, { timeoutMs: 30000 });
  }

  logs(address: string, name: string, maxBytes: number): Promise<string> {
    return callRaw(this.target(address), 'GET', `/peer/v1/endpoints/${encodeURIComponent(name)}/logs?maxBytes=${maxBytes}`, undefined, { timeoutMs: 10000 });
  }

  // ---- migrations: this agent as the source, talking to the target ----

  async prepare(address: string, body: PrepareRequest): Promise<Prepared> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/migrations/prepare', body, { timeoutMs: 15000 });
    const { prepared: _id, ...prepared } = parseWithSchema(PreparedAnswer, answer, 'PEER_PROTOCOL', `prepare answer from ${address}`);
    return prepared;
  }

  async hasImage(address: string, image: string): Promise<boolean> {
    const answer = await callJson<{ present: boolean }>(this.target(address), 'GET', `/peer/v1/images/${image}`, undefined, { timeoutMs: 5000 });
    return answer.present === true;
  }

  async sendImage(address: string, image: string, archive: Readable): Promise<void> {
    await callRaw(this.target(address), 'PUT', `/peer/v1/images/${image}`, archive, { timeoutMs: 30000 });
  }

  async sendTree(address: string, id: string, tree: string, archive: Readable): Promise<void> {
    await callRaw(this.target(address), 'PUT', `/peer/v1/migrations/${id}/trees/${tree}`, archive, { timeoutMs: 30000 });
  }

  sendImages(address: string, id: string, imagesDir: string): Promise<number> {
    return sendImages(imagesDir, this.target(address), id);
  }

  async restore(address: string, id: string, body: RestoreRequest): Promise<Restored> {
    const answer = await callJson<unknown>(this.target(address), 'POST', `/peer/v1/migrations/${id}/restore`, body, { timeoutMs: 60000 });
    return parseWithSchema(RestoredAnswer, answer, 'PEER_PROTOCOL', `restore answer from ${address}`);
  }

  async switchOver(address: string, id: string): Promise<void> {
    await callRaw(this.target(address), 'POST', `/peer/v1/migrations/${id}/switch`, {}, { timeoutMs: 15000 });
  }

  async sendHeld(address: string, id: string, held: Buffer): Promise<void> {
    await callRaw(this.target(address), 'PUT', `/peer/v1/migrations/${id}/held`, held, { timeoutMs: 15000 });
  }

  async unlock(address: string, id: string, frozenMs: number): Promise<HandoverCounts> {
    const answer = await callJson<unknown>(this.target(address), 'POST', `/peer/v1/migrations/${id}/unlock`, { frozenMs }, { timeoutMs: 15000 });
    return parseWithSchema(HandoverCounts, answer, 'PEER_PROTOCOL', `unlock answer from ${address}`);
  }

  async clientStall(address: string, id: string): Promise<ResumeMeasurement> {
    const answer = await callJson<unknown>(this.target(address), 'GET', `/peer/v1/migrations/${id}/stall`, undefined, { timeoutMs: 15000 });
    return parseWithSchema(ResumeMeasurement, answer, 'PEER_PROTOCOL', `stall answer from ${address}`);
  }

  async pullResult(address: string, id: string): Promise<PullOutcome> {
    const answer = await callJson<unknown>(this.target(address), 'GET', `/peer/v1/migrations/${id}/pull`, undefined, { timeoutMs: 30000 });
    return parseWithSchema(PullAnswer, answer, 'PEER_PROTOCOL', `pull answer from ${address}`);
  }

  async keep(address: string, id: string): Promise<void> {
    await callRaw(this.target(address), 'POST', `/peer/v1/migrations/${id}/keep`, {}, { timeoutMs: 5000 });
  }

  async abort(address: string, id: string): Promise<void> {
    await callRaw(this.target(address), 'POST', `/peer/v1/migrations/${id}/abort`, {}, { timeoutMs: 15000 });
  }

  async settled(address: string, id: string): Promise<void> {
    await callRaw(this.target(address), 'POST', `/peer/v1/migrations/${id}/settled`, {}, { timeoutMs: 15000 });
  }

  // ---- migrations: forwarding a request to the node the endpoint lives on ----

  async startMigration(address: string, body: MigrateBody): Promise<StartedAnswer> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/migrations', body, { timeoutMs: 15000 });
    return parseWithSchema(StartedAnswer, answer, 'PEER_PROTOCOL', `migration start answer from ${address}`);
  }

  async migrationStatus(address: string, id: string): Promise<MigrationStatus> {
    const answer = await callJson<unknown>(this.target(address), 'GET', `/peer/v1/migrations/${id}`, undefined, { timeoutMs: 5000 });
    return parseWithSchema(MigrationStatus, answer, 'PEER_PROTOCOL', `migration status from ${address}`);
  }
}
