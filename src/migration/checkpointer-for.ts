/**
 * The one place that tells a container from a process tree: which
 * checkpointer dumps and restores an endpoint. Everything after this sees
 * only the Checkpointer port.
 */
import type { Checkpointer } from '../checkpoint/checkpointer.js';
import { CriuTreeCheckpointer } from '../checkpoint/criu-tree.js';
import { RuncContainerCheckpointer } from '../checkpoint/runc-container.js';
import type { EndpointManager } from '../endpoint/manager.js';
import type { StoredEndpoint } from '../endpoint/store.js';

export function checkpointerFor(manager: EndpointManager, ep: Pick<StoredEndpoint, 'name' | 'pid' | 'container'>): Checkpointer {
  const dir = manager.dirOf(ep.name);
  return ep.container ? new RuncContainerCheckpointer(manager.containers.files(ep.name, dir)) : new CriuTreeCheckpointer({ pid: ep.pid, dir });
}
