/**
 * On Kubernetes an agent gets its peer certificate from the cluster, and no
 * CA key is ever on its node: it makes its key here, asks for a certificate
 * in a CertificateSigningRequest for roam's signer (peer-signer.ts), and
 * keeps what the signer issued. The signer names the node itself, from the
 * requester's service-account token and the Node object; the status it
 * writes holds the node's certificate and, after it, the CA's, which the
 * agent trusts from then on (it trusts the API server for everything it
 * does; only the signer may write that status). It asks again before the
 * certificate is due, and the agent swaps the new one in without a restart.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import { RoamError } from '../errors/roam-error.js';
import { makeKeyAndRequest } from '../sys/certs.js';
import { writeFileAtomically } from '../sys/durable-file.js';
import type { KubeClient } from './client.js';

export interface PeerCertificatePaths {
  ca: string;
  cert: string;
  key: string;
}

export interface PeerCertificateRequest {
  client: KubeClient;
  node: string;
  address: string;
  paths: PeerCertificatePaths;
  signerName: string;
  /** asked of the signer (it may issue for less) */
  expirationSeconds: number;
  /** how long to wait for the signer */
  timeoutMs: number;
  say: (message: string) => void;
}

/** Why the files at `paths` will not do for `node` at `address` at `now`, or undefined when they will. */
export function certificateProblem(paths: PeerCertificatePaths, node: string, address: string, now = Date.now()): string | undefined {
  const missing = (['ca', 'cert', 'key'] as const).filter((k) => !existsSync(paths[k]));
  if (missing.length > 0) return `no ${missing.join(', ')} yet`;
  try {
    const cert = new X509Certificate(readFileSync(paths.cert));
    const ca = new X509Certificate(readFileSync(paths.ca));
    return namesProblem(cert, ca, node, address)
      ?? (cert.checkPrivateKey(createPrivateKey(readFileSync(paths.key))) ? undefined : 'the certificate is not for the key beside it')
      ?? (Date.parse(cert.validTo) <= now ? `it expired at ${cert.validTo}` : undefined);
  } catch (err) {
    return `unreadable: ${(err as Error).message}`;
  }
}

/** When the certificate at `certPath` is due for renewal: after `renewAfterSeconds` of its life, or two thirds of it. */
export function renewalDueAt(certPath: string, renewAfterSeconds: number | undefined): number {
  const cert = new X509Certificate(readFileSync(certPath));
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return from + Math.min(renewAfterSeconds !== undefined ? renewAfterSeconds * 1000 : Infinity, ((to - from) * 2) / 3);
}

/** Asks the signer for a certificate for a new key, waits for it, checks it, and puts key, certificate and CA in place. */
export async function obtainPeerCertificate(r: PeerCertificateRequest): Promise<void> {
  const newKey = `${r.paths.key}.new`;
  for (const file of Object.values(r.paths)) mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const request = makeKeyAndRequest(newKey, r.node, r.address);
  try {
    const name = `roam-peer-${r.node}-${Date.now().toString(36)}`;
    await r.client.createCertificateRequest({
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { name, labels: { 'app.kubernetes.io/part-of': 'roam', 'roam.dev/node': r.node } },
      spec: {
        request: Buffer.from(request).toString('base64'),
        signerName: r.signerName,
        expirationSeconds: r.expirationSeconds,
        usages: ['digital signature', 'server auth', 'client auth'],
      },
    });
    r.say(`asked for a peer certificate (certificatesigningrequest ${name}, signer ${r.signerName})`);
    const issued = await issuedCertificate(r.client, name, r.timeoutMs);
    const [leaf, ...rest] = pemBlocks(issued);
    const ca = rest.at(-1);
    if (!leaf || !ca) throw new RoamError('CERTIFICATE_UNAVAILABLE', `certificatesigningrequest ${name}: the issued certificate comes without its CA after it`);
    const cert = new X509Certificate(leaf);
    const problem = namesProblem(cert, new X509Certificate(ca), r.node, r.address)
      ?? (cert.checkPrivateKey(createPrivateKey(readFileSync(newKey))) ? undefined : 'it is not for the key this agent made');
    if (problem) throw new RoamError('CERTIFICATE_UNAVAILABLE', `certificatesigningrequest ${name}: the issued certificate will not do: ${problem}`);
    // The key first: a reader that meets the old certificate with the new key fails its handshake once, and tries again.
    writeFileAtomically(r.paths.ca, ca);
    renameSync(newKey, r.paths.key);
    writeFileAtomically(r.paths.cert, leaf);
    r.say(`peer certificate for ${r.node} (${r.address}) in place, valid until ${cert.validTo}`);
  } finally {
    rmSync(newKey, { force: true });
  }
}

function namesProblem(cert: X509Certificate, ca: X509Certificate, node: string, address: string): string | undefined {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'it is not signed by the CA beside it';
  if (cert.subject.trim() !== `CN=${node}`) return `it names ${JSON.stringify(cert.subject.trim())}, not CN=${node}`;
  const sans = (cert.subjectAltName ?? '').split(',').map((s) => s.trim());
  if (!sans.includes(`IP Address:${address}`)) return `its subjectAltName (${cert.subjectAltName ?? 'none'}) does not name ${address}`;
  return undefined;
}

/** The PEM blocks of `text`, each with its BEGIN and END lines. */
export function pemBlocks(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

async function issuedCertificate(client: KubeClient, name: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: V1CertificateSigningRequest | undefined;
  while (Date.now() < deadline) {
    last = await client.readCertificateRequest(name);
    const refused = last.status?.conditions?.find((c) => c.type === 'Denied' || c.type === 'Failed');
    if (refused) throw new RoamError('CERTIFICATE_UNAVAILABLE', `certificatesigningrequest ${name} ${refused.type}: ${refused.reason ?? ''} ${refused.message ?? ''}`.trim());
    if (last.status?.certificate) return Buffer.from(last.status.certificate, 'base64').toString('utf8');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const approved = last?.status?.conditions?.some((c) => c.type === 'Approved');
  throw new RoamError('CERTIFICATE_UNAVAILABLE', `certificatesigningrequest ${name}: no certificate after ${timeoutMs} ms (${approved ? 'approved, not signed' : 'not approved'}); is the roam signer running?`);
}

/**
 * Keeps this node's peer certificate valid: gets one at start when the
 * files will not do, and a new one each time the current one is due;
 * `renewed` is called once the new files are in place. A renewal that
 * fails is said and tried again a minute later, while the current
 * certificate still works.
 */
export class PeerCertificateKeeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly r: PeerCertificateRequest & { renewAfterSeconds?: number | undefined; warn: (message: string) => void }, private readonly renewed: () => void) {}

  async start(): Promise<void> {
    const problem = certificateProblem(this.r.paths, this.r.node, this.r.address);
    if (problem !== undefined || renewalDueAt(this.r.paths.cert, this.r.renewAfterSeconds) <= Date.now()) {
      this.r.say(`peer certificate: ${problem ?? 'due for renewal'}; asking the cluster for one`);
      await obtainPeerCertificate(this.r);
    }
    this.schedule(renewalDueAt(this.r.paths.cert, this.r.renewAfterSeconds) - Date.now());
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(inMs: number): void {
    if (this.stopped) return;
    // setTimeout takes at most 2^31-1 ms: a longer wait is taken in steps.
    const wait = Math.min(Math.max(inMs, 1000), 2 ** 31 - 1);
    this.timer = setTimeout(() => void this.renew(), wait);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (renewalDueAt(this.r.paths.cert, this.r.renewAfterSeconds) > Date.now()) {
      this.schedule(renewalDueAt(this.r.paths.cert, this.r.renewAfterSeconds) - Date.now());
      return;
    }
    try {
      await obtainPeerCertificate(this.r);
      if (!this.stopped) this.renewed();
      this.schedule(renewalDueAt(this.r.paths.cert, this.r.renewAfterSeconds) - Date.now());
    } catch (err) {
      this.r.warn(`peer certificate renewal failed (${(err as Error).message}); the current one serves on, trying again in a minute`);
      this.schedule(60000);
    }
  }
}
