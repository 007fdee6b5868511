/**
 * Which agent the CLI talks to: --api, else $ROAM_API, else the agent of the
 * named (or first) node of a running testbed, else the host's agent socket.
 * --api is a unix socket path, or the URL of a control API served on the
 * network (https://HOST:PORT), whose token comes from --api-token-file or
 * $ROAM_API_TOKEN_FILE and whose server certificate is checked against
 * --api-ca or $ROAM_API_CA (the system's CAs without either).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { RoamError } from '../errors/roam-error.js';
import type { Target } from '../http/client.js';
import { readTestbedState } from '../testbed/state.js';

export const DEFAULT_AGENT_SOCKET = '/run/roam/agent.sock';
export const DEFAULT_TESTBED = 'roam';

export interface ApiChoice {
  api?: string | undefined;
  apiCa?: string | undefined;
  apiTokenFile?: string | undefined;
  testbed?: string | undefined;
  node?: string | undefined;
}

export function resolveApi(opts: ApiChoice): Target {
  const api = opts.api ?? process.env.ROAM_API;
  if (api && /^https?:\/\//.test(api)) return networkTarget(api, opts);
  if (opts.apiCa || opts.apiTokenFile) throw new RoamError('INPUT_INVALID', '--api-ca and --api-token-file go with --api https://HOST:PORT');
  return { socketPath: api ?? testbedSocket(opts) };
}

function testbedSocket(opts: ApiChoice): string {
  const tbName = opts.testbed ?? process.env.ROAM_TESTBED ?? DEFAULT_TESTBED;
  const tb = readTestbedState(tbName);
  if (tb && tb.nodes.length > 0) {
    const node = opts.node ? tb.nodes.find((n) => n.name === opts.node) : tb.nodes[0];
    if (opts.node && !node) throw new RoamError('NOT_FOUND', `--node: testbed ${tbName} has no node ${opts.node} (nodes: ${tb.nodes.map((n) => n.name).join(', ')})`);
    return (node ?? tb.nodes[0]!).apiSocket;
  }
  if (opts.testbed) throw new RoamError('NOT_FOUND', `--testbed: no testbed named ${opts.testbed} is up`);
  return DEFAULT_AGENT_SOCKET;
}

function networkTarget(text: string, opts: ApiChoice): Target {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RoamError('INPUT_INVALID', `--api: ${JSON.stringify(text)} is not a URL (https://HOST:PORT)`);
  }
  if (!url.port || (url.pathname !== '/' && url.pathname !== '')) throw new RoamError('INPUT_INVALID', `--api: ${text}: give the scheme, host and port only (https://HOST:PORT)`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (url.protocol === 'http:' && !(host === '::1' || /^127\./.test(host) || host === 'localhost')) {
    throw new RoamError('INPUT_INVALID', `--api: ${text}: off loopback the control API is served over https only`);
  }
  const tokenFile = opts.apiTokenFile ?? process.env.ROAM_API_TOKEN_FILE;
  if (!tokenFile) throw new RoamError('INPUT_INVALID', `--api ${text}: the control API on the network needs its token: --api-token-file FILE or $ROAM_API_TOKEN_FILE`);
  const token = readCliFile('--api-token-file', tokenFile).toString('utf8').trim();
  const caFile = opts.apiCa ?? process.env.ROAM_API_CA;
  const tls = url.protocol === 'https:' ? (caFile ? { ca: readCliFile('--api-ca', caFile) } : {}) : undefined;
  return { host: isIP(host) ? host : url.hostname, port: Number(url.port), token, ...(tls ? { tls } : {}) };
}

function readCliFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new RoamError('INPUT_INVALID', `${flag}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}
