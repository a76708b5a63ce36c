// The SnapLogic runtime routes snapgate serves, from the call table (src/snaplogic/runtime-api.ts): each request's
// path and query are validated into a target, then authenticate → authorize → read the body → rate limits →
// (writes) the run guard → forward (forward-call.ts).
import { Hono, type MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { rawTarget } from '../http/raw-path-guard.js';
import { requestBody } from '../http/request-body.js';
import { errorCodeForPath, matchRuntimePath, RUNTIME_PREFIX, validateQuery } from '../snaplogic/runtime-api.js';
import { forwardCall, type ForwardDeps } from './forward-call.js';

export interface RuntimeRouteDeps extends ForwardDeps {
  authenticate: MiddlewareHandler<AppEnv>;
  authorize: MiddlewareHandler<AppEnv>;
  rateLimit: MiddlewareHandler<AppEnv>;
  /** Writes only: one resume or stop of a run at a time, and Idempotency-Key records (src/runs/run-guard.ts). */
  runGuard: MiddlewareHandler<AppEnv>;
  maxBodyBytes: number;
  /** ms allowed for receiving a request body. */
  bodyTimeoutMs: number;
}

/**
 * The routes' validation step, before anything else: matches the raw path (as the caller sent it) and the method to
 * a runtime call, checks its org, run and query, and sets `target` and `runtimeCall`. A request that does not
 * validate is refused (404, 405 with Allow, or 400 naming the bad segment or query parameter) and never forwarded;
 * its audit event names the call's action (and the org, once it is valid).
 */
export function runtimeTarget(): MiddlewareHandler<AppEnv> {
  return async function runtimeTargetMiddleware(c, next) {
    const raw = rawTarget(c.env, c.req.url);
    const q = raw.indexOf('?');
    const path = q === -1 ? raw : raw.slice(0, q);
    const match = matchRuntimePath(c.req.method, path);
    if (!match.ok) {
      if ('action' in match && match.action !== undefined) c.set('route', { action: match.action });
      if (match.reason === 'invalid_org') c.set('route', { action: match.call.action });
      if (match.reason === 'invalid_ruuid') c.set('route', { action: match.call.action, org: match.org });
      throw new GatewayError(
        errorCodeForPath(match.reason),
        match.detail,
        match.reason === 'method_not_allowed' ? { headers: { allow: match.allow.join(', ') } } : undefined,
      );
    }
    const { call, org, ruuid } = match;
    const target = ruuid === undefined ? { action: call.action, org } : { action: call.action, org, ruuid };
    c.set('route', target);
    const query = validateQuery(call, new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)), org);
    if (!query.ok) {
      throw new GatewayError('invalid_query', `Query parameter ${query.problem.parameter}: ${query.problem.detail}`, {
        extensions: { parameter: query.problem.parameter },
      });
    }
    c.set('target', target);
    c.set('runtimeCall', { call, query: query.query });
    await next();
  };
}

/** Every runtime call, and the 400/404/405 answers around them. */
export function runtimeRoutes(deps: RuntimeRouteDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  const chain = [
    runtimeTarget(),
    deps.authenticate,
    deps.authorize,
    requestBody({
      maxBytes: deps.maxBodyBytes,
      timeoutMs: deps.bodyTimeoutMs,
      note: ' SnapLogic runtime calls take no body.',
    }),
    // The limits first: a call over them costs no lock. A call the guard then refuses (run busy, a replay, a key
    // in use or reused) is never forwarded, so the limits give its quota back.
    deps.rateLimit,
    deps.runGuard,
  ] as const;
  const forward = forwardCall(deps);
  routes.all(RUNTIME_PREFIX, ...chain, forward);
  routes.all(`${RUNTIME_PREFIX}/*`, ...chain, forward);
  return routes;
}
