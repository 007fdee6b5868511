/** A node for kernel tests: a fresh namespace with an up bridge, and an endpoint manager on it. */
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EndpointManager } from '../../src/endpoint/manager.js';
import { EventBus } from '../../src/events/bus.js';
import { addBridge, requireLink, setLinkUp } from '../../src/sys/netlink/links.js';
import { RtnlSession } from '../../src/sys/netlink/session.js';
import { freshDir, freshNetns } from './netns.js';
import { waitFor } from './wait.js';
import { streamVerifies, workload } from './workloads.js';

export async function nodeWithManager(t: ExecutionContext, prefix: string, stopGraceMs = 500) {
  const dir = freshDir(t, prefix);
  const ns = freshNetns(t, dir, 'node');
  const s = RtnlSession.open(ns);
  await addBridge(s, 'roam0', 1450);
  const br = await requireLink(s, 'roam0');
  await setLinkUp(s, br);
  const stateDir = join(dir, 'state');
  const make = () => new EndpointManager({
    node: 'n1', stateDir, subnet: '10.244.0.0/16', range: '10.244.1.0/24', mtu: 1450, session: s,
    bridgeIndex: () => br.index, clusterEndpoints: () => [], events: new EventBus(), stopGraceMs,
  });
  const manager = make();
  t.teardown(async () => {
    await manager.stopAll().catch(() => undefined);
    s.close();
  });
  return { dir, ns, s, stateDir, manager, make };
}

/** What endpoint `name` of a kernel-test node wrote so far ('' until its shim has made the log). */
export function logOf(manager: EndpointManager, name: string): string {
  try {
    return readFileSync(join(manager.dirOf(name), 'log'), 'utf8');
  } catch {
    return '';
  }
}

/**
 * An echo server `srv` (with `serverArgs`) and a stream-check client `cli` of it over `connections`
 * connections at 50 kB/s each; returns once the server listens, every connection is open and bytes come back.
 */
export async function echoWithClient(manager: EndpointManager, connections = 1, serverArgs: string[] = []) {
  const srv = await manager.create({ name: 'srv', ip: undefined, command: [process.execPath, workload('echo-server.js'), '--port', '7001', ...serverArgs] });
  await waitFor('srv to listen', () => logOf(manager, 'srv').includes('listening'), 20000);
  await manager.create({ name: 'cli', ip: undefined, command: [process.execPath, workload('stream-check.js'), srv.ip, '7001', '--rate', '50000', '--connections', String(connections)] });
  const log = () => logOf(manager, 'cli');
  await waitFor(`cli's ${connections} connections`, () => log().includes(`"connected":${connections}`), 20000);
  await streamVerifies('cli', log, 10000, 20000);
  return { srv, log };
}
