/**
 * Who is calling on the peer port, and what it may say. With `tls` in the
 * config, every peer connection has shown a client certificate the cluster
 * CA signed (the handshake refuses the rest). That certificate names one
 * node (its CN) and that node's underlay addresses (its IP subjectAltNames),
 * and the caller speaks for that node only:
 *
 * - it announces itself, at an address its certificate names
 *   (announcementRefusal);
 * - it drives the steps of the migrations it prepared here, and of no other
 *   (migrationStepRefusal).
 *
 * Without `tls` there is no identity: `undefined` means plaintext, which is
 * allowed only because the config chose it, and then nothing here can be
 * checked. The rules are pure functions of the identity and the message, so
 * they are tested without a TLS connection (test/unit/peer-identity.test.ts).
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Value } from '@sinclair/typebox/value';
import { RoamError } from '../errors/roam-error.js';
import type { EventBus, PeerRefusal } from '../events/bus.js';
import { formatIp, isIpAddress, parseIp } from '../net/ip.js';
import { NodeName } from '../records/names.js';

/** The node a peer's certificate names, and the underlay addresses it names for it. */
export interface PeerIdentity {
  node: string;
  /** canonical form (formatIp) */
  addresses: string[];
}

/** A rule's verdict against a message: undefined when it may pass. */
export interface Refusal {
  reason: PeerRefusal;
  message: string;
}

/** The parts of a certificate (node:tls `PeerCertificate`) read here. */
export interface CertificateNames {
  subject?: Record<string, string | string[] | undefined> | undefined;
  subjectaltname?: string | undefined;
}

/** An address in the one spelling comparisons use (IPv6 in any case or length: compressed, lower case). */
export function canonicalIp(text: string): string | undefined {
  return isIpAddress(text) ? formatIp(parseIp(text)) : undefined;
}

/**
 * The entries of Node's `subjectaltname` string (`DNS:a, IP Address:1.2.3.4`).
 * Node writes a value that holds a comma, a quote or an unusual character as
 * a JSON string, so a name cannot smuggle a second entry in.
 */
export function subjectAltNames(text: string): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        // Not what Node writes: nothing after this point is trusted.
        break;
      }
      next = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    out.push({ type, value });
    if (!text.startsWith(', ', next)) break;
    i = next + 2;
  }
  return out;
}

/** The identity a certificate gives, or why it gives none. */
export function identityOfCertificate(cert: CertificateNames | undefined): PeerIdentity | Refusal {
  const cn = cert?.subject?.['CN'];
  if (cn === undefined || cn === '') return { reason: 'no-identity', message: 'its certificate has no common name (CN), so it names no node' };
  if (Array.isArray(cn)) return { reason: 'no-identity', message: `its certificate names ${cn.length} nodes (CN=${cn.join(', CN=')}); a node certificate names one` };
  if (!Value.Check(NodeName, cn)) return { reason: 'no-identity', message: `its certificate's common name ${JSON.stringify(cn)} is not a node name` };
  const addresses = subjectAltNames(cert?.subjectaltname ?? '')
    .filter((e) => e.type === 'IP Address')
    .map((e) => canonicalIp(e.value))
    .filter((a): a is string => a !== undefined);
  return { node: cn, addresses: [...new Set(addresses)] };
}

/**
 * An announcement (POST /peer/v1/announce) speaks for the node that sends
 * it: `node` must be the certificate's node and `address` one of its IP
 * addresses. Without an identity (plaintext, the config's choice) it passes.
 */
export function announcementRefusal(caller: PeerIdentity | undefined, a: { node: string; address: string }): Refusal | undefined {
  if (caller === undefined) return undefined;
  if (a.node !== caller.node) {
    return { reason: 'not-its-node', message: `${caller.node} announced itself as ${a.node}: its certificate speaks for ${caller.node} only` };
  }
  const address = canonicalIp(a.address);
  if (address === undefined || !caller.addresses.includes(address)) {
    const named = caller.addresses.length > 0 ? caller.addresses.join(', ') : 'no IP address';
    return { reason: 'not-its-address', message: `${caller.node} announced itself at ${a.address}, but its certificate names ${named}` };
  }
  return undefined;
}

/** A name claim (POST /peer/v1/names/claim or release) speaks for the certificate's node. Without an identity it passes. */
export function nameClaimRefusal(caller: PeerIdentity | undefined, claim: { name: string; node: string }): Refusal | undefined {
  if (caller === undefined || claim.node === caller.node) return undefined;
  return { reason: 'not-its-node', message: `${caller.node} claimed endpoint name ${claim.name} for ${claim.node}: its certificate speaks for ${caller.node} only` };
}

/**
 * A step of migration `id` (images, trees, restore, switch, held, unlock,
 * stall, pull, keep, abort, settled) comes from the node that prepared it
 * here. `preparedBy` is the target's record (MigrationTarget.preparedBy):
 * undefined when this node holds nothing of `id` any more, or not yet; the
 * step then finds nothing to act on and says so itself (NOT_FOUND, or an
 * abort with nothing to undo). Without an identity (plaintext) it passes.
 */
export function migrationStepRefusal(
  caller: PeerIdentity | undefined,
  id: string,
  step: string,
  preparedBy: { from: string | undefined } | undefined,
): Refusal | undefined {
  if (caller === undefined || preparedBy === undefined || preparedBy.from === caller.node) return undefined;
  const source = preparedBy.from ?? 'a peer without a certificate';
  return { reason: 'not-its-migration', message: `migration ${id} was prepared here by ${source}: ${caller.node} may not ${step} it` };
}

/** Each request's identity, set by the hook before anything else runs. `identity: undefined` = plaintext. */
const identities = new WeakMap<FastifyRequest, { identity: PeerIdentity | undefined }>();

/**
 * The calling peer's identity. A request the hook did not see is an error
 * (500), not plaintext: a peer app built without registerPeerIdentity must
 * not pass for one whose config chose no TLS.
 */
export function callerOf(req: FastifyRequest): PeerIdentity | undefined {
  const entry = identities.get(req);
  if (!entry) throw new Error(`${req.method} ${req.url}: the peer app has no identity hook (registerPeerIdentity); refusing rather than guessing`);
  return entry.identity;
}

/** The error a refusal answers with (403 FORBIDDEN), after saying it and counting it. */
export function refusePeer(events: EventBus | undefined, req: FastifyRequest, peer: string, refusal: Refusal): RoamError {
  events?.warn(`peer request ${req.method} ${req.url.split('?')[0]} from ${peer} (${req.ip}) refused: ${refusal.message}`);
  events?.emit('peer.refused', { peer, from: req.ip, reason: refusal.reason });
  return new RoamError('FORBIDDEN', refusal.message, { peer, reason: refusal.reason });
}

/**
 * Attaches the caller's identity to every request of the peer app, from the
 * connection's client certificate, before routing reaches a body. `tls`
 * false: the config chose plaintext, and every request carries the identity
 * `undefined`. `tls` true: a request whose certificate names no node is
 * refused here (403), said and counted.
 */
export function registerPeerIdentity(app: FastifyInstance, tls: boolean, events?: EventBus): void {
  app.addHook('onRequest', async (req) => {
    if (!tls) {
      identities.set(req, { identity: undefined });
      return;
    }
    const socket = req.raw.socket as TLSSocket;
    const found: PeerIdentity | Refusal = socket.authorized === true && typeof socket.getPeerCertificate === 'function'
      ? identityOfCertificate(socket.getPeerCertificate())
      : { reason: 'no-identity', message: 'its connection carries no certificate the cluster CA signed' };
    if ('reason' in found) throw refusePeer(events, req, req.ip, found);
    identities.set(req, { identity: found });
  });
}
