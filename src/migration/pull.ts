/**
 * Post-copy, source side, after the unlock: the service runs on the target
 * while its memory is pulled from here. The pull is paced to a share of the
 * underlay, its progress followed, and the stopped tree here ended once the
 * target says whether it got every page.
 */
import type { LazyDump, PullOutcome } from '../checkpoint/checkpointer.js';
import { describeError } from '../errors/roam-error.js';
import { paceTcp } from '../sys/borrowed-tcp.js';
import { listTcpConnections } from '../sys/netlink/sock-diag.js';
import { stopProcess } from '../sys/proc.js';
import { round, type SourceDeps } from './context.js';
import type { MigrationStatus, PullReport } from '../records/migration-report.js';

/** How often the source asks the target for its verdict on a finished pull. */
const PULL_VERDICT_ATTEMPTS = 5;

/**
 * CRIU's page server would send the pull as fast as TCP goes, filling the
 * link's queue and starving the service's own clients (whose lost packets
 * then wait out retransmission timeouts). Its listening socket gets a maximum
 * pacing rate, a share of the underlay's, which the pull connection inherits
 * when the target connects. Only with a known underlay rate: an assumed one
 * could slow a faster link for nothing.
 */
export function paceThePull(d: SourceDeps, status: MigrationStatus, lazy: LazyDump): number | undefined {
  if (d.underlay.rateMbit === undefined) return undefined;
  const mbit = d.underlay.rateMbit * d.underlay.pullShare;
  try {
    if (paceTcp(lazy.dumper.pid, lazy.port, (mbit * 1e6) / 8) > 0) return mbit;
    d.events.warn(`migration ${status.id}: no page server socket on port ${lazy.port} to pace; the pull goes unpaced`);
  } catch (err) {
    d.events.warn(`migration ${status.id}: could not pace the pull (${describeError(err)}); it goes unpaced`);
  }
  return undefined;
}

/**
 * Progress is what the target acknowledged on the page server's connection.
 * When CRIU's page server ends, the target says whether it got every page:
 * only then is the stopped tree here ended. If it did not, its copy is
 * already ended (it would have read zeros), and so is this one: the service
 * is lost, and says so. If the target cannot be asked, the tree stays stopped
 * here for an operator (the report says so).
 */
export async function followPull(d: SourceDeps, status: MigrationStatus, address: string, lazy: LazyDump, lazyBytes: number, pacedMbit: number | undefined): Promise<PullReport> {
  const started = performance.now();
  const progress = { lazy_bytes: lazyBytes, pulled_bytes: 0 };
  status.pull = progress;
  const emit = (state: 'progress' | 'complete' | 'incomplete') => d.events.emit('migration.pull', {
    id: status.id, name: status.name, state, lazyBytes, pulledBytes: progress.pulled_bytes, durationMs: round(performance.now() - started),
  });
  const sample = async () => {
    const acked = await pageServerAcked(lazy.port).catch(() => undefined);
    // What the wire carried also counts CRIU's page headers and TLS records: never more than the memory itself.
    if (acked !== undefined) progress.pulled_bytes = Math.min(lazyBytes, Math.max(progress.pulled_bytes, acked));
  };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sample();
      emit('progress');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  let servedError: string | undefined;
  await lazy.served.catch((err: unknown) => (servedError = describeError(err)));
  sampling = false;
  await sampler;
  let verdict: PullOutcome | undefined;
  let askError = '';
  for (let attempt = 0; attempt < PULL_VERDICT_ATTEMPTS && !verdict; attempt++) {
    try {
      verdict = await d.target.pullResult(address, status.id);
    } catch (err) {
      askError = describeError(err);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  const base = { lazy_bytes: lazyBytes, duration_ms: round(performance.now() - started), ...(pacedMbit !== undefined ? { paced_mbit: round(pacedMbit) } : {}) };
  if (!verdict) {
    emit('incomplete');
    d.events.error(`migration ${status.id}: no verdict on the pull from ${status.to} (${askError}); the stopped tree ${lazy.root.pid} stays here`);
    return { ...base, result: 'incomplete', pulled_bytes: progress.pulled_bytes, pages_copied: 0, pages_total: 0, reason: `${status.to} could not say whether it has every page (${askError}); the stopped source tree (pid ${lazy.root.pid}) is kept` };
  }
  // Either way, this tree is not to run again: the target ran on from the switch.
  await stopProcess(lazy.root.pid, lazy.root.startTime, 0);
  progress.pulled_bytes = Math.max(progress.pulled_bytes, verdict.copiedPages * 4096);
  const result = verdict.complete ? 'complete' : 'incomplete';
  emit(result);
  const reason = verdict.reason ?? servedError;
  return { ...base, result, pulled_bytes: progress.pulled_bytes, pages_copied: verdict.copiedPages, pages_total: verdict.totalPages, ...(reason && !verdict.complete ? { reason } : {}) };
}

/** Bytes the target acknowledged on the connection to the lazy page server on `port` (this node's namespace). */
async function pageServerAcked(port: number): Promise<number | undefined> {
  const c = (await listTcpConnections('/proc/self/ns/net')).find((x) => x.local.port === port);
  return c?.bytesAcked;
}
