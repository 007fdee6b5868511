/**
 * The bench's pictures, drawn from its scenarios' JSON: by run.ts after a
 * run, or again from a kept result (`node dist/bench/plots.js
 * bench/results/all.json`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lineChart } from './svg-plot.js';

interface Scenarios {
  convergence?: { results?: { nodes: number; median_ms: number; p95_ms: number; after_create_returned_median_ms: number }[] };
  handover?: { samples?: { handover: string; frozen_ms: number; client_stall_p95_ms: number; probe_gap_ms: number }[] };
  memory?: { summary?: { mode: string; rows: { size_mib: number; frozen_ms: number; probe_gap_ms: number; client_stall_p95_ms?: number }[] }[] };
  soak?: { samples?: { after_migrations: number; agent_fds: number; agent_rss_mib: number; testbed_processes: number; links: number }[] };
}

function byName(scenarios: unknown[]): Scenarios {
  const find = (name: string) => scenarios.find((s) => (s as { scenario?: string }).scenario === name) as never;
  return { convergence: find('location_convergence'), handover: find('handover'), memory: find('memory'), soak: find('soak') };
}

export function writePlots(dir: string, scenarios: unknown[]): void {
  const { convergence, handover, memory, soak } = byName(scenarios);
  if (soak?.samples) writeFileSync(`${dir}soak.svg`, lineChart({
    title: 'The three agents over back-to-back migrations',
    xLabel: 'migrations done',
    yLabel: 'count / MiB',
    series: [
      { name: 'RSS (MiB)', points: soak.samples.map((s) => ({ x: s.after_migrations, y: s.agent_rss_mib })) },
      { name: 'open fds', points: soak.samples.map((s) => ({ x: s.after_migrations, y: s.agent_fds })) },
      { name: 'node links', points: soak.samples.map((s) => ({ x: s.after_migrations, y: s.links })) },
    ],
  }));
  if (convergence?.results) writeFileSync(`${dir}convergence.svg`, lineChart({
    title: 'Time for every node to reflect an endpoint\'s new location',
    xLabel: 'nodes',
    yLabel: 'milliseconds',
    series: [
      { name: 'median', points: convergence.results.map((r) => ({ x: r.nodes, y: r.median_ms })) },
      { name: 'p95', points: convergence.results.map((r) => ({ x: r.nodes, y: r.p95_ms })) },
      { name: 'after API answered', points: convergence.results.map((r) => ({ x: r.nodes, y: r.after_create_returned_median_ms })) },
    ],
  }));
  if (handover?.samples) writeFileSync(`${dir}handover.svg`, lineChart({
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
  if (memory?.summary) {
    const sizes = memory.summary[0]?.rows.map((r) => r.size_mib) ?? [];
    const limit = { name: 'target: 300 ms', points: [Math.min(...sizes), Math.max(...sizes)].map((x) => ({ x, y: 300 })) };
    writeFileSync(`${dir}memory.svg`, lineChart({
      title: 'Frozen time against the memory a service holds (1 Gbit/s)',
      xLabel: 'MiB held',
      yLabel: 'frozen (ms, log scale)',
      yLog: true,
      series: [...memory.summary.map((m) => ({ name: m.mode, points: m.rows.map((r) => ({ x: r.size_mib, y: r.frozen_ms })) })), limit],
    }));
    writeFileSync(`${dir}memory-stall.svg`, lineChart({
      title: 'What a probe client waited across the move (1 Gbit/s)',
      xLabel: 'MiB held',
      yLabel: 'longest probe gap (ms, log scale)',
      yLog: true,
      series: memory.summary.map((m) => ({ name: m.mode, points: m.rows.map((r) => ({ x: r.size_mib, y: r.probe_gap_ms })) })),
    }));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/bench/plots.js RESULTS.json\n');
    process.exit(2);
  }
  const results = JSON.parse(readFileSync(file, 'utf8')) as { scenarios: unknown[] };
  writePlots(`${dirname(file)}/`, results.scenarios);
}
