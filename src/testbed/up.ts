/**
 * `roam testbed up`: builds what is missing and restarts agents that are not
 * running; what already exists is left alone. Running it twice is harmless;
 * running it with more nodes adds them (a late joiner).
 */
import { existsSync, mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../http/client.js';
import type { NodeStatus } from '../api/schemas.js';
import type { AgentConfig } from '../config/schema.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import { ensureAddress } from '../sys/netlink/addresses.js';
import { addBridge, addVeth, getLink, requireLink, setLinkMaster, setLinkUp } from '../sys/netlink/links.js';
import { deleteRootQdisc, ensureRateLimit, parseRate } from '../sys/netlink/qdisc.js';
import { ensureCa, ensureNodeCert, ensureSecretToken, type NodeCert } from '../sys/certs.js';
import { ensureNodeContainerd } from './containerd.js';
import { RtnlSession } from '../sys/netlink/session.js';
import { createNetns, isNetns } from '../sys/netns/netns.js';
import { isAgentRunning, startAgent, waitAgentReady } from './agent-process.js';
import { MAX_NODES, NETNS_DIR, TESTBED_NAME_PATTERN, testbedLayout, type NodeLayout, type TestbedLayout } from './layout.js';
import { readTestbedState, writeTestbedState, type TestbedNodeState, type TestbedState } from './state.js';

export interface UpOptions {
  name: string;
  nodes: number;
  underlayRate: string | undefined;
  /** anti-entropy period for the agents (tests and benches shorten it) */
  syncIntervalMs?: number;
  /**
   * agents in Kubernetes mode, against the API server the kubeconfig names
   * (reachable from the nodes' namespaces), finding pods' containers in runc's
   * state under runtimeRoot (containerd's, on a real node)
   */
  kubernetes?: {
    /** each node's kubeconfig (its own credentials, as each agent pod has its own token) */
    kubeconfig: (node: string) => string;
    runtimeRoot: string;
    /**
     * the agents get their peer certificates from the cluster (a signer must
     * run against it) instead of from the testbed's CA, renewing them this
     * often when renewAfterSeconds is set
     */
    peerCertificates?: { renewAfterSeconds?: number };
  };
  /** one containerd per node, in its namespace (the pods' tests) */
  containerd?: boolean;
  /** the agents' bounds on what peers send (tests shorten them); by default the agent's own, with a 1 MiB free-space reserve */
  limits?: Partial<AgentConfig['limits']>;
  say: (line: string) => void;
}

export async function testbedUp(o: UpOptions): Promise<TestbedState> {
  if (!TESTBED_NAME_PATTERN.test(o.name)) throw new RoamError('INPUT_INVALID', `--name: ${JSON.stringify(o.name)} must be 1-8 lowercase letters or digits`);
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > MAX_NODES) throw new RoamError('INPUT_INVALID', `--nodes: must be a whole number from 1 to ${MAX_NODES}, got ${o.nodes}`);
  const rate = o.underlayRate === undefined ? undefined : parseRate(o.underlayRate);
  if (o.underlayRate !== undefined && rate === undefined) throw new RoamError('INPUT_INVALID', `--underlay-rate: ${JSON.stringify(o.underlayRate)} is not a rate like 1gbit, 100mbit or 500kbit`);
  const existing = readTestbedState(o.name);
  const count = Math.max(o.nodes, existing?.nodes.length ?? 0);
  const layout = testbedLayout(o.name, count);
  mkdirSync(layout.dir, { recursive: true });
  mkdirSync(NETNS_DIR, { recursive: true });

  const state: TestbedState = existing ?? {
    name: o.name, createdAt: new Date().toISOString(), underlayRate: null, switchNetns: layout.switchNetnsPath, nodes: [],
  };
  if (o.underlayRate !== undefined) state.underlayRate = o.underlayRate;
  const rateBits = state.underlayRate ? parseRate(state.underlayRate) : undefined;

  await ensureSwitch(layout, o.say);
  const tlsDir = join(layout.dir, 'tls');
  ensureCa(tlsDir, `roam testbed ${o.name} CA`);
  ensureSecretToken(layout.apiTokenPath);
  for (const node of layout.nodes) {
    const previous = state.nodes.find((n) => n.name === node.name);
    const built = await ensureNode(layout, node, rateBits, o.say);
    // A running agent keeps the config it started with: nodes added later are found by discovery.
    // Agents talk mutual TLS under a CA of the testbed's own.
    const tls = ensureNodeCert(tlsDir, node.name, node.underlayIp);
    if (!previous || !existsSync(node.configPath)) writeAgentConfig(layout, node, o.syncIntervalMs, rateBits, tls, o.kubernetes, o.limits);
    const containerd = o.containerd || previous?.containerd ? await ensureNodeContainerd(node, previous?.containerd) : undefined;
    let pid = previous?.agentPid ?? 0;
    if (pid && isAgentRunning(pid)) {
      o.say(`${node.name}: agent already running (pid ${pid})`);
    } else {
      pid = startAgent(node.netnsPath, node.configPath, node.logPath);
      o.say(`${node.name}: ${built ? 'built, ' : ''}agent started (pid ${pid})`);
    }
    const entry: TestbedNodeState = {
      name: node.name, netns: node.netnsPath, underlayIp: node.underlayIp, apiSocket: node.apiSocket,
      metrics: node.metricsListen, stateDir: node.stateDir, agentPid: pid, logPath: node.logPath, ...(containerd ? { containerd } : {}),
    };
    state.nodes = [...state.nodes.filter((n) => n.name !== node.name), entry].sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    writeTestbedState(layout.statePath, state);
  }
  for (const n of state.nodes) {
    try {
      await waitAgentReady(n.apiSocket, n.agentPid, n.logPath);
    } catch (err) {
      throw new RoamError('TESTBED', `${n.name}: ${describeError(err)}`);
    }
  }
  await waitConverged(state);
  return state;
}

/** Every agent knows every node of the testbed and has heard from it. */
async function waitConverged(state: TestbedState, timeoutMs = 20000): Promise<void> {
  const all = state.nodes.map((n) => n.name);
  const deadline = Date.now() + timeoutMs;
  let lagging = '';
  while (Date.now() < deadline) {
    lagging = '';
    for (const n of state.nodes) {
      const view = await callJson<NodeStatus[]>({ socketPath: n.apiSocket }, 'GET', '/v1/nodes', undefined, { timeoutMs: 2000 }).catch(() => []);
      const seen = new Set(view.filter((v) => v.reachable || v.node === n.name).map((v) => v.node));
      const missing = all.filter((x) => !seen.has(x));
      if (missing.length > 0) lagging += `${n.name} has not heard from ${missing.join(', ')}; `;
    }
    if (!lagging) return;
    await sleep(50);
  }
  throw new RoamError('TESTBED', `agents did not converge in ${timeoutMs} ms: ${lagging}`);
}

async function ensureSwitch(layout: TestbedLayout, say: (l: string) => void): Promise<void> {
  if (!isNetns(layout.switchNetnsPath)) {
    createNetns(layout.switchNetnsPath);
    say(`underlay switch: created netns ${layout.switchNetnsName}`);
  }
  const s = RtnlSession.open(layout.switchNetnsPath);
  try {
    await setLinkUp(s, await requireLink(s, 'lo'));
    if (!(await getLink(s, layout.switchBridge))) await addBridge(s, layout.switchBridge, 1500);
    const br = await requireLink(s, layout.switchBridge);
    await ensureAddress(s, br, { address: layout.switchIp, prefixLength: layout.underlayPrefixLength });
    await setLinkUp(s, br);
  } finally {
    s.close();
  }
}

/** Returns true if it had to build anything. */
async function ensureNode(layout: TestbedLayout, node: NodeLayout, rate: bigint | undefined, say: (l: string) => void): Promise<boolean> {
  let built = false;
  mkdirSync(node.stateDir, { recursive: true });
  if (!isNetns(node.netnsPath)) {
    createNetns(node.netnsPath);
    built = true;
  }
  const sw = RtnlSession.open(layout.switchNetnsPath);
  const s = RtnlSession.open(node.netnsPath);
  try {
    if (!(await getLink(s, 'ul0'))) {
      // Created in the switch, its peer born inside the node as ul0.
      const fd = openSync(node.netnsPath, 'r');
      try {
        await addVeth(sw, { name: node.name, alias: `testbed:${node.name}`, peerName: 'ul0', peerMac: underlayMac(node.index), peerNetns: node.netnsPath, peerNetnsFd: fd, mtu: 1500 });
      } finally {
        closeSync(fd);
      }
      built = true;
    }
    const br = await requireLink(sw, layout.switchBridge);
    const port = await requireLink(sw, node.name);
    await setLinkMaster(sw, port, br.index);
    await setLinkUp(sw, port);
    await setLinkUp(s, await requireLink(s, 'lo'));
    const ul = await requireLink(s, 'ul0');
    await ensureAddress(s, ul, { address: node.underlayIp, prefixLength: layout.underlayPrefixLength });
    await setLinkUp(s, ul);
    if (rate) await ensureRateLimit(s, ul, { bitsPerSecond: rate });
    else await deleteRootQdisc(s, ul);
  } finally {
    s.close();
    sw.close();
  }
  if (built) say(`${node.name}: netns ${node.netnsName}, underlay ${node.underlayIp}${rate ? `, rate ${rate} bit/s` : ''}`);
  return built;
}

function underlayMac(index: number): string {
  return `02:75:00:00:${((index >> 8) & 0xff).toString(16).padStart(2, '0')}:${(index & 0xff).toString(16).padStart(2, '0')}`;
}

function writeAgentConfig(
  layout: TestbedLayout, node: NodeLayout, syncIntervalMs: number | undefined, rateBits: bigint | undefined, tls: NodeCert, kubernetes: UpOptions['kubernetes'], limits: UpOptions['limits'],
): void {
  const config: AgentConfig = {
    node: node.name,
    // The limited rate, when there is one, is what the agents plan migrations with.
    underlay: { address: node.underlayIp, interface: 'ul0', ...(rateBits ? { rateMbit: Number(rateBits) / 1e6 } : {}), pullShare: 0.8 },
    vni: layout.vni,
    vxlanPort: 4789,
    // With Kubernetes, the range is claimed and the peers are the Node objects; otherwise both are static.
    overlay: { subnet: layout.overlaySubnet, ...(kubernetes ? {} : { range: node.range }), mtu: 1450 },
    // Static peers: every node the testbed has when this one is built. Nodes added later announce themselves.
    peers: kubernetes ? [] : layout.nodes.filter((n) => n.index !== node.index).map((n) => ({ node: n.name, address: n.underlayIp })),
    peerPort: layout.peerPort,
    api: { socket: node.apiSocket, listen: node.apiListen, tls: { cert: tls.cert, key: tls.key }, tokenFile: layout.apiTokenPath },
    metrics: { listen: node.metricsListen },
    stateDir: node.stateDir,
    syncIntervalMs: syncIntervalMs ?? 2000,
    // From the cluster, the agent writes its own peer key, certificate and CA here.
    tls: kubernetes?.peerCertificates ? { ca: join(node.dir, 'peer-ca.pem'), cert: join(node.dir, 'peer.pem'), key: join(node.dir, 'peer.key') } : tls,
    // The testbed's state is on the host's disk, shared by every node: each keeps a small reserve only.
    limits: { uploadIdleSeconds: 30, fileBytes: 16 * 1024 ** 3, arrivalIdleSeconds: 60, peerConnections: 1024, reserveFreeBytes: 1024 ** 2, ...limits },
    migration: { maxConcurrent: 1 },
    policy: { intervalMs: 1000, default: { drain: true, minDwellMs: 30000, prepare: true } },
    devices: { bridge: 'roam0', vxlan: 'roam-vx' },
    ...(kubernetes ? {
      kubernetes: {
        kubeconfig: kubernetes.kubeconfig(node.name), runtimeRoot: kubernetes.runtimeRoot, rangePrefixLength: 24, resyncMs: 5000,
        ...(kubernetes.peerCertificates ? { peerCertificates: { expirationSeconds: 86400, waitSeconds: 60, ...kubernetes.peerCertificates } } : {}),
      },
    } : {}),
  };
  writeFileSync(node.configPath, JSON.stringify(config, null, 2));
}
