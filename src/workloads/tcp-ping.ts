/**
 * One TCP round trip to an echo server: connect, send a line, expect it
 * back. Exit 0 on success, 1 otherwise (after at most --timeout-ms).
 * Usage: node tcp-ping.js HOST PORT [--timeout-ms 3000]
 */
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { 'timeout-ms': { type: 'string', default: '3000' } }, allowPositionals: true });
const [host, port] = positionals;
const token = `ping ${process.pid} ${Date.now()}\n`;
const timer = setTimeout(() => {
  console.log(`timeout after ${values['timeout-ms']} ms`);
  process.exit(1);
}, Number(values['timeout-ms']));
const socket = connect({ host: host ?? '', port: Number(port) });
let got = '';
socket.on('connect', () => socket.write(token));
socket.on('data', (d) => {
  got += d.toString();
  if (got === token) {
    clearTimeout(timer);
    console.log(`ok ${socket.localAddress} -> ${host}:${port}`);
    socket.end();
    process.exit(0);
  }
});
socket.on('error', (err) => {
  console.log(`error ${err.message}`);
  process.exit(1);
});
