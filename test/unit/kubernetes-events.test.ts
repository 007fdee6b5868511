import test from 'ava';
import { EventBus } from '../../src/events/bus.js';
import { KubeClient } from '../../src/kubernetes/client.js';
import { DecisionEvents, eventReason } from '../../src/kubernetes/decision-events.js';
import type { Decision } from '../../src/records/decision.js';
import { KubeApiDouble } from '../helpers/kube-api-double.js';
import { waitFor } from '../helpers/wait.js';

const EVENTS = '/api/v1/events';

const moved: Decision = {
  at: Date.parse('2026-12-02T10:00:00Z'), endpoint: 'svc', policy: 'follow-client', outcome: 'moved', to: 'node1', code: 'client-moved',
  reason: '100% of its traffic has entered at node1 for 3 s', migration: 'm-abc-123456',
};
const declined: Decision = { ...moved, at: moved.at + 5000, outcome: 'declined', code: 'dwell', to: 'node3', reason: 'but it arrived 4 s ago (minDwellMs 30000)', migration: undefined };

test('each decision becomes an Event about the endpoint\'s RoamEndpoint, saying what, why and which migration', async (t) => {
  const api = new KubeApiDouble();
  const url = await api.start();
  t.teardown(() => api.stop());
  const bus = new EventBus();
  const writer = new DecisionEvents(KubeClient.forServer(url, 50), 'node3', bus);
  writer.start();
  t.teardown(() => writer.stop());
  bus.emit('policy.decision', { decision: moved });
  bus.emit('policy.decision', { decision: declined });
  await waitFor('two Events', () => api.list(EVENTS).length === 2);
  const [first, second] = api.list(EVENTS).sort((a, b) => String(a.lastTimestamp).localeCompare(String(b.lastTimestamp)));
  t.like(first, {
    metadata: { namespace: 'default' },
    involvedObject: { apiVersion: 'roam.dev/v1alpha1', kind: 'RoamEndpoint', name: 'svc' },
    reason: 'FollowClientMoved', type: 'Normal', action: 'moved', source: { component: 'roam-agent', host: 'node3' }, reportingInstance: 'node3',
    message: 'moved node1 (client-moved): 100% of its traffic has entered at node1 for 3 s; migration m-abc-123456',
  });
  t.regex(first!.metadata.name, /^svc\.[0-9a-f]+$/);
  t.like(second, { reason: 'FollowClientDeclined', type: 'Warning', message: 'declined node3 (dwell): but it arrived 4 s ago (minDwellMs 30000)' });
  t.is(eventReason({ ...moved, policy: 'drain' }), 'DrainMoved');
});

test('an API server that is away costs one warning, not one per decision, and the next decision after it is back is written', async (t) => {
  const api = new KubeApiDouble();
  const url = await api.start();
  t.teardown(() => api.stop());
  const bus = new EventBus();
  const said: string[] = [];
  bus.on('log', (l) => said.push(`${l.level} ${l.message}`));
  const writer = new DecisionEvents(KubeClient.forServer(url, 50), 'node3', bus);
  writer.start();
  t.teardown(() => writer.stop());
  await api.stop();
  for (let i = 0; i < 3; i++) bus.emit('policy.decision', { decision: { ...declined, at: declined.at + i } });
  await waitFor('the warning', () => said.some((s) => s.startsWith('warn')));
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(said.filter((s) => s.startsWith('warn')).length, 1);
  t.regex(said[0]!, /writing a decision as an Event: .*event default\/svc\./);
  await api.start();
  bus.emit('policy.decision', { decision: moved });
  await waitFor('the Event', () => api.list(EVENTS).length === 1);
  await waitFor('said', () => said.some((s) => s.includes('written again')));
});
