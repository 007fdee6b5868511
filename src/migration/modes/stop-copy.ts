/**
 * stop-copy: the target is prepared (locked namespace, IP, MAC) before the
 * freeze; the dump writes every image here, and they travel in one stream
 * once it is done.
 */
import type { ModeStrategy } from './mode.js';

export const stopCopy: ModeStrategy = {
  name: 'stop-copy',
  preparesBeforeFreeze: true,
  forContainers: true,
  prepareArrival: async () => ({}),
  dump: async (s) => ({ result: await s.checkpointer.dump(s.request) }),
  beforeRestore: async () => undefined,
};
