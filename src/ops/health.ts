// Liveness and readiness endpoints for orchestrators and load balancers.
import { Hono } from 'hono';
import type { AppEnv } from '../http/app-env.js';
import { respondJson } from '../http/respond.js';

export interface ReadinessReport {
  ready: boolean;
  /** One entry per dependency: "ok", or a short reason it is not. Never a secret. */
  checks: Record<string, string>;
}
export type ReadinessProbe = () => Promise<ReadinessReport>;

/**
 * GET /livez: the process serves HTTP. GET /readyz: config, credentials, keys and Redis are usable
 * and not draining. With `detailed` (the admin listener) the body names each check; on the callers'
 * port it carries the status only.
 */
export function healthRoutes(
  readiness: ReadinessProbe,
  options: { detailed: boolean } = { detailed: true },
): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.get('/livez', (c) => respondJson(c, 200, { status: 'ok' }));
  routes.get('/readyz', async (c) => {
    const report = await readiness();
    const status = report.ready ? 'ready' : 'not_ready';
    return respondJson(c, report.ready ? 200 : 503, options.detailed ? { status, checks: report.checks } : { status });
  });
  return routes;
}
