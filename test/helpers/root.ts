/** Kernel-facing tests need root: without it they fail, loudly, never skip. */
import process from 'node:process';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('these tests create network namespaces, links and processes: run them as root (they do not skip)');
  }
}
