/**
 * The peer protocol is mutual TLS under the testbed's CA: from the underlay,
 * a client without a certificate, with one another CA signed, or speaking
 * plain HTTP is refused at the handshake, and the agent says so and counts
 * it; a node's own certificate gets through. (Every other testbed test runs
 * its migrations, announcements and forwarded requests over the same TLS.)
 * The control API on the underlay answers the roam CLI holding the token,
 * over HTTPS; without the token, with a wrong one, or in plain HTTP it
 * answers nothing but a refusal, which the agent says and counts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCa, ensureNodeCert } from '../../src/sys/certs.js';
import type { TestbedState } from '../../src/testbed/state.js';
import { requireRoot } from '../helpers/root.js';
import { downClean, uniqueTestbedName, upTestbed } from '../helpers/testbed.js';
import { TESTBED_ROOT } from '../../src/testbed/layout.js';

const name = uniqueTestbedName();
let tb: TestbedState;

test.before(async () => {
  requireRoot();
  tb = await upTestbed(name, 2);
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
