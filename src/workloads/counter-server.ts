/**
 * A small stateful TCP service for the demo and tests: one counter in
 * memory, shared by all clients. Lines in: INCR or GET. Lines out: "count N".
 * Usage: node counter-server.js [--port 7000]
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '7000' } } });
let count = 0;
let clients = 0;

const server = createServer((socket) => {
  clients++;
  console.log(`client ${socket.remoteAddress}:${socket.remotePort} connected (${clients} open)`);
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === 'INCR') count++;
      else if (line !== 'GET') {
        socket.write(`error unknown command ${JSON.stringify(line)}\n`);
        continue;
      }
      socket.write(`count ${count}\n`);
    }
  });
  socket.on('close', () => {
    clients--;
    console.log(`client ${socket.remoteAddress}:${socket.remotePort} left (${clients} open)`);
  });
  socket.on('error', () => undefined);
});
server.listen(Number(values.port), () => console.log(`counter listening on :${values.port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
