/**
 * The signer's decision (a node's certificate names the node its requester's
 * token is bound to, and that Node's address) and the agent's checks of what
 * it got, with real openssl requests and certificates but no cluster.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1CertificateSigningRequest, V1Node } from '@kubernetes/client-node';
import { PEER_SIGNER_NAME } from '../../src/kubernetes/client.js';
import { certificateProblem, pemBlocks, renewalDueAt } from '../../src/kubernetes/peer-certificate.js';
import { judgeRequest, NODE_NAME_EXTRA, type SignerPolicy } from '../../src/kubernetes/peer-signer.js';
import { makeCa, makeKeyAndRequest, requestSubject, signNodeCertificate } from '../../src/sys/certs.js';

const AGENTS = 'system:serviceaccount:roam-system:roam-agent';
const policy: SignerPolicy = { signerName: PEER_SIGNER_NAME, agentServiceAccount: 'roam-system:roam-agent', maxDays: 30 };
const nodes: Record<string, V1Node> = {
  node1: { metadata: { name: 'node1' }, status: { addresses: [{ type: 'Hostname', address: 'node1' }, { type: 'InternalIP', address: '192.0.2.1' }] } },
  node3: { metadata: { name: 'node3' }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.3' }] } },
  bare: { metadata: { name: 'bare' }, status: {} },
};

function folder(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-signer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function csr(request: string, spec: Partial<V1CertificateSigningRequest['spec']> = {}, status?: V1CertificateSigningRequest['status']): V1CertificateSigningRequest {
  return {
    metadata: { name: 'r' },
    spec: { request: Buffer.from(request).toString('base64'), signerName: PEER_SIGNER_NAME, username: AGENTS, extra: { [NODE_NAME_EXTRA]: ['node1'] }, usages: ['digital signature', 'server auth', 'client auth'], ...spec },
    ...(status ? { status } : {}),
  };
}

test('a request from node1\'s agent for CN=node1 is signed for node1 at its InternalIP; the lifetime is whole days, capped', (t) => {
  const request = makeKeyAndRequest(join(folder(t), 'key'), 'node1', '192.0.2.1');
  const judge = (c: V1CertificateSigningRequest) => judgeRequest(c, policy, (n) => nodes[n], requestSubject);
  t.deepEqual(judge(csr(request)), { verdict: 'sign', node: 'node1', address: '192.0.2.1', days: 30, approved: false });
  t.like(judge(csr(request, { expirationSeconds: 600 })), { days: 1 });
  t.like(judge(csr(request, { expirationSeconds: 86400 * 400 })), { days: 30 });
  t.like(judge(csr(request, {}, { conditions: [{ type: 'Approved', status: 'True', reason: 'r', message: 'm' }] })), { verdict: 'sign', approved: true });
});

test('what is not the signer\'s to answer is left alone: another signer, a request already signed, denied or failed', (t) => {
  const request = makeKeyAndRequest(join(folder(t), 'key'), 'node1', '192.0.2.1');
  const judge = (c: V1CertificateSigningRequest) => judgeRequest(c, policy, (n) => nodes[n], requestSubject);
  t.deepEqual(judge(csr(request, { signerName: 'kubernetes.io/kube-apiserver-client' })), { verdict: 'ignore' });
  t.deepEqual(judge(csr(request, {}, { certificate: 'Zm9v' })), { verdict: 'ignore' });
  t.deepEqual(judge(csr(request, {}, { conditions: [{ type: 'Denied', status: 'True' }] })), { verdict: 'ignore' });
  t.deepEqual(judge(csr(request, {}, { conditions: [{ type: 'Failed', status: 'True' }] })), { verdict: 'ignore' });
});

test('every way of asking for more is denied, saying why', (t) => {
  const dir = folder(t);
  const forNode1 = makeKeyAndRequest(join(dir, 'key1'), 'node1', '192.0.2.1');
  const judge = (c: V1CertificateSigningRequest) => judgeRequest(c, policy, (n) => nodes[n], requestSubject);
  const denied = (c: V1CertificateSigningRequest, pattern: RegExp) => {
    const j = judge(c);
    t.is(j.verdict, 'deny');
    t.regex(j.verdict === 'deny' ? j.reason : '', pattern);
  };
  // node3's agent asking as node1
  denied(csr(forNode1, { extra: { [NODE_NAME_EXTRA]: ['node3'] } }), /asks for "CN=node1", but its requester runs on node node3/);
  // anyone else in the cluster
  denied(csr(forNode1, { username: 'system:serviceaccount:default:web' }), /requested by "system:serviceaccount:default:web", not by the agents' service account/);
  denied(csr(forNode1, { username: 'alice' }), /requested by "alice"/);
  // a token not bound to a node (older clusters, or a token made by hand), or bound to two
  denied(csr(forNode1, { extra: {} }), /bound to no node/);
  denied(csr(forNode1, { extra: { [NODE_NAME_EXTRA]: ['node1', 'node3'] } }), /bound to no node/);
  denied(csr(forNode1, { extra: { [NODE_NAME_EXTRA]: ['gone'] } }), /node gone does not exist/);
  denied(csr(forNode1, { extra: { [NODE_NAME_EXTRA]: ['bare'] } }), /node bare has no InternalIP/);
  denied(csr(forNode1, { usages: ['digital signature', 'cert sign'] }), /usages cert sign are not for peer TLS/);
  // not a request, or one whose signature does not verify
  denied(csr('not a request'), /does not verify/);
  // One character of the signed part changed (its third line, the subject and key).
  const lines = forNode1.split('\n');
  lines[2] = `${lines[2]!.slice(0, 10)}${lines[2]![10] === 'A' ? 'B' : 'A'}${lines[2]!.slice(11)}`;
  const tampered = lines.join('\n');
  denied(csr(tampered), /does not verify/);
});

test('the issued certificate names what the signer chose, whatever the request asked for', (t) => {
  const dir = folder(t);
  const ca = makeCa('test CA', 1);
  // A request that asks for another name and address.
  const request = makeKeyAndRequest(join(dir, 'key'), 'node1', '203.0.113.9');
  const leaf = signNodeCertificate(ca, request, 'node1', '192.0.2.1', 1);
  const paths = { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key') };
  writeFileSync(paths.ca, ca.cert);
  writeFileSync(paths.cert, leaf);
  t.is(certificateProblem(paths, 'node1', '192.0.2.1'), undefined);
  t.regex(certificateProblem(paths, 'node1', '203.0.113.9') ?? '', /does not name 203\.0\.113\.9/);
  t.regex(certificateProblem(paths, 'node2', '192.0.2.1') ?? '', /not CN=node2/);
  // Two days from now it has expired; a day's certificate is due after two thirds of it, or sooner when asked.
  t.regex(certificateProblem(paths, 'node1', '192.0.2.1', Date.now() + 2 * 86400000) ?? '', /expired/);
  const due = renewalDueAt(paths.cert, undefined) - Date.now();
  t.true(due > 15.9 * 3600000 && due <= 16 * 3600000, `${due} ms`);
  t.true(renewalDueAt(paths.cert, 60) - Date.now() <= 60000);
  // Another CA's certificate, another key beside it, missing files.
  const other = makeCa('other CA', 1);
  writeFileSync(paths.ca, other.cert);
  t.regex(certificateProblem(paths, 'node1', '192.0.2.1') ?? '', /not signed by the CA beside it/);
  writeFileSync(paths.ca, ca.cert);
  makeKeyAndRequest(paths.key, 'node1', '192.0.2.1');
  t.regex(certificateProblem(paths, 'node1', '192.0.2.1') ?? '', /not for the key beside it/);
  rmSync(paths.cert);
  t.regex(certificateProblem(paths, 'node1', '192.0.2.1') ?? '', /no cert yet/);
  t.is(readFileSync(paths.key, 'utf8').includes('PRIVATE KEY'), true);
});

test('a chain splits into its certificates, in order', (t) => {
  const a = makeCa('a', 1).cert;
  const b = makeCa('b', 1).cert;
  t.deepEqual(pemBlocks(`${a}${b}`).map((p) => p.trim()), [a.trim(), b.trim()]);
  t.deepEqual(pemBlocks('nothing here'), []);
});
