/**
 * Post-copy, source side: dumps everything but the tree's anonymous memory,
 * which a CRIU page server on `address`:`port` then serves to the target's
 * lazy-pages daemon. The tree stays stopped until the caller decides its
 * fate: CRIU would kill it when the connection ends, even if the target got
 * only part of the memory (hence leave_stopped), and would let it run,
 * connections still in repair mode, if serving failed (hence a SIGSTOP
 * queued while CRIU holds it). CRIU runs in its own session so that the
 * pull survives the agent.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pageServerRefusalIn } from '../sys/criu/rpc.js';
import { unlockNetns } from '../sys/nft.js';
import { ungatePort } from '../sys/port-gate.js';
import { isSameProcessAlive, processStartTime } from '../sys/proc.js';
import type { DumpResult, LazyDump, LazyDumpRequest } from './checkpointer.js';
import type { PageServerTls } from './page-server-tls.js';
import { startTreeDump } from './tree-dump.js';

export async function startLazyDump(pid: number, req: LazyDumpRequest): Promise<LazyDump> {
  const root = { pid, startTime: processStartTime(pid) ?? 0 };
  const ready = deferred<DumpResult>();
  let dump: Awaited<ReturnType<typeof startTreeDump>>;
  try {
    dump = await startTreeDump(pid, req, { address: req.address, port: req.port, onReady: ready.resolve });
  } catch (err) {
    if (req.gated) ungatePort(req.port);
    throw err;
  }
  const served = dump.criu.then(
    () => undefined,
    (err: unknown) => {
      if (!ready.settled) {
        // CRIU resumed the tree: it must not stay cut off.
        unlockNetns(req.netns);
        ready.reject(err);
      }
      const refusal = pageServerRefusalIn(join(req.imagesDir, 'dump.log'));
      if (refusal) req.onRefusal?.(refusal);
      throw err;
    },
  );
  served.catch(() => undefined).finally(() => {
    if (req.gated) ungatePort(req.port);
  });
  return {
    ready: ready.promise, served, address: req.address, port: req.port, root, dumper: dump.dumper,
    cancel: async () => {
      if (!isSameProcessAlive(dump.dumper.pid, dump.dumper.startTime)) return;
      await endLazyPageServer(req.address, req.port, req.tls);
      await served.catch(() => undefined);
    },
  };
}

/**
 * Ends a lazy dump's page server whose target will not come: CRIU takes a
 * connection that ends without asking for anything as the end of the pull,
 * and leaves the tree stopped for its owner to resume. Over TLS the
 * handshake is completed first, as an authenticated client: a failed one
 * would be a refusal, logged and counted as a stranger's.
 */
export function endLazyPageServer(address: string, port: number, tls: PageServerTls | undefined): Promise<void> {
  return new Promise((resolve) => {
    const sk: Socket = tls
      ? tlsConnect({ host: address, port, ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, () => sk.end())
      : tcpConnect({ host: address, port }, () => sk.end());
    sk.setTimeout(5000, () => sk.destroy());
    sk.on('close', () => resolve());
    sk.on('error', () => resolve());
  });
}

function deferred<T>(): { promise: Promise<T>; settled: boolean; resolve(v: T): void; reject(e: unknown): void } {
  let settle!: { resolve(v: T): void; reject(e: unknown): void };
  const promise = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
  const d = {
    promise,
    settled: false,
    resolve: (v: T) => ((d.settled = true), settle.resolve(v)),
    reject: (e: unknown) => ((d.settled = true), settle.reject(e)),
  };
  return d;
}
