import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Serves `handler` on an ephemeral port of 127.0.0.1, for tests that need a real socket. */
export async function listen(
  handler: http.RequestListener,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
