// The admin listener: Prometheus metrics and health, on a port of its own so callers cannot read org names from metrics.
import { Hono } from 'hono';
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
      return c.body(await deps.metrics.metrics(), 200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' });
    } catch (err) {
      // E.g. a worker that did not answer the primary in time (one restarting): say so, and let the next scrape retry.
      return c.text(`metrics unavailable: ${err instanceof Error ? err.message : 'error'}\n`, 503, { 'cache-control': 'no-store' });
    }
  });
  app.route('/', healthRoutes(deps.readiness));
  return app;
}
