/**
 * post-copy: the dump keeps the anonymous memory back and serves it; the
 * target restores without it and resumes the service at once, while its
 * lazy-pages daemon pulls the memory (on demand and in the background). The
 * frozen time no longer grows with memory. The source tree stays, stopped,
 * until the target has every page; only then is it ended (../pull.ts).
 */
import { RoamError } from '../../errors/roam-error.js';
import { startLazyPages } from '../../checkpoint/lazy-pages.js';
import type { ModeStrategy } from './mode.js';

export const postCopy: ModeStrategy = {
  name: 'post-copy',
  preparesBeforeFreeze: true,
  forContainers: false,
  servesMemory: true,
  prepareArrival: async () => ({}),
  async dump(s) {
    if (!s.checkpointer.lazyDump) throw new RoamError('INPUT_INVALID', `mode: post-copy is not available for a ${s.checkpointer.kind}`);
    const lazy = await s.checkpointer.lazyDump({ ...s.request, ...s.lazyServer() });
    return { result: await lazy.ready, lazy };
  },
  async beforeRestore(a, lazySource, id) {
    if (!lazySource) throw new RoamError('INPUT_INVALID', `migration ${id}: a post-copy restore needs the source's lazy page server`);
    a.lazyPages = await startLazyPages(a.imagesDir, lazySource, a.pageTls);
  },
};
