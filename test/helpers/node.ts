/** A node for kernel tests: a fresh namespace with an up bridge, and an endpoint manager on it. */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import { EndpointManager } from '../../src/endpoint/manager.js';
import { EventBus } from '../../src/events/bus.js';
import { addBridge, requireLink, setLinkUp } from '../../src/sys/netlink/links.js';
import { RtnlSession } from '../../src/sys/netlink/session.js';
import { freshDir, freshNetns } from './netns.js';

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
