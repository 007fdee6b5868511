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
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { CriuOpts } from '../sys/criu/rpc.js';
import type { EventBus } from '../events/bus.js';

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

/**
 * Opens a connection to a page server and closes it at once, as an
 * authenticated client when the server speaks TLS (completing the handshake
 * first, so that CRIU sees a clean end of the conversation, not a refusal).
 */
export function knockAndLeave(address: string, port: number, tls: PageServerTls | undefined): Promise<void> {
  return new Promise((resolve) => {
    let sk: Socket;
    if (tls) {
      sk = tlsConnect({ host: address, port, ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, () => sk.end());
    } else {
      sk = tcpConnect({ host: address, port }, () => sk.end());
    }
    sk.setTimeout(5000, () => sk.destroy());
    sk.on('close', () => resolve());
    sk.on('error', () => resolve());
  });
}

/** A client a page server turned away at the TLS handshake, as its CRIU log tells it. */
export interface PageServerRefusal {
  from: string;
  reason: string;
}

const REFUSAL = /(TLS handshake failed|Unable to verify TLS peer|Invalid certificate|The certificate is NOT trusted|certificate)/i;

/**
 * Reads a page server's log (dump.log of a lazy dump, page-server.log of a
 * streamed target) for a refused client: CRIU logs "Accepted connection
 * from ADDRESS:PORT", then why the handshake failed. Undefined when there
 * was none (or no log).
 */
export function pageServerRefusalIn(logPath: string): PageServerRefusal | undefined {
  let text: string;
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return undefined;
  }
  const accepted = [...text.matchAll(/Accepted connection from (\S+?):\d+\s*$/gm)].pop();
  if (!accepted) return undefined;
  const after = text.slice((accepted.index ?? 0) + accepted[0].length).split('\n');
  const errors = after.filter((l) => /Error \(/.test(l) && REFUSAL.test(l));
  if (errors.length === 0) return undefined;
  return { from: accepted[1]!, reason: errors.map((l) => l.replace(/^.*?Error \([^)]*\):\s*/, '').trim()).join('; ') };
}

/** Says and counts a page server's refusal as any other failed peer handshake (roam_peer_tls_refusals_total). */
export function reportPageServerRefusal(events: EventBus, what: string, r: PageServerRefusal): void {
  events.warn(`${what} refused a connection from ${r.from} at the TLS handshake (${r.reason}); that migration cannot go on`);
  events.emit('peer.tls-refused', { from: r.from, reason: `page server: ${r.reason}` });
}
