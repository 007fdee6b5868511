/**
 * Local endpoint records on disk: `<stateDir>/endpoints/<name>/record.json`,
 * beside the shim's files (pid, shim.pid, log, exit). Written atomically; an
 * agent restart reads them back to re-adopt running endpoints.
 */
import { syncFolder, writeFileDurably } from '../sys/durable-file.js';
import { mkdirSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerPart } from '../container/node-containers.js';
import type { EndpointPolicy } from '../records/policy.js';

export interface StoredEndpoint {
  name: string;
  ip: string;
  prefixLength: number;
  mac: string;
  generation: number;
  netns: string;
  hostVeth: string;
  command: string[];
  pid: number;
  /** /proc/PID/stat starttime: tells our process from a later one with a recycled PID */
  startTime: number;
  shimPid: number;
  createdAt: string;
  /** set while the endpoint is arriving by migration: prepared, locked, not yet ours */
  incoming?: string;
  /** the migration that brought it here, once it is ours */
  arrivedWith?: string;
  /** a container run by runc (its image, configuration and volumes); a plain process tree without */
  container?: ContainerPart;
  /** a Kubernetes pod given an overlay interface: its namespace, its process and its life are the kubelet's, only the veth is roam's */
  pod?: PodRef;
  /** when to move on its own (policy/); the agent's default without one */
  policy?: EndpointPolicy;
}

export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export class EndpointStore {
  readonly root: string;

  constructor(stateDir: string) {
    this.root = join(stateDir, 'endpoints');
    mkdirSync(this.root, { recursive: true });
  }

  dirOf(name: string): string {
    return join(this.root, name);
  }

  save(record: StoredEndpoint): void {
    const dir = this.dirOf(record.name);
    if (mkdirSync(dir, { recursive: true })) syncFolder(this.root);
    writeFileDurably(join(dir, 'record.json'), JSON.stringify(record, null, 2));
  }

  load(name: string): StoredEndpoint | undefined {
    try {
      return JSON.parse(readFileSync(join(this.dirOf(name), 'record.json'), 'utf8')) as StoredEndpoint;
    } catch {
      return undefined;
    }
  }

  /** Names of endpoint directories, including ones whose record was never written. */
  names(): string[] {
    return existsSync(this.root) ? readdirSync(this.root).sort() : [];
  }

  remove(name: string): void {
    rmSync(this.dirOf(name), { recursive: true, force: true });
  }
}
