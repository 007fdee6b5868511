/** testbed.json: what `up` built, so `down`, the CLI and tests can find it. */
import { readFileSync, renameSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { TESTBED_ROOT } from './layout.js';

export interface TestbedNodeState {
  name: string;
  netns: string;
  underlayIp: string;
  apiSocket: string;
  metrics: string;
  stateDir: string;
  agentPid: number;
  logPath: string;
  /** the node's own containerd, when the testbed was brought up with one (testbed/containerd.ts) */
  containerd?: { pid: number; address: string; runcRoot: string };
}

export interface TestbedState {
  name: string;
  createdAt: string;
  underlayRate: string | null;
  switchNetns: string;
  nodes: TestbedNodeState[];
}

export function readTestbedState(name: string): TestbedState | undefined {
  try {
    return JSON.parse(readFileSync(join(TESTBED_ROOT, name, 'testbed.json'), 'utf8')) as TestbedState;
  } catch {
    return undefined;
  }
}

export function writeTestbedState(path: string, state: TestbedState): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${path}.tmp`, path);
}

export function listTestbeds(): string[] {
  return existsSync(TESTBED_ROOT) ? readdirSync(TESTBED_ROOT).sort() : [];
}
