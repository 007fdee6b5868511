/**
 * A real Prometheus (Debian's package) scrapes the testbed's agents. It runs
 * in the testbed's underlay namespace, listening on that namespace's
 * loopback. After one migration, PromQL sees it from both sides, and
 * promtool accepts both the exposition and the alert rules.
 */
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativePaths } from '../../src/sys/native.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { inNs } from '../helpers/netns.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, migrate, serveEcho, stopAfter, streamClient, uniqueTestbedName, upTestbed, waitFor } from '../helpers/testbed.js';

const name = uniqueTestbedName();
const rules = fileURLToPath(new URL('../../../deploy/monitoring/roam-alerts.yaml', import.meta.url));
let tb: TestbedState;
let prometheus: ChildProcess | undefined;
let dir = '';
const underlayNetns = () => `/run/netns/roam-${name}-underlay`;
const fetchScript = "fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { process.stdout.write('ERR ' + e.message); })";

/** HTTP GET from inside the underlay namespace (where Prometheus and the agents' metrics are). */
function get(url: string): string {
  return inNs(underlayNetns(), [process.execPath, '-e', fetchScript, url]);
}

function query(promql: string): number | undefined {
  const body = JSON.parse(get(`http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(promql)}`)) as { data: { result: { value: [number, string] }[] } };
  const first = body.data.result[0];
  return first ? Number(first.value[1]) : undefined;
}

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 2);
  dir = mkdtempSync(join(tmpdir(), 'roam-prom-'));
  writeFileSync(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(rules)}]`,
    'scrape_configs:',
    '  - job_name: roam',
    `    static_configs: [{ targets: [${tb.nodes.map((n) => JSON.stringify(n.metrics)).join(', ')}] }]`,
  ].join('\n'));
  prometheus = spawn(nativePaths.nsexec, ['--net', underlayNetns(), '--', 'prometheus', `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, '--web.listen-address=127.0.0.1:9090'], { stdio: 'ignore' });
  await waitFor('prometheus to scrape both agents', () => {
    try {
      return query('count(up{job="roam"} == 1)') === 2;
    } catch {
      return false;
    }
  }, 30000);
});

test.after.always(async () => {
  if (prometheus && prometheus.exitCode === null) {
    prometheus.kill('SIGTERM');
    await new Promise((resolve) => prometheus!.once('exit', resolve));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  await downClean(name);
});

test.serial('after one migration PromQL returns it from both sides, with one frozen-time observation', async (t) => {
  stopAfter(t, name, 'svc', 'client');
  const svc = await serveEcho(tb, 'node1', 'svc');
  await streamClient(tb, 'node2', 'client', svc.ip, { rate: 20000 });
  const report = await migrate(name, 'svc', 'node2');
  t.is(report.result, 'success', report.reason);
  await waitFor('the migration in Prometheus', () => query('sum(roam_migrations_total{role="target",result="success"})') === 1, 20000);
  t.is(query('sum(roam_migrations_total{role="source",mode="stop-copy",result="success"})'), 1);
  t.is(query('sum(roam_migrations_total{result=~"rolled_back|failed"})'), 0);
  t.is(query('sum(roam_migration_frozen_seconds_count)'), 1);
  const frozen = query('sum(roam_migration_frozen_seconds_sum)')!;
  t.true(Math.abs(frozen - report.frozen_ms / 1000) < 0.001, `frozen ${frozen} s vs report ${report.frozen_ms} ms`);
  t.is(query('sum(roam_migration_phase_seconds_count{phase="transfer"})'), 1);
  t.is(query('min(roam_peers_reachable)'), 1);
  t.is(query('sum(roam_handover_packets_total{outcome="replayed"})'), report.handover!.packets_replayed);
  t.is(query('sum(roam_handover_connections_total{outcome="kicked"})'), 1);
  await waitFor('the client stall in Prometheus', () => query('sum(roam_migration_client_stall_seconds_count)') === 1, 20000);
  const stall = query('sum(roam_migration_client_stall_seconds_sum)')!;
  // The report's frozen window ends when the unlock call returns; the lock lifts within that call.
  const lockLifted = (report.frozen_ms - report.phases.unlock_ms!) / 1000;
  t.true(stall >= lockLifted && stall < report.frozen_ms / 1000 + 5, `the client stalled ${stall} s, frozen ${report.frozen_ms} ms`);
  t.log(`client stall ${Math.round(stall * 1000)} ms for ${report.frozen_ms} ms frozen`);
});

test.serial('a post-copy move shows its pull: count and duration by result, bytes pulled, nothing left in flight', async (t) => {
  stopAfter(t, name, 'pulled', 'pulled-client');
  const svc = await serveEcho(tb, 'node2', 'pulled');
  await streamClient(tb, 'node2', 'pulled-client', svc.ip, { rate: 20000 });
  const report = await migrate(name, 'pulled', 'node1', ['--mode', 'post-copy']);
  t.is(report.result, 'success', report.reason);
  await waitFor('the pull in Prometheus', () => query('sum(roam_postcopy_pulls_total{result="complete"})') === 1, 20000);
  t.is(query('sum(roam_postcopy_pulls_total{result="incomplete"})'), 0);
  t.is(query('sum(roam_postcopy_pull_seconds_count)'), 1);
  t.true(Math.abs(query('sum(roam_postcopy_pull_seconds_sum)')! - report.pull!.duration_ms / 1000) < 0.1, 'the pull took what the report says');
  t.is(query('sum(roam_postcopy_pulled_bytes_total)'), report.pull!.pulled_bytes);
  t.is(query('sum(roam_postcopy_pulls_in_flight)'), 0);
  t.is(query('sum(roam_postcopy_pull_remaining_bytes)'), 0);
});

test.serial('promtool finds no problem in an agent\'s exposition, nor in the alert rules', (t) => {
  const exposition = get(`http://${tb.nodes[0]!.metrics}/metrics`);
  t.regex(exposition, /^# HELP roam_migrations_total /m);
  const metrics = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  t.is(metrics.status, 0, metrics.stdout + metrics.stderr);
  t.is((metrics.stdout + metrics.stderr).trim(), '', 'no lint findings');
  const checked = spawnSync('promtool', ['check', 'rules', rules], { encoding: 'utf8' });
  t.is(checked.status, 0, checked.stdout + checked.stderr);
  t.regex(checked.stdout, /SUCCESS: 7 rules found/);
});
