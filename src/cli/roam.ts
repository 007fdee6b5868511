/**
 * The `roam` command. Each subcommand parses its own flags (unknown flags are
 * errors that name the flag) and talks to an agent through its control API;
 * only `agent`, `testbed` and `demo` do work themselves.
 */
import { resolve } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { parseVolumeFlag } from '../container/spec.js';
import { RoamError, describeError } from '../errors/roam-error.js';
import { callJson, callRaw } from '../http/client.js';
import { resolveApi, DEFAULT_TESTBED, type ApiChoice } from './api-target.js';
import { runAgent } from './agent-command.js';
import { runSignerCommand } from './signer-command.js';
import { parseFlags } from './flags.js';
import { runDemo } from './demo.js';
import { formatTable } from './table.js';
import { testbedUp } from '../testbed/up.js';
import { testbedDown } from '../testbed/down.js';
import { readTestbedState } from '../testbed/state.js';
import type { DecisionWire } from '../records/decision.js';
import type { EndpointRecord } from '../records/endpoint.js';
import { followMigration } from './follow-migration.js';
import { crdsYaml } from '../kubernetes/crds.js';

const USAGE = `usage: roam <command> [options]

  agent --config FILE [--node NAME] [--underlay-address IP]
                                           run a node agent (the flags override the file's node and underlay.address)
  signer [--kubeconfig FILE] [--namespace NS] [--agents NS:SERVICEACCOUNT] [--max-days N]
                                           on Kubernetes: sign the agents' peer certificates (CA kept in secret NS/roam-peer-ca)
  run --node NODE --name NAME [--ip IP] -- CMD [ARGS...]
                                           start CMD as a migratable endpoint
  run --node NODE --name NAME (--rootfs DIR -- CMD [ARGS...] | --bundle DIR [-- CMD...]) [--volume HOST_DIR:CONTAINER_DIR]...
                                           run an OCI container (runc) as a migratable endpoint
  ps [--json]                              list endpoints across the cluster
  logs NAME                                print an endpoint's output
  migrate NAME --to NODE [--mode auto|stop-copy|streamed|post-copy|cold] [--handover full|replay|kick|off] [--presync on|off] [--json]
                                           move a running endpoint, its IP and its TCP connections
                                           (a container's files: copied while it runs, only changes in the freeze; off: all in the freeze)
  stop NAME                                stop an endpoint and remove every trace of it
  policy NAME (POLICY_JSON | --clear)      set when an endpoint moves on its own, e.g.
                                           '{"followClient": {}, "latency": {"targetMs": 20}, "minDwellMs": 30000}'
                                           (--clear: back to the agents' default; also: roam run ... --policy POLICY_JSON)
  drain NODE [--off]                       mark a node for maintenance: its endpoints move off it (--off lifts it)
  decisions [--json]                       what the policies decided across the cluster, and why
  testbed up [--nodes N] [--underlay-rate RATE] [--json] [--name NAME]
  testbed down [--name NAME]
  testbed status [--json] [--name NAME]
  demo                                     bring up a testbed and show the overlay at work
  kubernetes crds                          print the CustomResourceDefinitions (YAML), generated from the agent's schemas

  Agent selection: --api SOCKET, $ROAM_API, or the testbed's agents (--testbed NAME).
  A control API on the network: --api https://HOST:PORT with --api-token-file FILE
  ($ROAM_API_TOKEN_FILE) and --api-ca FILE ($ROAM_API_CA).
`;

type Out = (line: string) => void;

export async function runCli(argv: string[], out: Out = (l) => process.stdout.write(`${l}\n`), err: Out = (l) => process.stderr.write(`${l}\n`)): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'agent': return await runAgent(rest, err);
      case 'signer': return await runSignerCommand(rest, err);
      case 'run': return await cmdRun(rest, out);
      case 'ps': return await cmdPs(rest, out);
      case 'logs': return await cmdLogs(rest, out);
      case 'stop': return await cmdStop(rest, out);
      case 'migrate': return await cmdMigrate(rest, out);
      case 'policy': return await cmdPolicy(rest, out);
      case 'drain': return await cmdDrain(rest, out);
      case 'decisions': return await cmdDecisions(rest, out);
      case 'testbed': return await cmdTestbed(rest, out);
      case 'demo': return await runDemo(rest, out);
      case 'kubernetes': return cmdKubernetes(rest, out);
      case undefined: case '-h': case '--help': case 'help':
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new RoamError('INPUT_INVALID', `unknown command ${JSON.stringify(command)}; see 'roam --help'`);
    }
  } catch (e) {
    err(`roam: error: ${describeError(e)}`);
    return e instanceof RoamError && (e.code === 'INPUT_INVALID' || e.code === 'CONFIG_INVALID') ? 2 : 1;
  }
}

const apiOptions = {
  api: { type: 'string' },
  'api-ca': { type: 'string' },
  'api-token-file': { type: 'string' },
  testbed: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** The agent the flags name (api-target.ts). */
function apiOf(values: { api?: string | undefined; 'api-ca'?: string | undefined; 'api-token-file'?: string | undefined; testbed?: string | undefined }, node?: string): ApiChoice {
  return { api: values.api, apiCa: values['api-ca'], apiTokenFile: values['api-token-file'], testbed: values.testbed, node };
}

async function cmdRun(args: string[], out: Out): Promise<number> {
  const dash = args.indexOf('--');
  const command = dash >= 0 ? args.slice(dash + 1) : [];
  const { values, positionals } = parseFlags(dash >= 0 ? args.slice(0, dash) : args, {
    ...apiOptions, node: { type: 'string' }, name: { type: 'string' }, ip: { type: 'string' }, json: { type: 'boolean' },
    rootfs: { type: 'string' }, bundle: { type: 'string' }, volume: { type: 'string', multiple: true }, policy: { type: 'string' },
  }, 'roam run');
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam run: unexpected argument ${JSON.stringify(positionals[0])}; put the command after --`);
  if (!values.node) throw new RoamError('INPUT_INVALID', 'roam run: --node is required');
  if (!values.name) throw new RoamError('INPUT_INVALID', 'roam run: --name is required');
  if (values.rootfs && values.bundle) throw new RoamError('INPUT_INVALID', 'roam run: give --rootfs or --bundle, not both');
  if (values.volume && !values.rootfs && !values.bundle) throw new RoamError('INPUT_INVALID', 'roam run: --volume needs a container (--rootfs or --bundle)');
  if (command.length === 0 && !values.bundle) throw new RoamError('INPUT_INVALID', 'roam run: give the program to run after --');
  const container = values.rootfs || values.bundle
    ? {
      ...(values.rootfs ? { rootfs: resolve(values.rootfs) } : {}), ...(values.bundle ? { bundle: resolve(values.bundle) } : {}),
      volumes: (values.volume ?? []).map((v) => parseVolumeFlag(v)).map((v) => ({ source: resolve(v.source), destination: v.destination })),
    }
    : undefined;
  const api = resolveApi(apiOf(values, values.node));
  const policy = values.policy === undefined ? undefined : parsePolicyJson(values.policy, 'roam run: --policy');
  const body = { name: values.name, node: values.node, command, ...(values.ip ? { ip: values.ip } : {}), ...(container ? { container } : {}), ...(policy ? { policy } : {}) };
  const record = await callJson<EndpointRecord>(api, 'POST', '/v1/endpoints', body, { unreachable: 'PRECONDITION' });
  if (values.json) out(JSON.stringify(record));
  else out(`${record.name} running on ${record.node}: ip ${record.ip}, mac ${record.mac}, pid ${record.pid ?? '-'}`);
  return 0;
}

async function cmdPs(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...apiOptions, json: { type: 'boolean' } }, 'roam ps');
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam ps: unexpected argument ${JSON.stringify(positionals[0])}`);
  const eps = await callJson<EndpointRecord[]>(resolveApi(apiOf(values)), 'GET', '/v1/endpoints', undefined, { unreachable: 'PRECONDITION' });
  if (values.json) {
    out(JSON.stringify(eps));
    return 0;
  }
  out(formatTable(['NAME', 'NODE', 'IP', 'MAC', 'PID', 'STATE', 'NETNS'], eps.map((e) => [e.name, e.node, e.ip, e.mac, String(e.pid ?? '-'), e.state, e.netns ?? '-'])));
  return 0;
}

function oneName(args: string[], what: string): { name: string; api: ApiChoice } {
  const { values, positionals } = parseFlags(args, apiOptions, what);
  if (positionals.length !== 1) throw new RoamError('INPUT_INVALID', `${what}: give exactly one endpoint name`);
  return { name: positionals[0]!, api: apiOf(values) };
}

async function cmdLogs(args: string[], out: Out): Promise<number> {
  const a = oneName(args, 'roam logs');
  const text = await callRaw(resolveApi(a.api), 'GET', `/v1/endpoints/${encodeURIComponent(a.name)}/logs`, undefined, { unreachable: 'PRECONDITION' });
  out(text.replace(/\n$/, ''));
  return 0;
}

async function cmdStop(args: string[], out: Out): Promise<number> {
  const a = oneName(args, 'roam stop');
  await callJson(resolveApi(a.api), 'DELETE', `/v1/endpoints/${encodeURIComponent(a.name)}`, undefined, { unreachable: 'PRECONDITION' });
  out(`${a.name} stopped`);
  return 0;
}

async function cmdMigrate(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...apiOptions, to: { type: 'string' }, mode: { type: 'string' }, handover: { type: 'string' }, presync: { type: 'string' }, json: { type: 'boolean' } }, 'roam migrate');
  if (positionals.length !== 1) throw new RoamError('INPUT_INVALID', 'roam migrate: give exactly one endpoint name');
  if (!values.to) throw new RoamError('INPUT_INVALID', 'roam migrate: --to NODE is required');
  const api = resolveApi(apiOf(values));
  if (values.presync !== undefined && values.presync !== 'on' && values.presync !== 'off') throw new RoamError('INPUT_INVALID', `roam migrate: --presync takes on or off, got ${JSON.stringify(values.presync)}`);
  const body = {
    endpoint: positionals[0]!, to: values.to, ...(values.mode ? { mode: values.mode } : {}), ...(values.handover ? { handover: values.handover } : {}),
    ...(values.presync ? { presync: values.presync === 'on' } : {}),
  };
  const started = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', body, { unreachable: 'PRECONDITION' });
  const report = await followMigration(api, started, values.json ? () => undefined : out);
  if (values.json) out(JSON.stringify(report));
  return report.result === 'success' ? 0 : 1;
}

/** A policy as JSON text; the agent checks it against the schema and names the field that is wrong. */
function parsePolicyJson(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RoamError('INPUT_INVALID', `${what}: not JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RoamError('INPUT_INVALID', `${what}: expected a JSON object`);
  return value as Record<string, unknown>;
}

async function cmdPolicy(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...apiOptions, clear: { type: 'boolean' } }, 'roam policy');
  const [name, text, extra] = positionals;
  if (!name || extra !== undefined) throw new RoamError('INPUT_INVALID', 'roam policy: give an endpoint name and a policy (or --clear)');
  if (values.clear === (text !== undefined)) throw new RoamError('INPUT_INVALID', 'roam policy: give either a policy or --clear');
  const body = text === undefined ? {} : { policy: parsePolicyJson(text, 'roam policy') };
  const answer = await callJson<{ policy: unknown }>(resolveApi(apiOf(values)), 'PUT', `/v1/endpoints/${encodeURIComponent(name)}/policy`, body, { unreachable: 'PRECONDITION' });
  out(answer.policy === null ? `${name}: back to the agents' default policy` : `${name}: ${JSON.stringify(answer.policy)}`);
  return 0;
}

async function cmdDrain(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...apiOptions, off: { type: 'boolean' } }, 'roam drain');
  if (positionals.length !== 1) throw new RoamError('INPUT_INVALID', 'roam drain: give exactly one node name');
  const node = positionals[0]!;
  const draining = !values.off;
  await callJson(resolveApi(apiOf(values, node)), 'PUT', `/v1/nodes/${encodeURIComponent(node)}/drain`, { draining }, { unreachable: 'PRECONDITION' });
  out(draining ? `${node} is draining: its endpoints move off it (roam decisions says where)` : `${node} is no longer draining`);
  return 0;
}

async function cmdDecisions(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...apiOptions, json: { type: 'boolean' } }, 'roam decisions');
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam decisions: unexpected argument ${JSON.stringify(positionals[0])}`);
  const list = await callJson<DecisionWire[]>(resolveApi(apiOf(values)), 'GET', '/v1/decisions', undefined, { unreachable: 'PRECONDITION' });
  if (values.json) out(JSON.stringify(list));
  else out(formatTable(['TIME', 'NODE', 'ENDPOINT', 'POLICY', 'OUTCOME', 'TO', 'WHY'], list.map((d) => [d.at.slice(11, 23), d.node, d.endpoint, d.policy, d.outcome, d.to ?? '-', d.reason])));
  return 0;
}

async function cmdTestbed(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseFlags(rest, { name: { type: 'string' }, nodes: { type: 'string' }, 'underlay-rate': { type: 'string' }, json: { type: 'boolean' }, 'sync-interval-ms': { type: 'string' } }, `roam testbed ${sub ?? ''}`.trim());
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam testbed: unexpected argument ${JSON.stringify(positionals[0])}`);
  const name = values.name ?? process.env.ROAM_TESTBED ?? DEFAULT_TESTBED;
  const say: Out = values.json ? () => undefined : out;
  switch (sub) {
    case 'up': {
      if (values.nodes !== undefined && !/^\d+$/.test(values.nodes)) throw new RoamError('INPUT_INVALID', `--nodes: expected a whole number, got ${JSON.stringify(values.nodes)}`);
      const sync = values['sync-interval-ms'] === undefined ? undefined : Number(values['sync-interval-ms']);
      const state = await testbedUp({ name, nodes: values.nodes === undefined ? 3 : Number(values.nodes), underlayRate: values['underlay-rate'], say, ...(sync ? { syncIntervalMs: sync } : {}) });
      if (values.json) out(JSON.stringify(describeTestbed(state)));
      else out(`testbed ${name} up: ${state.nodes.map((n) => `${n.name} (${n.underlayIp})`).join(', ')}`);
      return 0;
    }
    case 'down':
      await testbedDown(name, say);
      return 0;
    case 'status': {
      const state = readTestbedState(name);
      if (!state) throw new RoamError('NOT_FOUND', `testbed ${name} is not up`);
      if (values.json) out(JSON.stringify(describeTestbed(state)));
      else out(formatTable(['NODE', 'UNDERLAY', 'API', 'METRICS', 'AGENT PID'], state.nodes.map((n) => [n.name, n.underlayIp, n.apiSocket, n.metrics, String(n.agentPid)])));
      return 0;
    }
    default:
      throw new RoamError('INPUT_INVALID', `roam testbed: expected up, down or status, got ${JSON.stringify(sub ?? '')}`);
  }
}

function cmdKubernetes(args: string[], out: Out): number {
  const [sub, ...rest] = args;
  if (sub !== 'crds') throw new RoamError('INPUT_INVALID', `roam kubernetes: expected crds, got ${JSON.stringify(sub ?? '')}`);
  if (rest.length > 0) throw new RoamError('INPUT_INVALID', `roam kubernetes crds: unexpected argument ${JSON.stringify(rest[0])}`);
  out(crdsYaml().trimEnd()); // out() ends the line
  return 0;
}

function describeTestbed(state: NonNullable<ReturnType<typeof readTestbedState>>) {
  return {
    name: state.name,
    underlayRate: state.underlayRate,
    nodes: state.nodes.map((n) => ({ name: n.name, netns: n.netns, underlay: n.underlayIp, api: n.apiSocket, metrics: `http://${n.metrics}/metrics`, agentPid: n.agentPid, log: n.logPath })),
  };
}
