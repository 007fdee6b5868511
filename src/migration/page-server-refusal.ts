import type { EventBus } from '../events/bus.js';
import type { PageServerRefusal } from '../sys/criu/rpc.js';

/** Says and counts a page server's refusal as any other failed peer handshake (roam_peer_tls_refusals_total). */
export function reportPageServerRefusal(events: EventBus, what: string, r: PageServerRefusal): void {
  events.warn(`${what} refused a connection from ${r.from} at the TLS handshake (${r.reason}); that migration cannot go on`);
  events.emit('peer.tls-refused', { from: r.from, reason: `page server: ${r.reason}` });
}
