/**
 * `npm run bench`: runs every scenario, prints one JSON document, and keeps
 * a copy in bench/results/. Figures are ratios against baselines measured in
 * the same run: this machine is shared and noisy.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { convergenceBench, throughputBench } from './overlay.js';
import { migrationBench } from './migration.js';
import { handoverBench } from './handover.js';
import { memoryBench } from './memory.js';
import { lineChart } from './svg-plot.js';

const quick = process.argv.includes('--quick');
const only = process.argv.slice(2).find((a) => !a.startsWith('--'));
const started = new Date().toISOString();
const scenarios = [
  only && only !== 'throughput' ? { scenario: 'overlay_throughput', skipped: true } : await throughputBench(quick ? 1 : 3, quick ? 2 : 5),
  only && only !== 'convergence' ? { scenario: 'location_convergence', skipped: true } : await convergenceBench(quick ? [3, 8] : [3, 8, 16], quick ? 3 : 10),
  only && only !== 'migration' ? { scenario: 'migration', skipped: true } : await migrationBench(quick ? 1 : 3, [0, 100]),
  only && only !== 'handover' ? { scenario: 'handover', skipped: true } : await handoverBench(quick ? 2 : 8),
  only && only !== 'memory' ? { scenario: 'memory', skipped: true } : await memoryBench(quick ? 1 : 2, quick ? [16, 128] : [16, 128, 512, 1024]),
];
const report = { started, finished: new Date().toISOString(), host: { cpus: (await import('node:os')).cpus().length }, scenarios };
const text = JSON.stringify(report, null, 2);
const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}${only ? `${only}.json` : 'all.json'}`, `${text}\n`);
const convergence = scenarios[1] as { results?: { nodes: number; median_ms: number; p95_ms: number; after_create_returned_median_ms: number }[] };
if (convergence.results) writeFileSync(`${dir}convergence.svg`, lineChart({
  title: 'Time for every node to reflect an endpoint\'s new location',
  xLabel: 'nodes',
  yLabel: 'milliseconds',
  series: [
    { name: 'median', points: convergence.results.map((r) => ({ x: r.nodes, y: r.median_ms })) },
    { name: 'p95', points: convergence.results.map((r) => ({ x: r.nodes, y: r.p95_ms })) },
    { name: 'after API answered', points: convergence.results.map((r) => ({ x: r.nodes, y: r.after_create_returned_median_ms })) },
  ],
}));
const handover = scenarios[3] as { samples?: { handover: string; frozen_ms: number; client_stall_p95_ms: number; probe_gap_ms: number }[] };
if (handover.samples) writeFileSync(`${dir}handover.svg`, lineChart({
  title: 'What clients waited vs how long the service was frozen',
  xLabel: 'frozen (ms)',
  yLabel: 'p95 client stall (ms)',
  series: [
    ...['full', 'replay', 'kick', 'off'].map((h) => ({
      name: h,
      points: handover.samples!.filter((s) => s.handover === h).map((s) => ({ x: s.frozen_ms, y: s.client_stall_p95_ms })).sort((a, b) => a.x - b.x),
    })),
    { name: 'target: frozen + 20', points: [Math.min(...handover.samples.map((s) => s.frozen_ms)), Math.max(...handover.samples.map((s) => s.frozen_ms))].map((x) => ({ x, y: x + 20 })) },
  ],
}));
const memory = scenarios[4] as { summary?: { mode: string; rows: { size_mib: number; frozen_ms: number }[] }[] };
if (memory.summary) writeFileSync(`${dir}memory.svg`, lineChart({
  title: 'Frozen time against the memory a service holds (1 Gbit/s)',
  xLabel: 'MiB held',
  yLabel: 'frozen (ms)',
  series: memory.summary.map((m) => ({ name: m.mode, points: m.rows.map((r) => ({ x: r.size_mib, y: r.frozen_ms })) })),
}));
process.stdout.write(`${text}\n`);
