/** The C compiler, for the small static programs the testbed puts into container root filesystems. The sole spawner of cc. */
import { execFileSync } from 'node:child_process';
import { RoamError } from '../errors/roam-error.js';
import { cleanEnv } from './proc.js';

/** Builds `source` into a statically linked executable at `output` (it must run in a root filesystem with no libraries). */
export function buildStaticProgram(source: string, output: string): void {
  try {
    execFileSync('cc', ['-static', '-O2', '-o', output, source], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    throw new RoamError('PRECONDITION', `cc -static ${source}: ${e.stderr?.toString().trim().split('\n').slice(-2).join(' | ') || e.code}; run 'npm run setup' (build-essential)`);
  }
}
