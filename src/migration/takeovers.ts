/**
 * The target's durable word that it took a migration over, kept from the
 * switch until the source says it has recorded the outcome (the `settled`
 * step). Without it, a source that died after the switch and restarts once
 * the endpoint has moved on (or stopped) would ask "did you take over?" of a
 * node that no longer knows the migration, hear "nothing to abort", and
 * restore the service a second time. A record whose source never comes back
 * goes after KEEP_MS.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';
import { syncFolder, writeFileDurably } from '../sys/durable-file.js';

/** Long past any source's restart; a source away longer than this reads its own journal's switch instead. */
const KEEP_MS = 30 * 24 * 3600 * 1000;
const ID_PATTERN = /^m-[a-z0-9]+-[0-9a-f]{6}$/;

export interface Takeover {
  id: string;
  /** the endpoint it brought here */
  name: string;
  /** the source (its certificate's node name; absent over plaintext peers): only it may settle the migration */
  from?: string;
  at: string;
}

export class Takeovers {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'takeovers');
  }

  /** Durable before it returns: the switch is answered only after it. */
  record(id: string, name: string, from?: string): void {
    if (mkdirSync(this.dir, { recursive: true })) syncFolder(join(this.dir, '..'));
    writeFileDurably(this.path(id), JSON.stringify({ id, name, ...(from !== undefined ? { from } : {}), at: new Date().toISOString() } satisfies Takeover));
  }

  find(id: string): Takeover | undefined {
    const path = this.path(id);
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Takeover) : undefined;
  }

  /** The source has recorded the outcome. */
  forget(id: string): void {
    rmSync(this.path(id), { force: true });
  }

  /** At start: records whose source never settled them within KEEP_MS. */
  expire(now = Date.now()): string[] {
    if (!existsSync(this.dir)) return [];
    const gone: string[] = [];
    for (const f of readdirSync(this.dir)) {
      const path = join(this.dir, f);
      if (now - statSync(path).mtimeMs < KEEP_MS) continue;
      rmSync(path, { force: true });
      gone.push(f.replace(/\.json$/, ''));
    }
    return gone;
  }

  private path(id: string): string {
    if (!ID_PATTERN.test(id)) throw new RoamError('INPUT_INVALID', `migration id ${JSON.stringify(id)} is not one`);
    return join(this.dir, `${id}.json`);
  }
}
