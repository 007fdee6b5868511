/**
 * Endpoint operations addressed to the cluster: each goes to the node that
 * owns (or is to own) the endpoint — this agent's manager, or the owning
 * agent over the peer protocol. Any agent can therefore serve the CLI.
 */
import { RoamError } from '../errors/roam-error.js';
import type { ContainerRequest } from '../records/container.js';
import type { EndpointRecord } from '../records/endpoint.js';
import type { EndpointPolicy } from '../records/policy.js';
import type { LocationTable } from './locations.js';

export interface CreateRequest {
  name: string;
  node: string | undefined;
  ip: string | undefined;
  command: string[];
  container?: ContainerRequest | undefined;
  policy?: EndpointPolicy | undefined;
}

/** What the router needs of this node's endpoint manager. */
export interface LocalEndpoints {
  has(name: string): boolean;
  create(req: { name: string; ip: string | undefined; command: string[]; container?: ContainerRequest; policy?: EndpointPolicy }): Promise<EndpointRecord>;
  setPolicy(name: string, policy: EndpointPolicy | undefined): Promise<void>;
  stop(name: string): Promise<void>;
  logs(name: string, maxBytes: number): string;
}

export interface RemoteEndpoints {
  createEndpoint(address: string, body: { name: string; ip?: string; command: string[]; container?: ContainerRequest; policy?: EndpointPolicy }): Promise<EndpointRecord>;
  setPolicy(address: string, name: string, policy: EndpointPolicy | undefined): Promise<void>;
  stopEndpoint(address: string, name: string): Promise<void>;
  logs(address: string, name: string, maxBytes: number): Promise<string>;
}

/**
 * Read-your-writes across agents: a change made here is pushed to every peer,
 * and a change forwarded to another node is read back from it, before the
 * request is answered.
 */
export interface Propagation {
  publish(): Promise<void>;
  refresh(node: string): Promise<void>;
}

export class EndpointRouter {
  constructor(
    private readonly self: string,
    private readonly table: LocationTable,
    private readonly manager: LocalEndpoints,
    private readonly remote: RemoteEndpoints,
    private readonly propagation: Propagation = { publish: async () => undefined, refresh: async () => undefined },
  ) {}

  list(): EndpointRecord[] {
    return this.table.endpoints();
  }

  get(name: string): EndpointRecord {
    const found = this.table.endpoints().find((e) => e.name === name);
    if (!found) throw new RoamError('NOT_FOUND', `endpoint ${name} does not exist`);
    return found;
  }

  async create(req: CreateRequest): Promise<EndpointRecord> {
    const node = req.node ?? this.self;
    if (node === this.self) {
      const record = await this.manager.create({ name: req.name, ip: req.ip, command: req.command, ...(req.container ? { container: req.container } : {}), ...(req.policy ? { policy: req.policy } : {}) });
      await this.propagation.publish();
      return record;
    }
    const peer = this.table.node(node);
    if (!peer) throw new RoamError('NOT_FOUND', `node: unknown node ${node} (known: ${this.table.nodeViews().map((n) => n.node).join(', ')})`);
    const record = await this.remote.createEndpoint(peer.address, {
      name: req.name, ...(req.ip ? { ip: req.ip } : {}), command: req.command, ...(req.container ? { container: req.container } : {}), ...(req.policy ? { policy: req.policy } : {}),
    });
    await this.propagation.refresh(node);
    return record;
  }

  async stop(name: string): Promise<void> {
    if (this.manager.has(name)) {
      await this.manager.stop(name);
      await this.propagation.publish();
      return;
    }
    const owner = this.get(name).node;
    await this.remote.stopEndpoint(this.ownerAddress(name), name);
    await this.propagation.refresh(owner);
  }

  /** Sets the endpoint's policy where it runs (undefined: back to the agents' default). */
  async setPolicy(name: string, policy: EndpointPolicy | undefined): Promise<void> {
    if (this.manager.has(name)) return this.manager.setPolicy(name, policy);
    await this.remote.setPolicy(this.ownerAddress(name), name, policy);
  }

  async logs(name: string, maxBytes: number): Promise<string> {
    if (this.manager.has(name)) return this.manager.logs(name, maxBytes);
    return this.remote.logs(this.ownerAddress(name), name, maxBytes);
  }

  private ownerAddress(name: string): string {
    const ep = this.get(name);
    const node = this.table.node(ep.node);
    if (!node || ep.node === this.self) throw new RoamError('NOT_FOUND', `endpoint ${name} is not on node ${this.self} and its owner is unknown`);
    return node.address;
  }
}
