/**
 * The Migration controller against the API double, with a scripted runner in
 * place of the node's migration machinery: who takes a Migration, the phases
 * its status goes through, the report it ends with, refusals, and an agent
 * that restarted mid-move.
 */
import test, { type ExecutionContext } from 'ava';
import { RoamError } from '../../src/errors/roam-error.js';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { MigrationController, resourcePhase, type MigrationRunner } from '../../src/kubernetes/migration-controller.js';
import type { MigrationResource } from '../../src/kubernetes/resources.js';
import type { HandoverReport, MigrationStatus } from '../../src/records/migration-report.js';
import { KubeApiDouble } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const MIGRATIONS = '/apis/roam.dev/v1alpha1/migrations';

function report(name: string, result: HandoverReport['result'], runningOn: string): HandoverReport {
  return {
    id: 'm-1', name, from: 'n1', to: 'n2', mode: 'stop-copy', result, running_on: runningOn, frozen_ms: 41.5,
    ...(result === 'success' ? {} : { reason: 'restore failed: CRIU said no' }),
    phases: { prepare_ms: 3, dump_ms: 20, transfer_ms: 8, restore_ms: 10, switch_ms: 1, unlock_ms: 1, pull_ms: 0, cleanup_ms: 2 },
    image_bytes: 123456, tcp_connections: 50, started_at: new Date().toISOString(),
  };
}

/** A runner the test drives: it records what it was asked and finishes when told. */
class ScriptedRunner implements MigrationRunner {
  readonly started: { name: string; to: string; mode?: string }[] = [];
  private finish: ((r: HandoverReport) => void) | undefined;
  refuse: RoamError | undefined;

  constructor(private readonly events: EventBus) {}

  start(req: { name: string; to: string; mode?: string }): { id: string; done: Promise<HandoverReport> } {
    if (this.refuse) throw this.refuse;
    this.started.push(req);
    return { id: 'm-1', done: new Promise((resolve) => (this.finish = resolve)) };
  }

  status(id: string): MigrationStatus | undefined {
    if (id !== 'm-1' || !this.finish) return undefined;
    return { id, name: 'web', from: 'n1', to: 'n2', mode: 'stop-copy', state: 'running', phase: 'prepare', completed: [] } as MigrationStatus;
  }

  phase(phase: string): void {
    this.events.emit('migration.phase', { id: 'm-1', name: 'web', phase, state: 'started', ms: 0 });
    this.events.emit('migration.phase', { id: 'm-1', name: 'web', phase, state: 'done', ms: 1 });
  }

  end(r: HandoverReport): void {
    this.finish?.(r);
  }
}

function controller(t: ExecutionContext, url: string, node: string, hosts: string[]) {
  const events = new EventBus();
  const runner = new ScriptedRunner(events);
  const c = new MigrationController(KubeClient.forServer(url, 50), {
    node, runner, hosts: (ep) => hosts.includes(ep), whereIs: () => 'n1', resyncMs: 60000, events,
  });
  t.teardown(() => c.stop());
  return { c, runner, events };
}

async function apiServer(t: ExecutionContext): Promise<{ api: KubeApiDouble; url: string }> {
  const api = new KubeApiDouble();
  const url = await api.start();
  t.teardown(() => api.stop());
  return { api, url };
}

const migration = (name: string, spec: MigrationResource['spec'], status?: MigrationResource['status']) =>
  ({ metadata: { name }, spec, ...(status ? { status } : {}) });
const read = (api: KubeApiDouble, name: string) => api.get(MIGRATIONS, name) as unknown as MigrationResource;
const phases = (api: KubeApiDouble, name: string) =>
  api.versions(MIGRATIONS, name).map((v) => (v as unknown as MigrationResource).status?.phase ?? 'unset').filter((p, i, all) => p !== all[i - 1]);

test('runner phases map onto status phases', (t) => {
  t.is(resourcePhase('prepare'), 'Prepare');
  t.is(resourcePhase('pull'), 'Pull');
  t.is(resourcePhase('queued'), 'Queued');
  t.is(resourcePhase('nonsense'), undefined);
});

test('the node that runs the endpoint takes the Migration, writes each phase in order and ends with the report', async (t) => {
  const { api, url } = await apiServer(t);
  const n1 = controller(t, url, 'n1', ['web']);
  const n2 = controller(t, url, 'n2', []);
  n1.c.start();
  n2.c.start();
  api.put(MIGRATIONS, migration('move-web', { endpoint: 'web', targetNode: 'n2', mode: 'stop-copy' }));

  await waitFor('n1 to start it', () => n1.runner.started.length === 1);
  t.deepEqual(n1.runner.started, [{ name: 'web', to: 'n2', mode: 'stop-copy' }]);
  t.is(n2.runner.started.length, 0);
  await waitFor('the migration id recorded', () => read(api, 'move-web').status?.migrationId === 'm-1');
  for (const p of ['prepare', 'dump', 'transfer', 'restore', 'switch', 'unlock', 'cleanup']) n1.runner.phase(p);
  await waitFor('phase Cleanup', () => read(api, 'move-web').status?.phase === 'Cleanup');
  n1.runner.end(report('web', 'success', 'n2'));
  await waitFor('phase Succeeded', () => read(api, 'move-web').status?.phase === 'Succeeded');

  t.deepEqual(phases(api, 'move-web'), ['unset', 'Queued', 'Prepare', 'Dump', 'Transfer', 'Restore', 'Switch', 'Unlock', 'Cleanup', 'Succeeded']);
  const status = read(api, 'move-web').status!;
  t.is(status.sourceNode, 'n1');
  t.is(status.observedGeneration, 1);
  t.is(status.report?.frozen_ms, 41.5);
  t.is(status.report?.running_on, 'n2');
  t.deepEqual(status.conditions.map((c) => [c.type, c.status, c.reason]), [['Started', 'True', 'Taken'], ['Complete', 'True', 'Succeeded']]);
  t.regex(status.conditions[1]!.message, /web runs on n2, frozen 41.5 ms/);
});

test('a rolled-back move ends RolledBack with the reason and where the service runs', async (t) => {
  const { api, url } = await apiServer(t);
  const n1 = controller(t, url, 'n1', ['web']);
  n1.c.start();
  api.put(MIGRATIONS, migration('move-web', { endpoint: 'web', targetNode: 'n2' }));
  await waitFor('queued', () => read(api, 'move-web').status?.phase === 'Queued');
  // Queued is written before the runner is asked: ending a move not started yet would end nothing.
  await waitFor('n1 to start it', () => n1.runner.started.length === 1);
  n1.runner.end(report('web', 'rolled_back', 'n1'));
  await waitFor('RolledBack', () => read(api, 'move-web').status?.phase === 'RolledBack');
  const done = read(api, 'move-web').status!.conditions.at(-1)!;
  t.is(done.reason, 'RolledBack');
  t.regex(done.message, /CRIU said no; it runs on n1/);
});

test('two agents that both believe they host the endpoint: exactly one runs the Migration', async (t) => {
  const { api, url } = await apiServer(t);
  const a = controller(t, url, 'n1', ['web']);
  const b = controller(t, url, 'n3', ['web']);
  a.c.start();
  b.c.start();
  api.put(MIGRATIONS, migration('move-web', { endpoint: 'web', targetNode: 'n2' }));
  await waitFor('someone to take it', () => a.runner.started.length + b.runner.started.length > 0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(a.runner.started.length + b.runner.started.length, 1);
  const taker = a.runner.started.length ? 'n1' : 'n3';
  t.is(read(api, 'move-web').status?.sourceNode, taker);
});

test('a status write that meets a conflict is applied again to the newer object', async (t) => {
  const { api, url } = await apiServer(t);
  const n1 = controller(t, url, 'n1', ['web']);
  n1.c.start();
  api.put(MIGRATIONS, migration('move-web', { endpoint: 'web', targetNode: 'n2' }));
  await waitFor('the migration id recorded', () => read(api, 'move-web').status?.migrationId === 'm-1');
  api.raceNextUpdate(MIGRATIONS, 'move-web', 3);
  n1.runner.phase('dump');
  n1.runner.end(report('web', 'success', 'n2'));
  await waitFor('Succeeded', () => read(api, 'move-web').status?.phase === 'Succeeded');
  t.true(api.requests.filter((r) => r.method === 'PUT' && r.status === 409).length >= 3);
  t.true(phases(api, 'move-web').includes('Dump'), 'the phase written through the conflicts is in the history');
});

test('a refused start ends the Migration as Failed, with the refusal\'s code as the reason', async (t) => {
  const { api, url } = await apiServer(t);
  const n1 = controller(t, url, 'n1', ['web']);
  n1.runner.refuse = new RoamError('NOT_FOUND', 'node n9 is not a peer of n1');
  n1.c.start();
  api.put(MIGRATIONS, migration('to-nowhere', { endpoint: 'web', targetNode: 'n9' }));
  await waitFor('Failed', () => read(api, 'to-nowhere').status?.phase === 'Failed');
  const done = read(api, 'to-nowhere').status!.conditions.at(-1)!;
  t.is(done.reason, 'NotFound');
  t.regex(done.message, /node n9 is not a peer of n1/);
});

test('a Migration this node was running when its agent restarted is ended as failed, saying where the service runs', async (t) => {
  const { api, url } = await apiServer(t);
  api.put(MIGRATIONS, migration('move-web', { endpoint: 'web', targetNode: 'n2' }, {
    phase: 'Dump', sourceNode: 'n1', migrationId: 'm-before-restart', conditions: [],
  }));
  api.put(MIGRATIONS, migration('theirs', { endpoint: 'db', targetNode: 'n1' }, {
    phase: 'Transfer', sourceNode: 'n3', migrationId: 'm-7', conditions: [],
  }));
  const n1 = controller(t, url, 'n1', ['web']);
  n1.c.start();
  await waitFor('Failed', () => read(api, 'move-web').status?.phase === 'Failed');
  const done = read(api, 'move-web').status!.conditions.at(-1)!;
  t.is(done.reason, 'AgentRestarted');
  t.regex(done.message, /web runs on n1/);
  t.is(n1.runner.started.length, 0, 'it is not started again');
  t.is(read(api, 'theirs').status?.phase, 'Transfer', 'another node\'s migration is left to it');
});

test('a Migration whose spec the agent cannot run ends Failed naming the field, whoever reads it first', async (t) => {
  const { api, url } = await apiServer(t);
  const n1 = controller(t, url, 'n1', ['web']);
  const n2 = controller(t, url, 'n2', []);
  n1.c.start();
  n2.c.start();
  // What the API server would refuse by the CRD's schema; a double, or another CRD version, lets it through.
  api.put(MIGRATIONS, migration('bad', { endpoint: 'web', targetNode: 'Node_2', mode: 'teleport' } as unknown as MigrationResource['spec']));
  await waitFor('Failed', () => read(api, 'bad').status?.phase === 'Failed');
  const done = read(api, 'bad').status!.conditions.at(-1)!;
  t.is(done.reason, 'InvalidSpec');
  t.regex(done.message, /targetNode/);
  t.regex(done.message, /mode/);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(n1.runner.started.length, 0);
  t.is(read(api, 'bad').status!.conditions.length, 1, 'ended once');
});
