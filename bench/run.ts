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
import { soakBench } from './soak.js';
import { containerBench } from './container.js';
import { policyBench } from './policy.js';
import { writePlots } from './plots.js';

const quick = process.argv.includes('--quick');
const only = process.argv.slice(2).find((a) => !a.startsWith('--'));
const started = new Date().toISOString();
const scenarios = [
  only && only !== 'throughput' ? { scenario: 'overlay_throughput', skipped: true } : await throughputBench(quick ? 1 : 3, quick ? 2 : 5),
  only && only !== 'convergence' ? { scenario: 'location_convergence', skipped: true } : await convergenceBench(quick ? [3, 8] : [3, 8, 16], quick ? 3 : 10),
  only && only !== 'migration' ? { scenario: 'migration', skipped: true } : await migrationBench(quick ? 1 : 3, [0, 100]),
  only && only !== 'handover' ? { scenario: 'handover', skipped: true } : await handoverBench(quick ? 2 : 8),
  only && only !== 'memory' ? { scenario: 'memory', skipped: true } : await memoryBench(quick ? 1 : 2, quick ? [16, 128] : [16, 128, 512, 1024]),
  only && only !== 'soak' ? { scenario: 'soak', skipped: true } : await soakBench(quick ? 110 : 510),
  only && only !== 'container' ? { scenario: 'container', skipped: true } : await containerBench(quick ? 1 : 3),
  only && only !== 'policy' ? { scenario: 'policy_follow_client', skipped: true } : await policyBench(quick ? 1 : 3),
];
const report = { started, finished: new Date().toISOString(), host: { cpus: (await import('node:os')).cpus().length }, scenarios };
const text = JSON.stringify(report, null, 2);
const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}${only ? `${only}.json` : 'all.json'}`, `${text}\n`);
writePlots(dir, scenarios);
process.stdout.write(`${text}\n`);
