/**
 * Where everything of a testbed lives: names, addresses, paths. Pure.
 * A testbed named T with N nodes is:
 *  - netns roam-T-underlay: the "switch", a bridge joining all nodes' underlay links;
 *  - netns roam-T-nodeI: node I, underlay address 172.31.0.I on ul0, running `roam agent`;
 *  - /run/roam/testbed/T: its state (testbed.json, per-node config, agent logs, agent state).
 * All addresses exist only inside these namespaces.
 */
import { join } from 'node:path';

export const TESTBED_ROOT = '/run/roam/testbed';
export const NETNS_DIR = '/run/netns';
export const MAX_NODES = 200;

export interface NodeLayout {
  name: string;
  index: number;
  netnsName: string;
  netnsPath: string;
  underlayIp: string;
  range: string;
  dir: string;
  stateDir: string;
  configPath: string;
  apiSocket: string;
  /** the control API on the underlay too (HTTPS, the node's certificate, the testbed's token) */
  apiListen: string;
  metricsListen: string;
  logPath: string;
}

export interface TestbedLayout {
  name: string;
  dir: string;
  statePath: string;
  switchNetnsName: string;
  switchNetnsPath: string;
  switchBridge: string;
  switchIp: string;
  underlayPrefixLength: number;
  overlaySubnet: string;
  vni: number;
  peerPort: number;
  /** the bearer token of every node's control API on the underlay */
  apiTokenPath: string;
  nodes: NodeLayout[];
}

export function testbedLayout(name: string, nodeCount: number): TestbedLayout {
  const dir = join(TESTBED_ROOT, name);
  const nodes: NodeLayout[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const node = `node${i}`;
    const nodeDir = join(dir, node);
    const netnsName = `roam-${name}-${node}`;
    nodes.push({
      name: node,
      index: i,
      netnsName,
      netnsPath: join(NETNS_DIR, netnsName),
      underlayIp: `172.31.0.${i}`,
      range: `10.244.${i}.0/24`,
      dir: nodeDir,
      stateDir: join(nodeDir, 'state'),
      configPath: join(nodeDir, 'agent.json'),
      apiSocket: join(nodeDir, 'agent.sock'),
      apiListen: `172.31.0.${i}:7947`,
      metricsListen: `172.31.0.${i}:9464`,
      logPath: join(nodeDir, 'agent.log'),
    });
  }
  const switchNetnsName = `roam-${name}-underlay`;
  return {
    name,
    dir,
    statePath: join(dir, 'testbed.json'),
    switchNetnsName,
    switchNetnsPath: join(NETNS_DIR, switchNetnsName),
    switchBridge: 'ul-br',
    switchIp: '172.31.0.254',
    underlayPrefixLength: 24,
    overlaySubnet: '10.244.0.0/16',
    vni: 4242,
    peerPort: 7946,
    apiTokenPath: join(dir, 'tls', 'api.token'),
    nodes,
  };
}

export const TESTBED_NAME_PATTERN = /^[a-z0-9]{1,8}$/;
