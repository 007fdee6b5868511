/** Fresh, pinned network namespaces for one test, removed even when it fails. */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, removeNetns } from '../../src/sys/netns/netns.js';
import { nativePaths } from '../../src/sys/native.js';

export function freshDir(t: ExecutionContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `roam-${prefix}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function freshNetns(t: ExecutionContext, dir: string, name: string): string {
  const path = join(dir, name);
  createNetns(path);
  t.teardown(() => removeNetns(path));
  return path;
}

/** Runs a command inside a network namespace only (tests may use tools to look). */
export function inNs(netns: string, cmd: string[]): string {
  return execFileSync(nativePaths.nsexec, ['--net', netns, '--', ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
