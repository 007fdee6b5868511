/**
 * Which agent the CLI talks to: --api, else $ROAM_API, else the agent of the
 * named (or first) node of a running testbed, else the host's agent socket.
 */
import { RoamError } from '../errors/roam-error.js';
import { readTestbedState } from '../testbed/state.js';

export const DEFAULT_AGENT_SOCKET = '/run/roam/agent.sock';
export const DEFAULT_TESTBED = 'roam';

export function resolveApiSocket(opts: { api?: string | undefined; testbed?: string | undefined; node?: string | undefined }): string {
  if (opts.api) return opts.api;
  if (process.env.ROAM_API) return process.env.ROAM_API;
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
