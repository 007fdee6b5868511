/**
 * A small certificate authority with the openssl CLI: a cluster CA, and for
 * each node a key and a certificate for its underlay address (usable by
 * both ends of a mutual-TLS connection). For the testbed; on a real cluster
 * the operator's PKI (or a Kubernetes Secret) provides the same three files.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RoamError } from '../errors/roam-error.js';

export interface NodeCert {
  ca: string;
  cert: string;
  key: string;
}

function openssl(args: string[], what: string): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
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
