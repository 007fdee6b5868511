/**
 * Echoes every byte back on every connection, from one process. With
 * --hold-mb it also keeps that much memory filled with data (a service with
 * state to carry), and prints its checksum on start and on SIGUSR2.
 * Usage: node echo-server.js [--port 7001] [--hold-mb 0]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '7001' }, 'hold-mb': { type: 'string', default: '0' } } });
const held: Buffer[] = [];
for (let i = 0; i < Number(values['hold-mb']); i++) held.push(randomFillSync(Buffer.allocUnsafe(1 << 20)));
let connections = 0;
const server = createServer((socket) => {
  connections++;
  socket.pipe(socket);
  socket.on('error', () => undefined);
  socket.on('close', () => connections--);
});
// Hashed chunk by chunk (the same digest as of their concatenation), so checking 1 GiB needs no second GiB.
const checksum = (): string => {
  if (held.length === 0) return 'none';
  const h = createHash('sha256');
  for (const chunk of held) h.update(chunk);
  return h.digest('hex').slice(0, 16);
};
server.listen(Number(values.port), () => console.log(`echo listening on :${values.port}, holding ${held.length} MiB (sha256 ${checksum()})`));
process.on('SIGUSR2', () => console.log(`memory sha256 ${checksum()}, ${connections} connections`));
setInterval(() => undefined, 1 << 30);
