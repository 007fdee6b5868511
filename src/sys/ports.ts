/** A free TCP port on an address, for servers started by other programs (CRIU's lazy page server). */
import { createServer } from 'node:net';

/** Asks the kernel for a port that is free on `address` right now (another program binds it next). */
export async function freePort(address: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
