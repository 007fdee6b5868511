/**
 * The demo's client: one connection, never reconnects; sends INCR every
 * interval and prints each answer with its round-trip time. If the
 * connection is lost it says so and exits 1, so a reconnect cannot hide.
 * Usage: node counter-client.js HOST PORT [--interval-ms 250]
 */
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { 'interval-ms': { type: 'string', default: '250' } }, allowPositionals: true });
const [host, port] = positionals;
if (!host || !port) {
  console.error('usage: counter-client HOST PORT [--interval-ms N]');
  process.exit(2);
}
const socket = connect({ host, port: Number(port) });
const sentAt: number[] = [];
let pending = '';
let replies = 0;
socket.setEncoding('utf8');
socket.setNoDelay(true);
socket.on('connect', () => {
  console.log(`connected to ${host}:${port} from ${socket.localAddress}:${socket.localPort}`);
  setInterval(() => {
    sentAt.push(performance.now());
    socket.write('INCR\n');
  }, Number(values['interval-ms']));
});
socket.on('data', (chunk: string) => {
  pending += chunk;
  let nl: number;
  while ((nl = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    const rtt = performance.now() - (sentAt.shift() ?? performance.now());
    replies++;
    console.log(`reply ${replies}: ${line} (rtt ${rtt.toFixed(1)} ms)`);
  }
});
socket.on('error', (err) => {
  console.log(`connection lost: ${err.message}`);
  process.exit(1);
});
socket.on('close', () => {
  console.log('connection closed by server');
  process.exit(1);
});
