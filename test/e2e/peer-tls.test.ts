/**
 * The peer protocol is mutual TLS under the testbed's CA: from the underlay,
 * a client without a certificate, with one another CA signed, or speaking
 * plain HTTP is refused at the handshake, and the agent says so and counts
 * it; a node's own certificate gets through. (Every other testbed test runs
 * its migrations, announcements and forwarded requests over the same TLS.)
 * The control API on the underlay answers the roam CLI holding the token,
 * over HTTPS; without the token, with a wrong one, or in plain HTTP it
 * answers nothing but a refusal, which the agent says and counts.
 * A node's certificate is not a licence for root: a migration's prepare
 * carrying a container configuration roam would not build (a prestart hook)
 * is refused, and nothing of it is left on the target.
 * A node's certificate speaks for that node only: with node3's, announcing
 * node1 (or node3 at node1's address) and driving a migration node1 prepared
 * are refused (403 FORBIDDEN), said and counted, and change nothing.
 * And what a peer sends is bounded: an upload that stalls is cut off and its
 * arrival expires; one too large is refused before it is read, or where it
 * crosses the bound, without the agent's memory growing; an arrival that
 * would leave too little disk is not taken. (This testbed's limits are
 * small, so that each bound is reached in seconds.)
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callJson } from '../../src/http/client.js';
import { ensureCa, ensureNodeCert } from '../../src/sys/certs.js';
import { defaultSpec, listContainers } from '../../src/sys/runc.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, endpoints, fixture, serveEcho, stopAfter, uniqueTestbedName, upTestbed, waitFor } from '../helpers/testbed.js';
import { TESTBED_ROOT } from '../../src/testbed/layout.js';

const name = uniqueTestbedName();
let tb: TestbedState;

const LIMITS = { uploadIdleSeconds: 2, arrivalIdleSeconds: 4, fileBytes: 128 * 1024 ** 2, imageBytes: 32 * 1024 ** 2 };

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 2, undefined, LIMITS);
});

test.after.always(() => downClean(name));

/** curl from the underlay "switch" namespace; returns its exit code and what it printed. */
function curlFromUnderlay(args: string[]): { code: number; out: string } {
  try {
    const out = execFileSync('nsenter', [`--net=${tb.switchNetns}`, 'curl', '-sS', '--max-time', '5', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, out };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function refusals(): number {
  const m = /^roam_peer_tls_refusals_total (\d+)/m.exec(curlFromUnderlay([`http://${tb.nodes[0]!.metrics}/metrics`]).out);
  return Number(m?.[1] ?? NaN);
}

function apiRefusals(reason: string): number {
  const m = new RegExp(`^roam_api_refusals_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(curlFromUnderlay([`http://${tb.nodes[0]!.metrics}/metrics`]).out);
  return Number(m?.[1] ?? NaN);
}

const roamCli = fileURLToPath(new URL('../../src/main.js', import.meta.url));

test.serial('a peer without a certificate, with one from another CA, or without TLS is refused, logged and counted; a node certificate gets through', (t) => {
  const node1 = tb.nodes[0]!;
  const url = `https://${node1.underlayIp}:7946/peer/v1/migrations/m-x-000001`;
  const tls = join(TESTBED_ROOT, name, 'tls');
  const before = refusals();

  // No client certificate (the server itself is trusted through the testbed's CA).
  const anonymous = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), url]);
  t.not(anonymous.code, 0, `refused: ${anonymous.out}`);

  // A certificate another CA signed, for the same address.
  const rogueDir = mkdtempSync(join(tmpdir(), 'roam-rogue-ca-'));
  t.teardown(() => rmSync(rogueDir, { recursive: true, force: true }));
  ensureCa(rogueDir, 'not the cluster CA');
  const rogue = ensureNodeCert(rogueDir, 'node2', tb.nodes[1]!.underlayIp);
  const forged = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), '--cert', rogue.cert, '--key', rogue.key, url]);
  t.not(forged.code, 0, `refused: ${forged.out}`);

  // Plain HTTP on the peer port.
  const plain = curlFromUnderlay([`http://${node1.underlayIp}:7946/peer/v1/migrations/m-x-000001`]);
  t.false(/"error"/.test(plain.out), `no answer in plain HTTP: ${plain.out}`);

  // The real thing: node2's certificate, signed by the testbed's CA.
  const node2 = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), '--cert', join(tls, 'node2.pem'), '--key', join(tls, 'node2.key'), url]);
  t.is(node2.code, 0, node2.out);
  t.regex(node2.out, /"code":"NOT_FOUND"/, 'past the handshake, the agent answers');

  t.true(refusals() >= before + 3, `refusals counted: ${before} -> ${refusals()}`);
  const log = execFileSync('cat', [node1.logPath], { encoding: 'utf8' });
  t.regex(log, /peer connection from 172\.31\.0\.\d+ refused: /);
});

test.serial('the control API on the underlay answers the CLI with the token over HTTPS, and refuses, says and counts everyone else', (t) => {
  const node1 = tb.nodes[0]!;
  const tls = join(TESTBED_ROOT, name, 'tls');
  const token = join(tls, 'api.token');
  const api = `https://${node1.underlayIp}:7947`;
  const before = { none: apiRefusals('no-token'), wrong: apiRefusals('wrong-token'), tls: apiRefusals('tls-handshake') };

  // `roam ps` from another machine on the underlay, as an operator would run it.
  const ps = execFileSync('nsenter', [`--net=${tb.switchNetns}`, process.execPath, roamCli, 'ps', '--json', '--api', api, '--api-token-file', token, '--api-ca', join(tls, 'ca.pem')], { encoding: 'utf8' });
  t.deepEqual(JSON.parse(ps), [], 'the API answers the token holder');

  const anonymous = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), '-w', '%{http_code}', `${api}/v1/endpoints`]);
  t.regex(anonymous.out, /"code":"UNAUTHENTICATED".*401$/s, 'no token: 401');
  const wrong = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), '-H', `authorization: Bearer ${'0'.repeat(64)}`, '-w', '%{http_code}', `${api}/v1/migrations`, '-d', '{"endpoint":"x","to":"node2"}', '-H', 'content-type: application/json']);
  t.regex(wrong.out, /"code":"UNAUTHENTICATED".*401$/s, 'a wrong token cannot start a migration');
  const plain = curlFromUnderlay([`http://${node1.underlayIp}:7947/v1/endpoints`]);
  t.false(/"error"|\[\]/.test(plain.out), `nothing in plain HTTP: ${plain.out}`);

  t.is(apiRefusals('no-token'), before.none + 1);
  t.is(apiRefusals('wrong-token'), before.wrong + 1);
  t.true(apiRefusals('tls-handshake') >= before.tls + 1, 'the plain-HTTP attempt is counted as a failed handshake');
  const log = execFileSync('cat', [node1.logPath], { encoding: 'utf8' });
  t.regex(log, /control API request from 172\.31\.0\.254 refused: wrong-token/);
});

/** A call to node1's peer API as node2, holding node2's certificate; returns the HTTP status and the body. */
function asNode2(method: string, path: string, data?: { json?: unknown; file?: string }): { status: number; body: string } {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const args = ['--cacert', join(tls, 'ca.pem'), '--cert', join(tls, 'node2.pem'), '--key', join(tls, 'node2.key'), '-X', method, '-w', '\n%{http_code}'];
  if (data?.json !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(data.json));
  if (data?.file !== undefined) args.push('-H', 'content-type: application/octet-stream', '--data-binary', `@${data.file}`);
  const r = curlFromUnderlay([...args, `https://${tb.nodes[0]!.underlayIp}:7946${path}`]);
  const at = r.out.lastIndexOf('\n');
  return { status: Number(r.out.slice(at + 1)), body: r.out.slice(0, at) };
}

test.serial("a peer's prepare carrying a container configuration with a prestart hook is refused with the reason, and leaves nothing", async (t) => {
  const node1 = tb.nodes[0]!;
  const work = mkdtempSync(join(tmpdir(), 'roam-hostile-spec-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const marker = join(work, 'the-hook-ran');

  // An image node1 holds, sent as a source would, so that only the configuration can be wrong.
  const rootfs = join(work, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  writeFileSync(join(rootfs, 'bin', 'placeholder'), 'x');
  const archive = join(work, 'image.tar');
  execFileSync('tar', ['-C', rootfs, '-cf', archive, '.']);
  const image = createHash('sha256').update(readFileSync(archive)).digest('hex');
  const sent = asNode2('PUT', `/peer/v1/images/${image}`, { file: archive });
  t.is(sent.status, 200, sent.body);

  const base = await defaultSpec();
  const request = (id: string, spec: unknown) => ({
    id, mode: 'stop-copy', handover: 'full', name: 'intruder', ip: '10.244.2.200', prefixLength: 16, mac: '02:72:0a:f4:02:c8', generation: 2,
    command: ['/bin/sh'], createdAt: new Date().toISOString(),
    container: { image, spec, volumes: [{ destination: '/data' }] },
  });
  const hostile = { ...base, hooks: { prestart: [{ path: '/bin/sh', args: ['sh', '-c', `echo root > ${marker}`] }] } };
  const id = 'm-hostile-0a0b0c';

  const refused = asNode2('POST', '/peer/v1/migrations/prepare', { json: request(id, hostile) });
  t.is(refused.status, 400, refused.body);
  const error = (JSON.parse(refused.body) as { error: { code: string; message: string } }).error;
  t.is(error.code, 'INPUT_INVALID');
  t.regex(error.message, /container intruder is not one roam builds: hooks\.prestart: roam runs no hooks/);

  // Nothing of it on node1: no arrival to go on with, no namespace, no record or folders, no container, no hook run.
  const restore = asNode2('POST', `/peer/v1/migrations/${id}/restore`, { json: { pipeKeys: [], connections: 0 } });
  t.true(restore.status === 404 || restore.status === 403, `${restore.status} ${restore.body}`);
  t.false(existsSync(join(node1.stateDir, 'migrations', id)), 'no migration folder');
  t.false(existsSync(join(node1.stateDir, 'netns', 'intruder')), 'no namespace');
  t.false(existsSync(join(node1.stateDir, 'endpoints', 'intruder')), 'no endpoint folder');
  t.false((await endpoints(tb, 0)).some((e) => e.name === 'intruder'), 'no endpoint');
  const runcRoot = join(node1.stateDir, 'runc');
  t.false(existsSync(runcRoot) && (await listContainers(runcRoot)).some((c) => c.id === 'intruder'), 'no container');
  t.false(existsSync(marker), 'the hook never ran');

  // The same request without the hook is one node1 prepares: the configuration was the only thing refused.
  const accepted = asNode2('POST', '/peer/v1/migrations/prepare', { json: request('m-hostile-0d0e0f', base) });
  t.is(accepted.status, 200, accepted.body);
  const aborted = asNode2('POST', '/peer/v1/migrations/m-hostile-0d0e0f/abort');
  t.is(aborted.status, 200, aborted.body);
  t.false(existsSync(join(node1.stateDir, 'netns', 'intruder')), 'its abort left no namespace');
  t.false(existsSync(join(node1.stateDir, 'endpoints', 'intruder')), 'nor folders');
  t.false(existsSync(marker));
});

// ---- a node's certificate speaks for that node only (issue #19, finding 2) ----

/** Where node3 would be: this testbed has two nodes, so nothing answers there. */
const NODE3_ADDRESS = '172.31.0.3';

/**
 * node3's certificate: what a third node of this cluster holds (CN=node3,
 * IP:172.31.0.3, the testbed's CA signs it), made in a folder of its own.
 */
function node3Certificate(t: { teardown(fn: () => void): void }): { cert: string; key: string } {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const dir = mkdtempSync(join(tmpdir(), 'roam-node3-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), readFileSync(join(tls, 'ca.pem')));
  writeFileSync(join(dir, 'ca.key'), readFileSync(join(tls, 'ca.key')), { mode: 0o600 });
  return ensureNodeCert(dir, 'node3', NODE3_ADDRESS);
}

/** A call to `to`'s peer API from the underlay, holding `who`'s certificate; returns the HTTP status and the body. */
function peerCall(who: { cert: string; key: string }, to: { underlayIp: string }, method: string, path: string, json?: unknown): { status: number; body: string } {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const args = ['--cacert', join(tls, 'ca.pem'), '--cert', who.cert, '--key', who.key, '-X', method, '-w', '\n%{http_code}'];
  if (json !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(json));
  const r = curlFromUnderlay([...args, `https://${to.underlayIp}:7946${path}`]);
  const at = r.out.lastIndexOf('\n');
  return { status: Number(r.out.slice(at + 1)), body: r.out.slice(0, at) };
}

function errorOf(r: { body: string }): { code: string; message: string; details?: Record<string, unknown> } {
  return (JSON.parse(r.body) as { error: { code: string; message: string; details?: Record<string, unknown> } }).error;
}

function peerRefusals(node: { metrics: string }, reason: string): number {
  const m = new RegExp(`^roam_peer_refusals_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(curlFromUnderlay([`http://${node.metrics}/metrics`]).out);
  return Number(m?.[1] ?? NaN);
}

/** The nodes `node` knows (GET /v1/nodes on its control API on the underlay, with the token). */
function nodesKnownTo(node: { underlayIp: string }): { node: string; address: string; endpoints: number }[] {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const token = readFileSync(join(tls, 'api.token'), 'utf8').trim();
  const r = curlFromUnderlay(['--cacert', join(tls, 'ca.pem'), '-H', `authorization: Bearer ${token}`, `https://${node.underlayIp}:7947/v1/nodes`]);
  return JSON.parse(r.out) as { node: string; address: string; endpoints: number }[];
}

test.serial("node3's certificate speaks for node3 only: announcing node1, or itself at node1's address, is refused (403), said and counted, and node2's view of node1 is unchanged", async (t) => {
  const [node1, node2] = [tb.nodes[0]!, tb.nodes[1]!];
  const node3 = node3Certificate(t);
  stopAfter(t, name, 'idp-web');
  await serveEcho(tb, 'node1', 'idp-web');
  await waitFor('node2 to know idp-web on node1', async () => (await endpoints(tb, 1)).some((e) => e.name === 'idp-web' && e.node === 'node1'), 10000);
  const before = { node: peerRefusals(node2, 'not-its-node'), address: peerRefusals(node2, 'not-its-address') };

  // node1 with no endpoints at the highest sequence: its endpoints would leave node2's view and FDB, and stay out.
  const erase = peerCall(node3, node2, 'POST', '/peer/v1/announce', { node: 'node1', address: node1.underlayIp, seq: Number.MAX_SAFE_INTEGER, endpoints: [] });
  t.is(erase.status, 403, erase.body);
  t.deepEqual(errorOf(erase), { code: 'FORBIDDEN', message: 'node3 announced itself as node1: its certificate speaks for node3 only', details: { peer: 'node3', reason: 'not-its-node' } });
  // node1 at node3's address: a move --to node1 would send its images to node3.
  const hijack = peerCall(node3, node2, 'POST', '/peer/v1/announce', { node: 'node1', address: NODE3_ADDRESS, seq: Date.now() + 1000, endpoints: [] });
  t.is(hijack.status, 403, hijack.body);
  t.is(errorOf(hijack).message, 'node3 announced itself as node1: its certificate speaks for node3 only');
  // node3 itself, but at node1's address.
  const elsewhere = peerCall(node3, node2, 'POST', '/peer/v1/announce', { node: 'node3', address: node1.underlayIp, seq: Date.now(), endpoints: [] });
  t.is(elsewhere.status, 403, elsewhere.body);
  t.is(errorOf(elsewhere).code, 'FORBIDDEN');
  t.is(errorOf(elsewhere).message, `node3 announced itself at ${node1.underlayIp}, but its certificate names ${NODE3_ADDRESS}`);

  const seen = nodesKnownTo(node2);
  t.deepEqual(seen.filter((n) => n.node === 'node1').map((n) => ({ address: n.address, endpoints: n.endpoints })), [{ address: node1.underlayIp, endpoints: 1 }], JSON.stringify(seen));
  t.false(seen.some((n) => n.node === 'node3'), 'node3 was not learnt from a refused announcement');
  t.true((await endpoints(tb, 1)).some((e) => e.name === 'idp-web' && e.node === 'node1'), 'node2 still sends idp-web to node1');

  t.is(peerRefusals(node2, 'not-its-node'), before.node + 2);
  t.is(peerRefusals(node2, 'not-its-address'), before.address + 1);
  const log = readFileSync(node2.logPath, 'utf8');
  t.regex(log, /peer request POST \/peer\/v1\/announce from node3 \(172\.31\.0\.254\) refused: node3 announced itself as node1/);
  t.regex(log, /peer request POST \/peer\/v1\/announce from node3 \(172\.31\.0\.254\) refused: node3 announced itself at 172\.31\.0\.1/);
});

test.serial("node3's certificate cannot drive a migration node1 prepared on node2: each step is refused (403) naming both, before it runs; node1 still drives it", (t) => {
  const node2 = tb.nodes[1]!;
  const tls = join(TESTBED_ROOT, name, 'tls');
  const node1 = { cert: join(tls, 'node1.pem'), key: join(tls, 'node1.key') };
  const node3 = node3Certificate(t);
  const id = 'm-idtest-0a1b2c';
  const before = peerRefusals(node2, 'not-its-migration');
  t.teardown(() => void peerCall(node1, node2, 'POST', `/peer/v1/migrations/${id}/abort`, {}));

  // node1 prepares an arrival on node2, as the source of a move does (a locked namespace; no endpoint of that name exists).
  const prepared = peerCall(node1, node2, 'POST', '/peer/v1/migrations/prepare', {
    id, mode: 'stop-copy', handover: 'off', name: 'idp-arrival', ip: '10.244.1.250', prefixLength: 16, mac: '02:72:0a:f4:01:fa', generation: 2,
    command: ['/bin/true'], createdAt: new Date().toISOString(),
  });
  t.is(prepared.status, 200, prepared.body);

  const steps: [method: string, step: string, verb: string, json?: unknown][] = [
    ['POST', 'abort', 'abort', {}],
    ['POST', 'switch', 'switch', {}],
    ['POST', 'restore', 'restore', { pipeKeys: [], connections: 0 }],
    ['POST', 'unlock', 'unlock', { frozenMs: 1 }],
    ['PUT', 'held', 'send held packets to'],
    ['PUT', 'images', 'send images to'],
    ['POST', 'keep', 'keep', {}],
    ['POST', 'settled', 'settle', {}],
    ['GET', 'stall', 'ask for the stall of'],
  ];
  for (const [method, step, verb, json] of steps) {
    const r = peerCall(node3, node2, method, `/peer/v1/migrations/${id}/${step}`, json);
    t.is(r.status, 403, `${step}: ${r.body}`);
    t.deepEqual(errorOf(r), { code: 'FORBIDDEN', message: `migration ${id} was prepared here by node1: node3 may not ${verb} it`, details: { peer: 'node3', reason: 'not-its-migration' } }, step);
  }
  t.is(peerRefusals(node2, 'not-its-migration'), before + steps.length);
  t.regex(readFileSync(node2.logPath, 'utf8'), new RegExp(`peer request POST /peer/v1/migrations/${id}/abort from node3 \\(172\\.31\\.0\\.254\\) refused: migration ${id} was prepared here by node1: node3 may not abort it`));
  t.true(existsSync(join(node2.stateDir, 'netns', 'idp-arrival')), 'the arrival is still there, locked');

  // Its source still drives it: keep, then abort, which removes it.
  const keep = peerCall(node1, node2, 'POST', `/peer/v1/migrations/${id}/keep`, {});
  t.is(keep.status, 200, keep.body);
  const abort = peerCall(node1, node2, 'POST', `/peer/v1/migrations/${id}/abort`, {});
  t.is(abort.status, 200, abort.body);
  t.false(existsSync(join(node2.stateDir, 'netns', 'idp-arrival')), 'its abort left no namespace');
});

// ---- what a peer sends is bounded (issue #19, finding 6) ----

const rawUploadClient = fixture('raw_peer_upload.py');

/**
 * A PUT to node2's peer port from the underlay, as node1, written by hand (test/fixtures/raw_peer_upload.py) so
 * that its body can stall, declare more than it sends, or run on. Returns the answer (status null: none came)
 * and the bytes it sent.
 */
function rawPeerUpload(path: string, mode: 'stall' | 'declared' | 'flood' | 'json-stall', bytes = 0): { status: number | null; body: string | null; sent: number; seconds: number } {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const out = execFileSync('nsenter', [
    `--net=${tb.switchNetns}`, 'python3', rawUploadClient, join(tls, 'ca.pem'), join(tls, 'node1.pem'), join(tls, 'node1.key'), tb.nodes[1]!.underlayIp, '7946', path, mode, String(bytes),
  ], { encoding: 'utf8', timeout: 120000 });
  return JSON.parse(out) as { status: number | null; body: string | null; sent: number; seconds: number };
}

/** node2's agent's resident memory, in bytes. */
function agentRss(): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${tb.nodes[1]!.agentPid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) * 1024;
}

test.serial('an upload that stalls after two bytes is cut off (408) after the idle bound, its arrival then expires with its namespace, and a real move of that name goes through', async (t) => {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const node1 = { cert: join(tls, 'node1.pem'), key: join(tls, 'node1.key') };
  const node2 = tb.nodes[1]!;
  const srv = await serveEcho(tb, 'node1', 'stalled');
  stopAfter(t, tb.name, 'stalled');
  const id = 'm-stalled-0a0b0c';
  // node1 prepares an arrival of `stalled` on node2, as its source would, then sends two bytes of images and nothing more.
  const prepared = peerCall(node1, node2, 'POST', '/peer/v1/migrations/prepare', {
    id, mode: 'stop-copy', handover: 'off', name: 'stalled', ip: srv.ip, prefixLength: 16, mac: srv.mac, generation: srv.generation + 1,
    command: ['/bin/true'], createdAt: new Date().toISOString(),
  });
  t.is(prepared.status, 200, prepared.body);
  t.true(existsSync(join(node2.stateDir, 'netns', 'stalled')), 'the arrival holds its namespace');
  const started = Date.now();
  const answer = rawPeerUpload(`/peer/v1/migrations/${id}/images`, 'stall');
  const after = Date.now() - started;
  t.is(answer.status, 408, answer.body ?? '');
  t.regex(answer.body ?? '', new RegExp(`"code":"UPLOAD_STALLED".*images of migration ${id}: no byte for 2 s after 2 bytes`));
  t.true(after >= 1900 && after < 10000, `cut off after ${after} ms`);
  // Nobody drives it any more: it expires, and takes its namespace with it.
  await waitFor('the arrival to expire', () => !existsSync(join(node2.stateDir, 'netns', 'stalled')) && !existsSync(join(node2.stateDir, 'migrations', id)), 20000);
  t.regex(readFileSync(node2.logPath, 'utf8'), new RegExp(`migration ${id}: its source has not been heard from for 4 s before the switch; giving up the arrival of stalled`));
  // The name is free there again: the real move goes through.
  const moved = await callJson<{ id: string; from: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'POST', '/v1/migrations', { endpoint: 'stalled', to: 'node2', mode: 'stop-copy' });
  await waitFor('the real move', async () => (await callJson<{ state: string }>({ socketPath: tb.nodes[0]!.apiSocket }, 'GET', `/v1/migrations/${moved.id}?from=${moved.from}`)).state !== 'running', 60000);
  t.like((await endpoints(tb, 1)).find((e) => e.name === 'stalled'), { node: 'node2', state: 'running' });
});

test.serial("too large is refused: a declared length before a byte is read, a chunked body where it crosses the bound; node2's memory does not grow, and nothing of it is kept", async (t) => {
  const node2 = tb.nodes[1]!;
  const imagesRoot = join(node2.stateDir, 'images');
  const leftovers = () => (existsSync(imagesRoot) ? readdirSync(imagesRoot).filter((f) => f.startsWith('.incoming')) : []);
  const image = 'a'.repeat(64);

  const declared = rawPeerUpload(`/peer/v1/images/${image}`, 'declared', 64 * 1024 ** 3);
  t.is(declared.status, 413, declared.body ?? '');
  t.regex(declared.body ?? '', new RegExp(`"code":"TOO_LARGE".*container image ${image}: the body declares ${64 * 1024 ** 3} bytes, more than the ${LIMITS.fileBytes} bytes allowed`));

  // 512 MiB, chunked, as fast as node2 takes it: refused at the bound (128 MiB), memory flat meanwhile.
  // Once unmeasured: the first large upload sizes the allocator's and TLS's buffers, which then stay (about 15 MiB
  // here). The second must not add what it sent: nothing of a body is kept. What it passed through is garbage the
  // collector takes in its own time (7-34 MiB of resident memory seen after 128 MiB), so the bound is half of what
  // node2 takes: a body kept whole would be all of it.
  rawPeerUpload(`/peer/v1/images/${image}`, 'flood', 512 * 1024 ** 2);
  const before = agentRss();
  const streamed = rawPeerUpload(`/peer/v1/images/${image}`, 'flood', 512 * 1024 ** 2);
  const growth = agentRss() - before;
  // The answer may be lost to the reset of a connection closed with unread bytes in it; if it came, it says why.
  t.true(streamed.status === null || streamed.status === 413, JSON.stringify(streamed));
  if (streamed.status !== null) t.regex(streamed.body ?? '', /"code":"TOO_LARGE".*went past/);
  t.true(streamed.sent < 512 * 1024 ** 2, `node2 stopped taking the body (${streamed.sent / 1024 ** 2} MiB sent)`);
  t.log(`node2's agent: ${(growth / 1024 ** 2).toFixed(1)} MiB more after ${streamed.sent / 1024 ** 2} MiB offered`);
  t.true(growth < LIMITS.fileBytes / 2, `node2's agent grew by ${(growth / 1024 ** 2).toFixed(1)} MiB while ${streamed.sent / 1024 ** 2} MiB were sent`);
  t.deepEqual(leftovers(), [], 'no staging folder left');
  t.false(existsSync(join(imagesRoot, image)), 'no image');
});

test.serial('a JSON body that stops arriving ends its connection after the bound, before any route sees it', (t) => {
  const before = readFileSync(tb.nodes[1]!.logPath, 'utf8').length;
  const r = rawPeerUpload('/peer/v1/announce', 'json-stall');
  t.is(r.status, null, `no answer, the connection ends: ${JSON.stringify(r)}`);
  t.true(r.seconds >= 1.9 && r.seconds < 10, `ended after ${r.seconds} s (the bound is ${LIMITS.uploadIdleSeconds} s)`);
  t.notRegex(readFileSync(tb.nodes[1]!.logPath, 'utf8').slice(before), /announce/, 'no announcement was taken or refused');
});

test.serial('an arrival that would leave less free disk than the reserve is refused (507) naming what is free, and leaves nothing', (t) => {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const node1 = { cert: join(tls, 'node1.pem'), key: join(tls, 'node1.key') };
  const node2 = tb.nodes[1]!;
  const migrations = join(node2.stateDir, 'migrations');
  mkdirSync(migrations, { recursive: true });
  // A 2 MiB file system, 1.5 MiB of it taken: less than the testbed's 1 MiB reserve is left.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'roam-nospace', migrations]);
  t.teardown(() => execFileSync('umount', [migrations]));
  writeFileSync(join(migrations, 'ballast'), Buffer.alloc(1536 * 1024));
  const id = 'm-nospace-0a0b0c';
  const refused = peerCall(node1, node2, 'POST', '/peer/v1/migrations/prepare', {
    id, mode: 'stop-copy', handover: 'off', name: 'no-room', ip: '10.244.1.251', prefixLength: 16, mac: '02:72:0a:f4:01:fb', generation: 2,
    command: ['/bin/true'], createdAt: new Date().toISOString(),
  });
  t.is(refused.status, 507, refused.body);
  const error = errorOf(refused);
  t.is(error.code, 'NO_SPACE');
  t.regex(error.message, new RegExp(`migration ${id} of no-room: ${migrations} has \\d+ bytes free, and 1048576 are kept free`));
  t.deepEqual(readdirSync(migrations), ['ballast']);
  t.false(existsSync(join(node2.stateDir, 'netns', 'no-room')));
});

test.serial("a page server answers only the migration's other end: another node of the cluster is reset before TLS, its gate goes with the arrival", (t) => {
  const tls = join(TESTBED_ROOT, name, 'tls');
  const node1 = { cert: join(tls, 'node1.pem'), key: join(tls, 'node1.key') };
  const node2 = tb.nodes[1]!;
  const id = 'm-gated-0a0b0c';
  // The source is node1's certificate from the underlay's own address (172.31.0.254); node1's namespace (172.31.0.1) plays another node.
  const prepared = peerCall(node1, node2, 'POST', '/peer/v1/migrations/prepare', {
    id, mode: 'streamed', handover: 'off', name: 'gated', ip: '10.244.1.252', prefixLength: 16, mac: '02:72:0a:f4:01:fc', generation: 2,
    command: ['/bin/true'], createdAt: new Date().toISOString(),
  });
  t.is(prepared.status, 200, prepared.body);
  const port = (JSON.parse(prepared.body) as { pageServerPort: number }).pageServerPort;
  t.true(port > 0, prepared.body);
  // The nft program itself: node_modules/.bin has another `nft` (@vercel/nft) first on the tests' PATH.
  const tables = () => execFileSync('nsenter', [`--net=${node2.netns}`, '/usr/sbin/nft', 'list', 'tables'], { encoding: 'utf8' });
  t.regex(tables(), new RegExp(`table inet roam_gate_${port}\\b`));
  const connectFrom = (netns: string) => spawnSync('nsenter', [`--net=${netns}`, 'bash', '-c', `exec 3<>/dev/tcp/${node2.underlayIp}/${port}`], { encoding: 'utf8', timeout: 10000 });
  const stranger = connectFrom(tb.nodes[0]!.netns);
  t.not(stranger.status, 0, 'node1\'s namespace is refused');
  t.regex(stranger.stderr, /Connection refused/);
  const source = connectFrom(tb.switchNetns);
  t.is(source.status, 0, `the source's address gets through: ${source.stderr}`);
  const aborted = peerCall(node1, node2, 'POST', `/peer/v1/migrations/${id}/abort`, {});
  t.is(aborted.status, 200, aborted.body);
  t.notRegex(tables(), /roam_gate_/, 'the gate went with the arrival');
});
