/**
 * `roam testbed down`: asks each agent to stop its endpoints, stops the
 * agents, then sweeps whatever is left (processes, namespaces, state) even if
 * agents were already dead. Down with nothing up is harmless.
 */
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { callJson } from '../http/client.js';
import { describeError } from '../errors/roam-error.js';
import { isSameProcessAlive, netnsInode, processesInNetns, processStartTime, stopProcess } from '../sys/proc.js';
import type { StoredEndpoint } from '../endpoint/store.js';
import { removeNetns } from '../sys/netns/netns.js';
import { unmount } from '../sys/mounts.js';
import { NodeContainers } from '../container/node-containers.js';
import { isAgentRunning, stopAgent } from './agent-process.js';
import { NETNS_DIR, TESTBED_ROOT } from './layout.js';
import { readTestbedState } from './state.js';

export async function testbedDown(name: string, say: (line: string) => void): Promise<boolean> {
  const dir = join(TESTBED_ROOT, name);
  const state = readTestbedState(name);
  if (!state && !existsSync(dir) && leftoverNetns(name).length === 0) {
    say(`testbed ${name}: nothing to remove`);
    return false;
  }
  for (const n of state?.nodes ?? []) {
    if (!isAgentRunning(n.agentPid)) continue;
    try {
      const eps = await callJson<{ name: string; node: string }[]>({ socketPath: n.apiSocket }, 'GET', '/v1/endpoints', undefined, { timeoutMs: 3000 });
      for (const ep of eps.filter((e) => e.node === n.name)) {
        await callJson({ socketPath: n.apiSocket }, 'DELETE', `/v1/endpoints/${ep.name}`, undefined, { timeoutMs: 10000 });
      }
    } catch (err) {
      say(`${n.name}: could not stop endpoints through the agent (${describeError(err)}); sweeping them`);
    }
  }
  for (const n of state?.nodes ?? []) await stopAgent(n.agentPid);
  // A node's containerd gets to end its shims itself first.
  for (const n of state?.nodes ?? []) {
    const start = n.containerd ? processStartTime(n.containerd.pid) : undefined;
    if (n.containerd && start !== undefined) await stopProcess(n.containerd.pid, start, 5000);
  }
  // Whatever still runs in the testbed's namespaces once its agents are gone (a page server or lazy-pages daemon
  // of a migration cut short, an endpoint the agent did not stop) would keep them alive past their files: ended.
  await stopProcessesIn([
    ...leftoverNetns(name).map((ns) => join(NETNS_DIR, ns)),
    ...(state?.nodes ?? []).flatMap((n) => namespacesIn(join(n.stateDir, 'netns'))),
  ]);
  // Sweep: endpoint processes and namespaces the agents did not remove.
  for (const n of state?.nodes ?? []) await sweepEndpoints(n.stateDir);
  for (const ns of leftoverNetns(name)) removeNetns(join(NETNS_DIR, ns));
  // Containers' root filesystems the agents did not unmount: never remove files through a mount.
  for (const m of mountsBelow(dir)) unmount(m);
  rmSync(dir, { recursive: true, force: true });
  say(`testbed ${name}: removed`);
  return true;
}

async function sweepEndpoints(stateDir: string): Promise<void> {
  const root = join(stateDir, 'endpoints');
  if (existsSync(root)) {
    for (const name of readdirSync(root)) {
      try {
        const r = JSON.parse(readFileSync(join(root, name, 'record.json'), 'utf8')) as StoredEndpoint;
        if (r.pid && isSameProcessAlive(r.pid, r.startTime)) await stopProcess(r.pid, r.startTime, 0);
        if (r.container) await new NodeContainers(stateDir).remove(name, join(root, name)).catch(() => undefined);
      } catch {
        // no record: nothing was started
      }
    }
  }
  const netnsDir = join(stateDir, 'netns');
  if (existsSync(netnsDir)) for (const f of readdirSync(netnsDir)) removeNetns(join(netnsDir, f));
}

/** Mount points below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}

function namespacesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
}

async function stopProcessesIn(namespaces: string[]): Promise<void> {
  const inodes = new Set(namespaces.map(netnsInode).filter((i): i is number => i !== undefined));
  for (const pid of processesInNetns(inodes)) {
    const startTime = processStartTime(pid);
    if (startTime !== undefined) await stopProcess(pid, startTime, 0);
  }
}

function leftoverNetns(name: string): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).filter((f) => f.startsWith(`roam-${name}-`));
}
