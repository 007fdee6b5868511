/**
 * A testbed node's own containerd, for the pods' tests: started inside the
 * node's network namespace with a root, state, socket, runc state and CNI
 * configuration of its own under the node's folder (so that three of them
 * share a host without meeting), answering on its socket before the
 * testbed is up. `testbed down` stops it with the rest of what runs in the
 * node's namespace.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { containerdConfig } from '../container/containerd-config.js';
import { RoamError } from '../errors/roam-error.js';
import { containerdVersion, startContainerd } from '../sys/containerd.js';
import { isSameProcessAlive, processStartTime } from '../sys/proc.js';
import type { NodeLayout } from './layout.js';

/** Debian's CNI plugins. */
export const CNI_BIN_DIR = '/usr/lib/cni';

export interface NodeContainerd {
  pid: number;
  address: string;
  runcRoot: string;
}

export function containerdLayout(node: NodeLayout) {
  const dir = join(node.dir, 'containerd');
  return {
    dir, config: join(dir, 'config.toml'), log: join(dir, 'containerd.log'),
    root: join(dir, 'root'), state: join(dir, 'state'), address: join(dir, 'containerd.sock'), runcRoot: join(dir, 'runc'), cniConfDir: join(dir, 'cni'),
  };
}

/** The node's containerd: the one already running, or a new one once it answers. */
export async function ensureNodeContainerd(node: NodeLayout, running: NodeContainerd | undefined): Promise<NodeContainerd> {
  const l = containerdLayout(node);
  if (running && isSameProcessAlive(running.pid, processStartTime(running.pid) ?? -1)) return running;
  for (const d of [l.root, l.state, l.runcRoot, l.cniConfDir]) mkdirSync(d, { recursive: true });
  writeFileSync(l.config, containerdConfig({
    major: 1, root: l.root, state: l.state, address: l.address, runcRoot: l.runcRoot, cniBinDir: CNI_BIN_DIR, cniConfDir: l.cniConfDir,
    sandboxImage: 'registry.k8s.io/pause:3.6',
  }));
  const pid = startContainerd(node.netnsPath, l.config, l.log);
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      await containerdVersion(l.address);
      return { pid, address: l.address, runcRoot: l.runcRoot };
    } catch (err) {
      if (!isSameProcessAlive(pid, processStartTime(pid) ?? -1)) throw new RoamError('TESTBED', `${node.name}: containerd exited during start-up; see ${l.log}`);
      if (Date.now() > deadline) throw new RoamError('TESTBED', `${node.name}: containerd does not answer on ${l.address} after 20 s (${(err as Error).message}); see ${l.log}`);
      await sleep(100);
    }
  }
}
