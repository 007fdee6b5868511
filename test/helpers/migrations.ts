/**
 * Migrations through the testbed's API (node1's agent, whichever runs now: its
 * socket path outlives restarts): starting one, reading its status, waiting
 * for a phase or for its end.
 */
import { callJson } from '../../src/http/client.js';
import type { HandoverReport, MigrationStatus } from '../../src/records/migration-report.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { waitFor } from './wait.js';

/** A migration as the API names it: its id and the node that drives it. */
export interface MigrationRef {
  id: string;
  from: string;
}

/** A migration that has ended: its status has the report. */
export type EndedMigration = MigrationStatus & { report: HandoverReport };

export interface MigrationRequest {
  endpoint: string;
  to: string;
  mode?: string;
  handover?: string;
  presync?: boolean;
}

/** Asks node `via`'s agent (index in the testbed, node1 by default) to move an endpoint; returns at once. */
export function startMigration(tb: TestbedState, request: MigrationRequest, via = 0): Promise<MigrationRef> {
  return callJson<MigrationRef>({ socketPath: tb.nodes[via]!.apiSocket }, 'POST', '/v1/migrations', request);
}

/** Through node `via`'s agent (node1 by default). */
export function migrationStatus(tb: TestbedState, m: MigrationRef, via = 0): Promise<MigrationStatus> {
  return callJson<MigrationStatus>({ socketPath: tb.nodes[via]!.apiSocket }, 'GET', `/v1/migrations/${m.id}?from=${m.from}`);
}

/** Polls a migration's status until it has ended; returns that last status. */
export async function migrationEnded(tb: TestbedState, m: MigrationRef, timeoutMs = 60000, what = 'the migration to end', via = 0): Promise<EndedMigration> {
  let last: MigrationStatus | undefined;
  await waitFor(what, async () => {
    last = await migrationStatus(tb, m, via);
    return last.state !== 'running';
  }, timeoutMs);
  return last as EndedMigration;
}

/**
 * Polls a migration's status until `holds` says so; returns that status. A
 * migration that ends first never will: that fails at once, with its report.
 */
export async function migrationReaches(tb: TestbedState, m: MigrationRef, what: string, holds: (s: MigrationStatus) => boolean, timeoutMs = 20000): Promise<MigrationStatus> {
  let last: MigrationStatus | undefined;
  try {
    await waitFor(what, async () => {
      last = await migrationStatus(tb, m);
      if (holds(last)) return true;
      if (last.state !== 'running') throw new Error(`migration ${m.id} ended (${last.state}) before ${what}: ${JSON.stringify(last.report ?? last)}`);
      return false;
    }, timeoutMs);
  } catch (err) {
    if (last?.state === 'running') (err as Error).message += `; its last status: ${JSON.stringify(last)}`;
    throw err;
  }
  return last!;
}

/** Polls a migration's status until it is in `phase` (dump, transfer, …). */
export function migrationInPhase(tb: TestbedState, m: MigrationRef, phase: string, timeoutMs = 20000): Promise<MigrationStatus> {
  return migrationReaches(tb, m, `the ${phase} phase`, (s) => s.phase === phase, timeoutMs);
}

/** Starts a migration and waits for its report. */
export async function migrated(tb: TestbedState, request: MigrationRequest, timeoutMs = 60000): Promise<HandoverReport> {
  return (await migrationEnded(tb, await startMigration(tb, request), timeoutMs)).report;
}
