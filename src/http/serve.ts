// Serves a fetch handler over node:http with the server's deadlines, the parser's refusals as problem+json, and a
// close that never cuts an answer (the calls are drained first, see in-flight.ts).
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { answerClientError } from './client-error.js';
import { listen } from './listen.js';
import { problemResponse } from './problem.js';

export interface Serving {
  readonly server: Server;
  /** The bound port (0 in config picks a free one). */
  readonly port: number;
  /** Stops listening and closes every connection; call once the calls in flight are drained. */
  close(): Promise<void>;
}

type ServerSettings = Pick<
  Config['server'],
  'host' | 'port' | 'requestTimeout' | 'headersTimeout' | 'keepAliveTimeout'
>;

/** Closes `server` and every connection it holds, idle or not. */
export function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}

/** Listens on `settings.host:port`; resolves once it does. */
export async function serve(
  fetch: (request: Request, env: unknown) => Response | Promise<Response>,
  settings: ServerSettings,
  log: Logger,
): Promise<Serving> {
  const listener = getRequestListener(fetch, {
    // Requests node-server cannot even turn into a Request (bad Host, backslash in the path).
    errorHandler: () => problemResponse('invalid_path', 'The request target or Host header is malformed.'),
  });
  const server = createServer(
    {
      requestTimeout: settings.requestTimeout,
      headersTimeout: Math.min(settings.headersTimeout, settings.requestTimeout),
      keepAliveTimeout: settings.keepAliveTimeout,
      // Node checks the header and request deadlines on this interval (30 s by default).
      connectionsCheckingInterval: 1_000,
      // A request without Host reaches node-server, which answers it as problem+json (not Node's bare 400).
      requireHostHeader: false,
    },
    (req, res) => void listener(req, res),
  );
  server.on('clientError', answerClientError(log));
  // An Expect other than 100-continue: answered by the app like any request, never Node's bare 417.
  server.on('checkExpectation', (req, res) => void listener(req, res));
  const port = await listen(server, settings.port, settings.host);
  return { server, port, close: () => closeServer(server) };
}
