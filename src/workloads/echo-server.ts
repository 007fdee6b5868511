/**
 * Echoes every byte back on every connection. Usage: node echo-server.js [--port 7001]
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '7001' } } });
const server = createServer((socket) => {
  socket.pipe(socket);
  socket.on('error', () => undefined);
});
server.listen(Number(values.port), () => console.log(`echo listening on :${values.port}`));
