/**
 * A small certificate authority with the openssl CLI: a cluster CA, and for
 * each node a key and a certificate for its underlay address (usable by
 * both ends of a mutual-TLS connection). The testbed makes all of them
 * here; on Kubernetes each agent makes its key and request here and the
 * signer (kubernetes/peer-signer.ts) signs with names it chose itself.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';

export interface NodeCert {
  ca: string;
  cert: string;
  key: string;
}

/** openssl's stdout; its last words when it fails. */
function openssl(args: string[], what: string, input?: string): string {
  try {
    return execFileSync('openssl', args, { input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8', timeout: 30000 });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err);
    throw new RoamError('PRECONDITION', `openssl could not ${what}: ${stderr.split('\n').slice(-2).join(' ')}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** The CA in `dir` (made once); returns the path of its certificate. */
export function ensureCa(dir: string, commonName: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, 'ca.pem');
  if (!existsSync(ca)) {
    openssl(['req', '-x509', ...EC, '-keyout', join(dir, 'ca.key'), '-out', ca, '-days', '3650', '-subj', `/CN=${commonName}`], 'make a CA');
    chmodSync(join(dir, 'ca.key'), 0o600);
  }
  return ca;
}

/** A key and a CA-signed certificate for `node` at `address` (made once). */
export function ensureNodeCert(dir: string, node: string, address: string): NodeCert {
  const ca = join(dir, 'ca.pem');
  const cert = join(dir, `${node}.pem`);
  const key = join(dir, `${node}.key`);
  if (!existsSync(cert) || !existsSync(key)) {
    const csr = join(dir, `${node}.csr`);
    const ext = join(dir, `${node}.ext`);
    writeFileSync(ext, `subjectAltName=IP:${address}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${node}`], `make a key for ${node}`);
    openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', cert, '-days', '3650', '-extfile', ext], `sign ${node}'s certificate`);
    chmodSync(key, 0o600);
    rmSync(csr, { force: true });
    rmSync(ext, { force: true });
  }
  return { ca, cert, key };
}

/** A random bearer token in `path`, readable by root only (made once). */
export function ensureSecretToken(path: string): void {
  if (existsSync(path)) return;
  writeFileSync(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
}

/** A certificate and its key, as PEM text. */
export interface CertificateAuthority {
  cert: string;
  key: string;
}

/** A new CA, returned as PEM (nothing stays on disk). */
export function makeCa(commonName: string, days: number): CertificateAuthority {
  const dir = mkdtempSync(join(tmpdir(), 'roam-ca-'));
  try {
    const cert = openssl(['req', '-x509', ...EC, '-keyout', join(dir, 'ca.key'), '-days', String(days), '-subj', `/CN=${commonName}`], 'make a CA');
    return { cert, key: openssl(['pkey', '-in', join(dir, 'ca.key')], 'read the new CA key') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A new key for `node`, written to `keyPath` (root only), and a PKCS#10
 * request for CN=`node` with `address` as its IP subjectAltName; returns
 * the request as PEM.
 */
export function makeKeyAndRequest(keyPath: string, node: string, address: string): string {
  rmSync(keyPath, { force: true });
  const request = openssl(['req', '-new', ...EC, '-keyout', keyPath, '-subj', `/CN=${node}`, '-addext', `subjectAltName=IP:${address}`], `make a key and request for ${node}`);
  chmodSync(keyPath, 0o600);
  return request;
}

/**
 * A request's subject (RFC 2253, e.g. `CN=node1`), once openssl has checked
 * that the key it carries signed it. A request that does not verify, or
 * that is not one, is refused.
 */
export function requestSubject(requestPem: string): string {
  const out = openssl(['req', '-noout', '-verify', '-subject', '-nameopt', 'RFC2253'], 'read the certificate request', requestPem);
  const line = out.split('\n').find((l) => l.startsWith('subject='));
  if (line === undefined) throw new RoamError('INPUT_INVALID', 'certificate request: no subject');
  return line.slice('subject='.length).trim();
}

/**
 * Signs `requestPem`'s key as a certificate for `node` at `address`, for
 * both ends of mutual TLS, valid `days`. The names are the caller's: the
 * request's own subject and extensions are never copied.
 */
export function signNodeCertificate(ca: CertificateAuthority, requestPem: string, node: string, address: string, days: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-sign-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    writeFileSync(join(dir, 'ca.key'), ca.key, { mode: 0o600 });
    writeFileSync(join(dir, 'ext'), `subjectAltName=IP:${address}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n`);
    return openssl([
      'x509', '-req', '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-set_serial', `0x${randomBytes(16).toString('hex')}`,
      '-days', String(days), '-subj', `/CN=${node}`, '-extfile', join(dir, 'ext'),
    ], `sign ${node}'s certificate`, requestPem);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
