// Test servers on 127.0.0.1 (or a host the dev commands are given): listen on a given or free port, and close together
// with the connections still open.
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Listening {
  port: number;
  /** Destroys every open connection (a hung request included), then closes the server. */
  close(): Promise<void>;
}

/**
 * Starts `server` listening on 127.0.0.1:`port` (0: a free port). `host` moves it off loopback, for the dev commands
 * run in containers (test/dev/); tests leave it alone.
 */
export async function listenOnLoopback(server: Server, port = 0, host = '127.0.0.1'): Promise<Listening> {
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // A port in use rejects (EADDRINUSE) rather than crashing the process with an unhandled 'error'.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
