/**
 * TLS on CRIU's page-server connections (streamed pages during a dump, the
 * post-copy pull after it), with the cluster CA and node certificates the
 * peer protocol uses: whoever reaches the port without a certificate the CA
 * signed gets no page of a service's memory and can write none into it.
 * CRIU (gnutls) reads the PEM files itself.
 *
 * Which side checks what: the side that connects checks the server's
 * certificate against the address it dialled (the node's underlay address,
 * which its certificate names). The side that serves checks only that the
 * CA signed the client's: CRIU would compare the client's certificate with
 * its own listening address, which no client certificate names.
 */
import type { CriuOpts } from '../sys/criu/rpc.js';

/** PEM file paths: the cluster CA, this node's certificate and key. */
export interface PageServerTls {
  ca: string;
  cert: string;
  key: string;
}

type TlsOpts = Pick<CriuOpts, 'tls' | 'tlsCacert' | 'tlsCert' | 'tlsKey' | 'tlsNoCnVerify'>;

/** CRIU RPC options for a page-server connection this CRIU `side` of. */
export function criuTlsOpts(tls: PageServerTls | undefined, side: 'serves' | 'connects'): TlsOpts {
  if (!tls) return {};
  return { tls: true, tlsCacert: tls.ca, tlsCert: tls.cert, tlsKey: tls.key, ...(side === 'serves' ? { tlsNoCnVerify: true } : {}) };
}

/** The same for the command line (`criu lazy-pages`, which connects). */
export function criuTlsArgs(tls: PageServerTls | undefined): string[] {
  return tls ? ['--tls', '--tls-cacert', tls.ca, '--tls-cert', tls.cert, '--tls-key', tls.key] : [];
}


/** The same as lines of a CRIU options file (a container's dump, which runc runs). */
export function criuTlsOptionLines(tls: PageServerTls | undefined): string[] {
  return tls ? ['tls', `tls-cacert ${tls.ca}`, `tls-cert ${tls.cert}`, `tls-key ${tls.key}`] : [];
}
