/** What the testbed benches share: polling, a migration through the API, logs, medians. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/api/http-client.js';
import type { HandoverReport, MigrationStatus } from '../src/migration/report.js';
import type { TestbedState } from '../src/testbed/state.js';

export const workload = (f: string): string => fileURLToPath(new URL(`../src/workloads/${f}`, import.meta.url));

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

export const r1 = (x: number): number => Math.round(x * 10) / 10;
export const r2 = (x: number): number => Math.round(x * 100) / 100;

export function logOf(tb: TestbedState, node: string, name: string): string {
  try {
    return readFileSync(`${tb.nodes.find((n) => n.name === node)!.stateDir}/endpoints/${name}/log`, 'utf8');
  } catch {
    return '';
  }
}

export async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function migrateOnce(tb: TestbedState, name: string, to: string, mode: string, handover: string): Promise<HandoverReport> {
  const api = { socketPath: tb.nodes[0]!.apiSocket };
  const m = await callJson<{ id: string; from: string }>(api, 'POST', '/v1/migrations', { endpoint: name, to, mode, handover });
  for (;;) {
    const s = await callJson<MigrationStatus>(api, 'GET', `/v1/migrations/${m.id}?from=${m.from}`);
    if (s.report) return s.report;
    await sleep(20);
  }
}

/** The last progress line of a stream-check endpoint; throws if its stream broke. */
export function probeState(tb: TestbedState, node: string, name: string): { maxGapMs: number; verified: number } {
  const log = logOf(tb, node, name);
  if (/MISMATCH|DISCONNECTED/.test(log)) throw new Error(`bench: ${name} saw a broken stream`);
  const lines = log.trim().split('\n').filter((l) => l.startsWith('{"sent"'));
  return JSON.parse(lines[lines.length - 1] ?? '{"maxGapMs":0,"verified":0}') as { maxGapMs: number; verified: number };
}
