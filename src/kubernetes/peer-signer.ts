/**
 * roam's signer of agents' peer certificates (`roam signer`, one small
 * Deployment with a service account of its own): it approves and signs
 * the CertificateSigningRequests for its signer name, and the CA key never
 * leaves it (a Secret in its namespace that only it reads, made on its
 * first start unless the operator brought one).
 *
 * A certificate names one node, and the signer decides which, never the
 * request: the requester must be the agents' service account, and its
 * token must be bound to a pod on that node (the API server copies the
 * token's `authentication.kubernetes.io/node-name` into the request,
 * Kubernetes 1.30 and later); the certificate's IP address is the Node
 * object's InternalIP. A request that asks for anything else is denied,
 * saying why. The decision is a pure function (judgeRequest) of the
 * request and the Node, tested without a cluster.
 */
import type { V1CertificateSigningRequest, V1Node } from '@kubernetes/client-node';
import { describeError } from '../errors/roam-error.js';
import { makeCa, requestSubject, signNodeCertificate, type CertificateAuthority } from '../sys/certs.js';
import { isConflict, isNotFound, type KubeClient, type Watcher } from './client.js';

/** The token's node, as the API server records it in a request's `extra`. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
const ALLOWED_USAGES = new Set(['digital signature', 'key encipherment', 'server auth', 'client auth']);
const DAY_SECONDS = 86400;

export interface SignerPolicy {
  signerName: string;
  /** `namespace:name` of the agents' service account */
  agentServiceAccount: string;
  /** the longest certificate issued, in days (also the lifetime when the request asks for none) */
  maxDays: number;
}

export type Judgement =
  | { verdict: 'ignore' }
  | { verdict: 'deny'; reason: string }
  | { verdict: 'sign'; node: string; address: string; days: number; approved: boolean };

/**
 * What to do with `csr`. `nodeNamed` finds a Node object; `subjectOf`
 * checks the request's own signature and returns its subject.
 */
export function judgeRequest(csr: V1CertificateSigningRequest, policy: SignerPolicy, nodeNamed: (name: string) => V1Node | undefined, subjectOf: (pem: string) => string): Judgement {
  const spec = csr.spec;
  if (spec?.signerName !== policy.signerName || csr.status?.certificate) return { verdict: 'ignore' };
  const conditions = csr.status?.conditions ?? [];
  if (conditions.some((c) => c.type === 'Denied' || c.type === 'Failed')) return { verdict: 'ignore' };
  const deny = (reason: string): Judgement => ({ verdict: 'deny', reason });
  const [ns, sa] = policy.agentServiceAccount.split(':');
  if (spec.username !== `system:serviceaccount:${ns}:${sa}`) return deny(`requested by ${JSON.stringify(spec.username ?? '')}, not by the agents' service account ${policy.agentServiceAccount}`);
  const nodes = spec.extra?.[NODE_NAME_EXTRA] ?? [];
  if (nodes.length !== 1) return deny(`the requester's token is bound to no node (${NODE_NAME_EXTRA}: ${JSON.stringify(nodes)}); Kubernetes 1.30 or later records it for a pod's service-account token`);
  const node = nodes[0]!;
  const object = nodeNamed(node);
  if (!object) return deny(`node ${node} does not exist`);
  const address = object.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  if (!address) return deny(`node ${node} has no InternalIP`);
  const unexpected = (spec.usages ?? []).filter((u) => !ALLOWED_USAGES.has(u));
  if (unexpected.length > 0) return deny(`usages ${unexpected.join(', ')} are not for peer TLS`);
  let subject: string;
  try {
    subject = subjectOf(Buffer.from(spec.request, 'base64').toString('utf8'));
  } catch (err) {
    return deny(`the request does not verify: ${describeError(err)}`);
  }
  if (subject !== `CN=${node}`) return deny(`the request asks for ${JSON.stringify(subject)}, but its requester runs on node ${node} (CN=${node})`);
  const asked = spec.expirationSeconds !== undefined ? Math.ceil(spec.expirationSeconds / DAY_SECONDS) : policy.maxDays;
  const days = Math.max(1, Math.min(policy.maxDays, asked));
  return { verdict: 'sign', node, address, days, approved: conditions.some((c) => c.type === 'Approved') };
}

export interface SignerOptions extends SignerPolicy {
  client: KubeClient;
  /** where the CA's Secret lives */
  namespace: string;
  secretName: string;
  say: (message: string) => void;
  warn: (message: string) => void;
}

/** The CA from its Secret, made (and stored) on the first start when there is none. */
export async function signerCa(o: SignerOptions): Promise<CertificateAuthority> {
  for (;;) {
    try {
      const secret = await o.client.readSecret(o.namespace, o.secretName);
      const cert = secret.data?.['tls.crt'];
      const key = secret.data?.['tls.key'];
      if (!cert || !key) throw new Error(`secret ${o.namespace}/${o.secretName} lacks tls.crt or tls.key`);
      return { cert: Buffer.from(cert, 'base64').toString('utf8'), key: Buffer.from(key, 'base64').toString('utf8') };
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const ca = makeCa('roam peer CA', 3650);
    try {
      await o.client.createSecret({
        apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls',
        metadata: { name: o.secretName, namespace: o.namespace, labels: { 'app.kubernetes.io/part-of': 'roam' } },
        data: { 'tls.crt': Buffer.from(ca.cert).toString('base64'), 'tls.key': Buffer.from(ca.key).toString('base64') },
      });
      o.say(`made a new peer CA, kept in secret ${o.namespace}/${o.secretName}`);
      return ca;
    } catch (err) {
      // Another signer made it first: read theirs.
      if (!isConflict(err)) throw err;
    }
  }
}

/** Watches the requests for its signer name and answers each; returns a stop function. */
export function runSigner(o: SignerOptions, ca: CertificateAuthority, nodes: Watcher<V1Node>): () => void {
  const busy = new Set<string>();
  const answer = async (csr: V1CertificateSigningRequest) => {
    const name = csr.metadata?.name ?? '';
    if (busy.has(name)) return;
    const judged = judgeRequest(csr, o, (n) => nodes.get(n), requestSubject);
    if (judged.verdict === 'ignore') return;
    busy.add(name);
    try {
      if (judged.verdict === 'deny') {
        await o.client.replaceCertificateApproval(withCondition(csr, 'Denied', 'RoamPeerRequestRefused', judged.reason));
        o.warn(`denied certificatesigningrequest ${name}: ${judged.reason}`);
        return;
      }
      const approved = judged.approved ? csr : await o.client.replaceCertificateApproval(withCondition(csr, 'Approved', 'RoamPeerNode', `a peer certificate for node ${judged.node} at ${judged.address}`));
      const leaf = signNodeCertificate(ca, Buffer.from(csr.spec.request, 'base64').toString('utf8'), judged.node, judged.address, judged.days);
      await o.client.replaceCertificateStatus({ ...approved, status: { ...approved.status, certificate: Buffer.from(leaf + ca.cert).toString('base64') } });
      o.say(`signed certificatesigningrequest ${name}: node ${judged.node} at ${judged.address}, ${judged.days} days`);
    } catch (err) {
      o.warn(`certificatesigningrequest ${name}: ${describeError(err)}; trying again`);
      // Events that came meanwhile were passed over: read it afresh (a stale version got 409).
      setTimeout(() => void o.client.readCertificateRequest(name).then(answer, (e: unknown) => o.warn(`certificatesigningrequest ${name}: ${describeError(e)}`)), 1000).unref();
    } finally {
      busy.delete(name);
    }
  };
  const requests = o.client.watchCertificateRequests(o.signerName, {
    changed: (csr) => void answer(csr),
    deleted: () => undefined,
    error: (reason) => o.warn(reason),
  });
  return () => requests.stop();
}

function withCondition(csr: V1CertificateSigningRequest, type: 'Approved' | 'Denied', reason: string, message: string): V1CertificateSigningRequest {
  const now = new Date();
  return {
    ...csr,
    status: { ...csr.status, conditions: [...(csr.status?.conditions ?? []), { type, status: 'True', reason, message, lastUpdateTime: now, lastTransitionTime: now }] },
  };
}
