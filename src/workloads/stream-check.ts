/**
 * Streams a deterministic byte sequence to an echo server over one
 * connection and verifies every byte that comes back, in order. Prints a JSON
 * progress line every 250 ms: {"sent","verified","maxGapMs"} where maxGapMs
 * is the longest time without any echoed byte while data was outstanding.
 * Exit 2 on a wrong byte, 3 when the connection is lost.
 * Usage: node stream-check.js HOST PORT [--rate BYTES_PER_SEC]
 */
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { rate: { type: 'string', default: '200000' } }, allowPositionals: true });
const [host, port] = positionals;
if (!host || !port) {
  console.error('usage: stream-check HOST PORT [--rate BYTES_PER_SEC]');
  process.exit(2);
}

/** Byte i of the stream: cheap, position-dependent, so loss, duplication and reordering all show. */
function byteAt(i: number): number {
  return (i * 2654435761 + (i >>> 8) * 40503) & 0xff;
}

const rate = Number(values.rate);
const tickMs = 10;
let sent = 0;
let verified = 0;
let lastReceive = performance.now();
let maxGapMs = 0;
const socket = connect({ host, port: Number(port) });
socket.setNoDelay(true);
socket.on('connect', () => {
  console.log(JSON.stringify({ connected: `${socket.localAddress}:${socket.localPort}` }));
  lastReceive = performance.now();
  setInterval(() => {
    const n = Math.max(1, Math.round((rate * tickMs) / 1000));
    const buf = Buffer.alloc(n);
    for (let k = 0; k < n; k++) buf[k] = byteAt(sent + k);
    sent += n;
    socket.write(buf);
  }, tickMs);
  setInterval(() => {
    if (verified < sent) maxGapMs = Math.max(maxGapMs, performance.now() - lastReceive);
    console.log(JSON.stringify({ sent, verified, maxGapMs: Math.round(maxGapMs * 10) / 10 }));
  }, 250);
});
socket.on('data', (chunk: Buffer) => {
  const now = performance.now();
  maxGapMs = Math.max(maxGapMs, now - lastReceive);
  lastReceive = now;
  for (let k = 0; k < chunk.length; k++) {
    if (chunk[k] !== byteAt(verified + k)) {
      console.log(`MISMATCH at offset ${verified + k}`);
      process.exit(2);
    }
  }
  verified += chunk.length;
});
socket.on('error', (err) => {
  console.log(`DISCONNECTED ${err.message}`);
  process.exit(3);
});
socket.on('close', () => {
  console.log('DISCONNECTED closed');
  process.exit(3);
});
