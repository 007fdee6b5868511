/**
 * streamed: as stop-copy, but the dump sends the memory pages straight to a
 * CRIU page server the target started at prepare, so dump and transfer
 * overlap; only the other (small) images travel afterwards.
 */
import { RoamError } from '../../errors/roam-error.js';
import { startPageServer, waitForPageServer } from '../../checkpoint/page-server.js';
import type { ModeStrategy } from './mode.js';

/** How long a restore waits for the page server to finish writing what the dump sent. */
const PAGE_SERVER_DRAIN_MS = 60000;

export const streamed: ModeStrategy = {
  name: 'streamed',
  preparesBeforeFreeze: true,
  forContainers: true,
  async prepareArrival(a) {
    a.pageServer = await startPageServer(a.imagesDir, a.underlayAddress, a.pageTls, a.sourceAddress ? [a.sourceAddress] : undefined);
    return { pageServerPort: a.pageServer.port };
  },
  async dump(s) {
    const port = s.prepared.pageServerPort;
    if (!port) throw new RoamError('PEER_PROTOCOL', 'streamed: the target prepared no page server');
    return { result: await s.checkpointer.dump({ ...s.request, pageServer: { address: s.targetAddress, port } }) };
  },
  async beforeRestore(a) {
    // The dump is over when the source asks for the restore; the page server writes its last pages and exits.
    if (a.pageServer) await waitForPageServer(a.pageServer, PAGE_SERVER_DRAIN_MS);
  },
};
