/**
 * Reads the agent's config file once: JSON, schema, then the relations the
 * schema cannot express (range inside subnet, peers unique). Returns a frozen
 * value; a wrong config never starts an agent.
 */
import { readFileSync } from 'node:fs';
import { RoamError } from '../errors/roam-error.js';
import { familyOf, parsePrefix, prefixWithin } from '../net/ip.js';
import { AgentConfig } from './schema.js';
import { splitHostPort } from '../records/formats.js';
import { parseWithSchema } from './validate.js';

/** What `roam agent` flags set over the file: the per-node values a DaemonSet takes from the downward API. */
export interface ConfigOverrides {
  node?: string | undefined;
  underlayAddress?: string | undefined;
}

export function loadConfigFile(path: string, overrides: ConfigOverrides = {}): Readonly<AgentConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new RoamError('CONFIG_INVALID', `config ${path}: cannot read (${code})`, { path });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RoamError('CONFIG_INVALID', `config ${path}: not valid JSON (${(err as Error).message})`, { path });
  }
  return parseConfig(withOverrides(json, overrides), `config ${path}`);
}

function withOverrides(json: unknown, o: ConfigOverrides): unknown {
  if (!json || typeof json !== 'object' || Array.isArray(json)) return json;
  const out = { ...(json as Record<string, unknown>) };
  if (o.node !== undefined) out.node = o.node;
  if (o.underlayAddress !== undefined) out.underlay = { ...(out.underlay as Record<string, unknown> | undefined), address: o.underlayAddress };
  return out;
}

export function parseConfig(json: unknown, what = 'config'): Readonly<AgentConfig> {
  const config = parseWithSchema(AgentConfig, json, 'CONFIG_INVALID', what);
  const problems: string[] = [];
  const subnet = parsePrefix(config.overlay.subnet);
  if (config.overlay.range !== undefined && !prefixWithin(parsePrefix(config.overlay.range), subnet)) {
    problems.push(`overlay.range: ${config.overlay.range} is not inside overlay.subnet ${config.overlay.subnet}`);
  }
  if (config.kubernetes) {
    if (config.peers.length > 0) problems.push('peers: with kubernetes, peers come from the cluster\'s Node objects; leave peers empty');
    if (config.kubernetes.rangePrefixLength < subnet.length) problems.push(`kubernetes.rangePrefixLength: /${config.kubernetes.rangePrefixLength} is wider than overlay.subnet ${config.overlay.subnet}`);
  } else if (config.overlay.range === undefined) {
    problems.push('overlay.range: required (only a kubernetes agent claims its range from the cluster)');
  }
  const underlayFamily = familyOf(config.underlay.address);
  const seen = new Set<string>([config.node]);
  const addresses = new Set<string>([config.underlay.address]);
  config.peers.forEach((peer, i) => {
    if (seen.has(peer.node)) problems.push(`peers.${i}.node: ${peer.node} appears twice (or is this node)`);
    if (addresses.has(peer.address)) problems.push(`peers.${i}.address: ${peer.address} is used twice`);
    if (familyOf(peer.address) !== underlayFamily) problems.push(`peers.${i}.address: ${peer.address} is not the same IP family as underlay.address`);
    seen.add(peer.node);
    addresses.add(peer.address);
  });
  problems.push(...exposureProblems(config.api), ...peerSecurityProblems(config));
  if (problems.length > 0) throw new RoamError('CONFIG_INVALID', `${what}: ${problems.join('; ')}`, { problems });
  return deepFreeze(config);
}

/**
 * The control API can freeze and move any service on the node. Its unix
 * socket is root's only; over TCP it answers only holders of the token
 * (even on loopback, where every local user could reach it), and off
 * loopback only over TLS.
 */
function exposureProblems(api: AgentConfig['api']): string[] {
  if (api.listen === undefined) {
    const unused = (['tls', 'tokenFile'] as const).filter((k) => api[k] !== undefined);
    return unused.map((k) => `api.${k}: only used with api.listen, which is not set`);
  }
  const loopback = isLoopback(splitHostPort(api.listen).host);
  const missing = [api.tls || loopback ? undefined : 'api.tls', api.tokenFile ? undefined : 'api.tokenFile'].filter(Boolean);
  if (missing.length === 0) return [];
  return [`api.listen: serving the control API on ${loopback ? 'loopback TCP' : `${api.listen}, not a loopback address,`} needs ${missing.join(' and ')}`];
}

/**
 * The peer port starts processes as root and carries services' memory:
 * plain TCP there is a choice the config must spell out, never a default.
 */
function peerSecurityProblems(config: AgentConfig): string[] {
  if (config.tls && config.insecurePlaintextPeers) return ['insecurePlaintextPeers: true contradicts tls, which is set: remove one'];
  if (config.kubernetes?.peerCertificates && !config.tls) return ['kubernetes.peerCertificates: needs tls, naming the files the agent writes its key, certificate and CA to'];
  if (config.tls || config.insecurePlaintextPeers) return [];
  return ['tls: required for the peer protocol, which starts processes as root and carries services\' memory (tls.ca, tls.cert, tls.key; on Kubernetes the agent can get its certificate itself, see docs/KUBERNETES.md); insecurePlaintextPeers: true runs it plain and unauthenticated instead, on a private underlay only'];
}

function isLoopback(address: string): boolean {
  return address === '::1' || /^127\./.test(address);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
