// Summarises compare-builds.sh's runs: per build, min/median/max of each
// scenario's headline figures over the rounds, and new/old of the medians.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [out, scenario] = process.argv.slice(2);
/** The figures each scenario is read for: name -> value of one run's result. */
const FIGURES = {
  migration: (s) => Object.fromEntries(s.summary.flatMap((row) => [
    [`stop-copy ${row.size_mib} MiB frozen_ms`, row.roam_stop_copy.frozen_ms],
    [`stop-copy ${row.size_mib} MiB probe_gap_ms`, row.roam_stop_copy.probe_gap_ms],
    [`cold ${row.size_mib} MiB frozen_ms`, row.baseline_cold.frozen_ms],
    [`stop-copy/cold ${row.size_mib} MiB frozen`, row.ratio_frozen_roam_to_baseline],
  ])),
  memory: (s) => Object.fromEntries(s.summary.flatMap((m) => m.rows.flatMap((row) => [
    [`${m.mode} ${row.size_mib} MiB frozen_ms`, row.frozen_ms],
    [`${m.mode} ${row.size_mib} MiB probe_gap_ms`, row.probe_gap_ms],
  ]))),
  handover: (s) => Object.fromEntries(s.summary.flatMap((row) => [
    [`${row.handover} frozen_ms`, row.frozen_ms],
    [`${row.handover} client_stall_p95_over_frozen_ms`, row.client_stall_p95_over_frozen_ms],
    [`${row.handover} probe_gap_to_frozen`, row.probe_gap_to_frozen],
  ])),
};
const runs = { old: [], new: [] };
for (const f of readdirSync(out).filter((n) => n.startsWith(`${scenario}-`) && n.endsWith('.json')).sort()) {
  const build = f.split('-').at(-2);
  const s = JSON.parse(readFileSync(join(out, f), 'utf8')).scenarios.find((x) => x.scenario === scenario);
  runs[build].push(FIGURES[scenario](s));
}
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const stats = (xs) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });
const summary = {};
for (const key of Object.keys(runs.old[0] ?? {})) {
  const o = stats(runs.old.map((r) => r[key]));
  const n = stats(runs.new.map((r) => r[key]));
  summary[key] = { old: o, new: n, new_over_old_median: o.median ? Math.round((n.median / o.median) * 100) / 100 : null };
}
const result = { scenario, rounds: runs.old.length, summary };
writeFileSync(join(out, `${scenario}-summary.json`), `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
