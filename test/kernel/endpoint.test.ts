/**
 * Endpoints against the real kernel: a node namespace with a bridge, real
 * processes under the shim, real namespaces; every trace removed afterwards.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostVethName } from '../../src/endpoint/naming.js';
import { processStartTime } from '../../src/sys/proc.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { getLink, requireLink } from '../../src/sys/netlink/links.js';
import { inNs } from '../helpers/netns.js';
import { nodeWithManager } from '../helpers/node.js';
import { requireRoot } from '../helpers/root.js';
import { waitFor } from '../helpers/wait.js';

test.before(() => requireRoot());

test('an endpoint gets its own netns with its IP and MAC, a bridge port, and runs as PID 1 of its own PID namespace', async (t) => {
  const { s, manager } = await nodeWithManager(t, 'ep');
  const ep = await manager.create({ name: 'web', ip: undefined, command: ['sleep', '1000'] });
  t.is(ep.ip, '10.244.1.1');
  t.is(ep.mac, '02:72:0a:f4:01:01');
  const addr = inNs(ep.netns!, ['ip', '-br', 'addr', 'show', 'eth0']);
  t.regex(addr, /eth0@\S+\s+UP\s+10\.244\.1\.1\/16/);
  t.regex(inNs(ep.netns!, ['ip', '-br', 'link', 'show', 'eth0']), /02:72:0a:f4:01:01/);
  const port = await requireLink(s, hostVethName('web'));
  t.is(port.alias, 'roam:web');
  t.truthy(port.master);
  const status = readFileSync(`/proc/${ep.pid}/status`, 'utf8');
  t.regex(status, /^NSpid:\s+\d+\s+1$/m, 'the command is PID 1 in its PID namespace');
  const netnsOfProcess = readFileSync(`/proc/${ep.pid}/net/dev`, 'utf8');
  t.regex(netnsOfProcess, /eth0/, 'the process lives in the endpoint netns');
});

test('output goes to the log through pipes, never to a file the process holds', async (t) => {
  const { manager } = await nodeWithManager(t, 'ep');
  const ep = await manager.create({ name: 'talker', ip: undefined, command: ['sh', '-c', 'echo hello out; echo hello err >&2; exec sleep 1000'] });
  await waitFor('both lines in the log', () => manager.logs('talker').includes('hello out') && manager.logs('talker').includes('hello err'));
  const log = manager.logs('talker');
  t.regex(log, /hello out/);
  t.regex(log, /hello err/);
  const { readlinkSync } = await import('node:fs');
  t.regex(readlinkSync(`/proc/${ep.pid}/fd/1`), /^pipe:/);
  t.regex(readlinkSync(`/proc/${ep.pid}/fd/2`), /^pipe:/);
  t.is(readlinkSync(`/proc/${ep.pid}/fd/0`), '/dev/null');
});

test('a command that cannot start is refused clearly and leaves nothing behind', async (t) => {
  const { s, stateDir, manager } = await nodeWithManager(t, 'ep');
  const err = await t.throwsAsync(manager.create({ name: 'ghost', ip: undefined, command: ['/no/such/program'] }), { instanceOf: RoamError });
  t.is(err?.code, 'ENDPOINT_START_FAILED');
  t.regex(err?.message ?? '', /cannot start "\/no\/such\/program": execvp ENOENT/);
  t.false(existsSync(join(stateDir, 'netns', 'ghost')));
  t.false(existsSync(join(stateDir, 'endpoints', 'ghost')));
  t.is(await getLink(s, hostVethName('ghost')), undefined);
  t.deepEqual(manager.records(), []);
});

test('stop removes the process, the namespace, the port and the record', async (t) => {
  const { s, stateDir, manager } = await nodeWithManager(t, 'ep');
  const ep = await manager.create({ name: 'brief', ip: '10.244.1.77', command: ['sleep', '1000'] });
  await manager.stop('brief');
  t.is(processStartTime(ep.pid!), undefined);
  t.false(existsSync(ep.netns!));
  t.false(existsSync(join(stateDir, 'endpoints', 'brief')));
  t.is(await getLink(s, hostVethName('brief')), undefined);
  await t.throwsAsync(manager.stop('brief'), { message: /not on node n1/ });
});

test('an endpoint that is moving cannot be stopped until its move is over: the target could still take it over', async (t) => {
  const { manager } = await nodeWithManager(t, 'epm');
  const ep = await manager.create({ name: 'mover', ip: '10.244.1.78', command: ['sleep', '1000'] });
  manager.beginOutgoing('mover');
  await t.throwsAsync(manager.stop('mover'), { code: 'CONFLICT', message: /mover is moving off n1; stop it when the move is over/ });
  t.not(processStartTime(ep.pid!), undefined, 'still running');
  manager.endOutgoing('mover');
  await manager.stop('mover');
  t.is(processStartTime(ep.pid!), undefined);
});

test('a SIGTERM-handling program gets SIGTERM; one that ignores it (PID 1) is killed without waiting out the grace', async (t) => {
  // A 10 s grace: a stop that waited it out could not finish within the 5 s asserted below.
  const { dir, manager } = await nodeWithManager(t, 'ep', 10000);
  const marker = join(dir, 'polite-got-sigterm');
  const polite = await manager.create({ name: 'polite', ip: undefined, command: ['sh', '-c', `trap "echo bye > ${marker}; exit 0" TERM; while true; do sleep 0.05; done`] });
  const deaf = await manager.create({ name: 'deaf', ip: undefined, command: ['sleep', '1000'] });
  await waitFor('the polite program to have its SIGTERM trap', () => catchesSigterm(polite.pid!));
  const started = Date.now();
  await manager.stop('deaf');
  t.is(processStartTime(deaf.pid!), undefined, 'the deaf program is gone');
  t.true(Date.now() - started < 5000, 'it was killed at once, not after the 10 s grace');
  await manager.stop('polite');
  t.is(readFileSync(marker, 'utf8'), 'bye\n', 'the polite program handled SIGTERM and exited by itself');
});

test('a new manager on the same state re-adopts running endpoints; exits are noticed', async (t) => {
  const { manager, make } = await nodeWithManager(t, 'ep');
  const ep = await manager.create({ name: 'survivor', ip: undefined, command: ['sleep', '1000'] });
  await manager.create({ name: 'quitter', ip: undefined, command: ['sh', '-c', 'sleep 0.2; exit 3'] });
  const again = make();
  await again.adopt();
  t.deepEqual(again.records().map((r) => `${r.name}:${r.pid}`).sort(), [`quitter:${manager.records().find((r) => r.name === 'quitter')!.pid}`, `survivor:${ep.pid}`]);
  again.startWatching(50);
  t.teardown(() => again.stopWatching());
  await waitFor('the exit to be noticed', () => again.records().find((r) => r.name === 'quitter')?.state === 'exited', 5000).catch(() => undefined);
  again.stopWatching();
  t.is(again.records().find((r) => r.name === 'quitter')?.state, 'exited');
  t.is(again.records().find((r) => r.name === 'survivor')?.state, 'running');
});

/** Whether a process has a handler for SIGTERM (bit 15 of SigCgt in /proc/PID/status). */
function catchesSigterm(pid: number): boolean {
  const caught = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return caught !== undefined && (BigInt(`0x${caught}`) & (1n << 14n)) !== 0n;
}
