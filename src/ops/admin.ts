// The admin listener: Prometheus metrics and health, on a port of its own so callers cannot read org names from
// metrics.
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { listen } from '../http/listen.js';
import type { AppEnv } from '../http/app-env.js';
import { healthRoutes, type ReadinessProbe } from './health.js';

/** What /metrics serves: this process's registry, or (workers' primary) every worker's, aggregated. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** GET /metrics (Prometheus text), /livez, /readyz. */
export function adminApp(deps: { readiness: ReadinessProbe; metrics: MetricsSource }): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get('/metrics', async (c) => {
    try {
      return c.body(await deps.metrics.metrics(), 200, {
        'content-type': deps.metrics.contentType,
        'cache-control': 'no-store',
      });
    } catch (err) {
      // E.g. a worker that did not answer the primary in time (one restarting): say so, and let the next scrape retry.
      return c.text(`metrics unavailable: ${err instanceof Error ? err.message : 'error'}\n`, 503, {
        'cache-control': 'no-store',
      });
    }
  });
  app.route('/', healthRoutes(deps.readiness));
  return app;
}

/** Serves the admin app on its own listener; resolves once it listens, with the bound port. */
export async function startAdminServer(
  deps: Parameters<typeof adminApp>[0],
  at: { host: string; port: number },
): Promise<{ server: Server; port: number }> {
  const listener = getRequestListener(adminApp(deps).fetch);
  const server = createServer((req, res) => {
    void listener(req, res);
  });
  return { server, port: await listen(server, at.port, at.host) };
}
