/**
 * Whether this node is marked for maintenance, kept in its state folder so
 * that a restarted agent goes on draining: `<stateDir>/draining` exists.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class DrainFlag {
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'draining');
  }

  isSet(): boolean {
    return existsSync(this.path);
  }

  set(draining: boolean): void {
    if (draining) writeFileSync(this.path, `${new Date().toISOString()}\n`);
    else rmSync(this.path, { force: true });
  }
}
