/**
 * The agent-to-agent protocol, client side. Every answer is checked against
 * the wire schema before anything is believed.
 */
import { parseWithSchema } from '../config/validate.js';
import type { EndpointRecord, NodeAnnouncement } from '../cluster/locations.js';
import { callJson, callRaw, type Target } from './http-client.js';
import { AnnounceResponse, EndpointRecord as EndpointRecordSchema, type CreateEndpointBody } from './schemas.js';

export interface AnnounceResult {
  self: NodeAnnouncement;
  peers: { node: string; address: string }[];
}

export class PeerClient {
  constructor(private readonly port: number, private readonly timeoutMs = 3000) {}

  private target(address: string): Target {
    return { host: address, port: this.port };
  }

  async announce(address: string, mine: NodeAnnouncement): Promise<AnnounceResult> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/announce', mine, { timeoutMs: this.timeoutMs });
    return parseWithSchema(AnnounceResponse, answer, 'PEER_PROTOCOL', `announce answer from ${address}`) as AnnounceResult;
  }

  async createEndpoint(address: string, body: CreateEndpointBody): Promise<EndpointRecord> {
    const answer = await callJson<unknown>(this.target(address), 'POST', '/peer/v1/endpoints', body, { timeoutMs: 30000 });
    return parseWithSchema(EndpointRecordSchema, answer, 'PEER_PROTOCOL', `create answer from ${address}`);
  }

  async stopEndpoint(address: string, name: string): Promise<void> {
    await callRaw(this.target(address), 'DELETE', `/peer/v1/endpoints/${encodeURIComponent(name)}`, undefined, { timeoutMs: 30000 });
  }

  logs(address: string, name: string, maxBytes: number): Promise<string> {
    return callRaw(this.target(address), 'GET', `/peer/v1/endpoints/${encodeURIComponent(name)}/logs?maxBytes=${maxBytes}`, undefined, { timeoutMs: 10000 });
  }
}
