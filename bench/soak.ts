/**
 * Soak: hundreds of back-to-back migrations on one testbed, services
 * rotating node1 -> node2 -> node3 and modes rotating stop-copy ->
 * post-copy -> streamed, while each service's client (on another node's
 * overlay, through the moves) checks every byte of its stream. Every 50
 * moves the agents' file descriptors and memory, and the host's endpoint
 * namespaces, links, FDB entries, migration folders and processes are
 * counted. The baseline is the first count after a warm-up: what the last
 * count adds to it is growth, which should be nothing but noise.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callJson } from '../src/http/client.js';
import type { EndpointRecord } from '../src/records/endpoint.js';
import { endpointLog, median, migrateOnce, onBenchTestbed, quantile, r1, waitFor, workload, type BenchTestbed } from './common.js';

const SERVICES = 3;
const MODES = ['stop-copy', 'post-copy', 'streamed'] as const;
const NODES = ['node1', 'node2', 'node3'];
const SAMPLE_EVERY = 50;
const WARM_UP = 50;

interface Counts {
  after_migrations: number;
  agent_fds: number;
  agent_rss_mib: number;
  endpoint_netns: number;
  links: number;
  fdb_entries: number;
  migration_dirs: number;
  testbed_processes: number;
}

function agentFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssMib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

function inNode(netns: string, args: string[]): string {
  return execFileSync('ip', ['-n', netns.split('/').pop()!, ...args], { encoding: 'utf8' });
}

function count(b: BenchTestbed, after: number): Counts {
  const root = join(b.tb.nodes[0]!.stateDir, '..', '..');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => / - nsfs /.test(l) && l.includes(root));
  const processes = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(root);
    } catch {
      return false;
    }
  });
  const migrationDirs = b.tb.nodes.reduce((n, node) => n + (existsSync(join(node.stateDir, 'migrations')) ? readdirSync(join(node.stateDir, 'migrations')).length : 0), 0);
  return {
    after_migrations: after,
    agent_fds: b.tb.nodes.reduce((n, node) => n + agentFds(node.agentPid), 0),
    agent_rss_mib: r1(b.tb.nodes.reduce((n, node) => n + rssMib(node.agentPid), 0)),
    endpoint_netns: mounts.length,
    links: b.tb.nodes.reduce((n, node) => n + inNode(node.netns, ['-o', 'link', 'show']).trim().split('\n').length, 0),
    fdb_entries: b.tb.nodes.reduce((n, node) => n + execFileSync('bridge', ['-n', node.netns.split('/').pop()!, 'fdb', 'show'], { encoding: 'utf8' }).trim().split('\n').length, 0),
    migration_dirs: migrationDirs,
    testbed_processes: processes.length,
  };
}

/** Bytes a client has verified so far; throws on a broken stream. */
function verified(b: BenchTestbed, client: string): number {
  const log = endpointLog(b.tb, 'node3', client) + endpointLog(b.tb, 'node1', client) + endpointLog(b.tb, 'node2', client);
  if (/MISMATCH|DISCONNECTED/.test(log)) throw new Error(`bench: soak client ${client} saw a broken stream`);
  const lines = log.trim().split('\n').filter((l) => l.startsWith('{"sent"'));
  return (JSON.parse(lines[lines.length - 1] ?? '{"verified":0}') as { verified: number }).verified;
}

export async function soakBench(migrations: number): Promise<Record<string, unknown>> {
  const samples: Counts[] = [];
  const frozen: number[] = [];
  const failures: string[] = [];
  const byMode: Record<string, number> = {};
  let clientsVerified: number[] = [];
  const started = performance.now();
  await onBenchTestbed('bsoak', async (b) => {
    const where: string[] = [];
    for (let i = 0; i < SERVICES; i++) {
      const ep = await callJson<EndpointRecord>(b.api, 'POST', '/v1/endpoints', { name: `soak${i}`, node: 'node1', command: [process.execPath, workload('echo-server.js'), '--port', '7001'] });
      await waitFor(`soak${i} to start`, () => endpointLog(b.tb, 'node1', `soak${i}`).includes('listening'), 20000);
      // The clients stay put on node3's side of the overlay; their services come and go, node3 included.
      await callJson(b.api, 'POST', '/v1/endpoints', { name: `client${i}`, node: 'node3', command: [process.execPath, workload('stream-check.js'), ep.ip, '7001', '--rate', '20000', '--connections', '4'] });
      where.push('node1');
    }
    await waitFor('the soak clients to flow', () => [...Array(SERVICES).keys()].every((i) => verified(b, `client${i}`) > 0), 20000);
    for (let n = 0; n < migrations; n++) {
      if (n === WARM_UP || (n > WARM_UP && n % SAMPLE_EVERY === 0)) samples.push(count(b, n));
      const i = n % SERVICES;
      const mode = MODES[Math.floor(n / SERVICES) % MODES.length]!;
      const to = NODES[(NODES.indexOf(where[i]!) + 1) % NODES.length]!;
      const report = await migrateOnce(b.tb, `soak${i}`, to, mode);
      if (report.result !== 'success') failures.push(`#${n} soak${i} ${where[i]}->${to} ${mode}: ${report.result}: ${report.reason ?? ''}`);
      else {
        where[i] = to;
        frozen.push(report.frozen_ms);
        byMode[mode] = (byMode[mode] ?? 0) + 1;
      }
    }
    // Post-copy sources let their trees go once the pull is over: give the last ones their moment.
    await sleep(3000);
    samples.push(count(b, migrations));
    const before = [...Array(SERVICES).keys()].map((i) => verified(b, `client${i}`));
    await sleep(1500);
    clientsVerified = [...Array(SERVICES).keys()].map((i) => verified(b, `client${i}`));
    clientsVerified.forEach((v, i) => {
      if (v <= before[i]!) failures.push(`client${i} stopped advancing after the last move`);
    });
    for (let i = 0; i < SERVICES; i++) {
      await callJson(b.api, 'DELETE', `/v1/endpoints/client${i}`);
      await callJson(b.api, 'DELETE', `/v1/endpoints/soak${i}`);
    }
  });
  const base = samples[0]!;
  const last = samples[samples.length - 1]!;
  const growth = Object.fromEntries(
    (Object.keys(base) as (keyof Counts)[]).filter((k) => k !== 'after_migrations').map((k) => [k, r1(last[k] - base[k])]),
  );
  const ratio = Object.fromEntries(
    (Object.keys(base) as (keyof Counts)[]).filter((k) => k !== 'after_migrations' && base[k] > 0).map((k) => [k, Math.round((last[k] / base[k]) * 100) / 100]),
  );
  const leaks = ['agent_fds', 'endpoint_netns', 'links', 'fdb_entries', 'migration_dirs', 'testbed_processes'].filter((k) => (growth[k] ?? 0) > 0);
  return {
    scenario: 'soak',
    what: `${migrations} back-to-back migrations of ${SERVICES} services (4 checked client streams each), rotating nodes and modes (${MODES.join(', ')}); resources counted every ${SAMPLE_EVERY} moves after a ${WARM_UP}-move warm-up (the baseline)`,
    migrations,
    succeeded: frozen.length,
    failures,
    by_mode: byMode,
    duration_s: r1((performance.now() - started) / 1000),
    frozen_ms: { p50: r1(median(frozen)), p95: r1(quantile(frozen, 0.95)), max: r1(Math.max(...frozen)) },
    client_bytes_verified: clientsVerified,
    streams_byte_exact: !failures.some((f) => f.startsWith('client')),
    growth_last_minus_baseline: growth,
    ratio_last_to_baseline: ratio,
    leaks,
    samples,
  };
}
