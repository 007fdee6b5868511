/**
 * Streams a deterministic byte sequence to an echo server over N
 * connections and verifies every byte that comes back, in order, on each.
 * Since the server echoes what it received, a byte lost, duplicated or
 * reordered in either direction shows. Prints a JSON progress line every
 * 250 ms: {"sent","verified","maxGapMs","open"}, where maxGapMs is the
 * longest time any connection went without an echoed byte while it had data
 * outstanding. Exit 2 on a wrong byte, 3 when a connection is lost.
 * With --burst-ms N it sends only in every other N ms of the wall clock
 * (--phase 0: the even ones, 1: the odd ones), so that two clients with
 * opposite phases take turns: the alternating traffic the policies must
 * not take for a move.
 * Usage: node stream-check.js HOST PORT [--rate BYTES_PER_SEC_PER_CONNECTION] [--connections N] [--burst-ms N --phase 0|1]
 */
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  options: {
    rate: { type: 'string', default: '200000' }, connections: { type: 'string', default: '1' },
    'burst-ms': { type: 'string', default: '0' }, phase: { type: 'string', default: '0' },
  },
  allowPositionals: true,
});
const [host, port] = positionals;
if (!host || !port) {
  console.error('usage: stream-check HOST PORT [--rate BYTES_PER_SEC] [--connections N]');
  process.exit(2);
}

/** Byte i of connection c's stream: position-dependent, so loss, duplication and reordering all show. */
function byteAt(c: number, i: number): number {
  return (i * 2654435761 + (i >>> 8) * 40503 + c * 97) & 0xff;
}

interface Stream {
  socket: Socket;
  sent: number;
  verified: number;
  lastReceive: number;
  connected: boolean;
}

const rate = Number(values.rate);
const count = Number(values.connections);
const tickMs = 10;
const burstMs = Number(values['burst-ms']);
const phase = Number(values.phase);
/** Whether this is one of this client's turns (always, without --burst-ms). */
const myTurn = () => burstMs <= 0 || Math.floor(Date.now() / burstMs) % 2 === phase;
let maxGapMs = 0;
const streams: Stream[] = [];
let open = 0;

for (let c = 0; c < count; c++) {
  const socket = connect({ host, port: Number(port) });
  socket.setNoDelay(true);
  const s: Stream = { socket, sent: 0, verified: 0, lastReceive: performance.now(), connected: false };
  streams.push(s);
  socket.on('connect', () => {
    s.connected = true;
    s.lastReceive = performance.now();
    if (++open === count) console.log(JSON.stringify({ connected: count }));
  });
  socket.on('data', (chunk: Buffer) => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - s.lastReceive);
    s.lastReceive = now;
    for (let k = 0; k < chunk.length; k++) {
      if (chunk[k] !== byteAt(c, s.verified + k)) {
        console.log(`MISMATCH on connection ${c} at offset ${s.verified + k}`);
        process.exit(2);
      }
    }
    s.verified += chunk.length;
  });
  socket.on('error', (err) => {
    console.log(`DISCONNECTED connection ${c}: ${err.message}`);
    process.exit(3);
  });
  socket.on('close', () => {
    console.log(`DISCONNECTED connection ${c}: closed`);
    process.exit(3);
  });
}

setInterval(() => {
  if (!myTurn()) return;
  const n = Math.max(1, Math.round((rate * tickMs) / 1000));
  for (const [c, s] of streams.entries()) {
    if (!s.connected) continue;
    const buf = Buffer.alloc(n);
    for (let k = 0; k < n; k++) buf[k] = byteAt(c, s.sent + k);
    s.sent += n;
    s.socket.write(buf);
  }
}, tickMs);

setInterval(() => {
  const now = performance.now();
  let sent = 0;
  let verified = 0;
  for (const s of streams) {
    sent += s.sent;
    verified += s.verified;
    if (s.verified < s.sent) maxGapMs = Math.max(maxGapMs, now - s.lastReceive);
  }
  console.log(JSON.stringify({ sent, verified, maxGapMs: Math.round(maxGapMs * 10) / 10, open }));
}, 250);
