// The SnapLogic runtime routes snapgate serves: each validates its path into a target, then authenticate →
// authorize → read the body → rate limits → forward (forward-call.ts).
import { Hono, type MiddlewareHandler } from 'hono';
import type { Action } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { requestBody } from '../http/request-body.js';
import { INVALID_ORG_DETAIL, INVALID_RUUID_DETAIL, isValidOrg, isValidRuuid } from '../snaplogic/names.js';
import type { RequestTarget } from '../snaplogic/target.js';
import { forwardCall, type ForwardDeps } from './forward-call.js';

export const RUNTIME_START_PREFIX = '/api/1/rest/public/runtime/start';

export interface RuntimeRouteDeps extends ForwardDeps {
  authenticate: MiddlewareHandler<AppEnv>;
  authorize: MiddlewareHandler<AppEnv>;
  rateLimit: MiddlewareHandler<AppEnv>;
  maxBodyBytes: number;
  /** ms allowed for receiving a request body. */
  bodyTimeoutMs: number;
}

/**
 * The route's validation step, before anything else: checks the org and ruuid segments and, once
 * both are valid, sets the request's `target`. A path that does not validate is refused; its audit
 * event names the route's action (and the org, when only the ruuid is wrong).
 */
export function runTarget(action: Action): MiddlewareHandler<AppEnv> {
  return async function runTargetMiddleware(c, next) {
    const org = c.req.param('org') ?? '';
    const ruuid = c.req.param('ruuid') ?? '';
    c.set('route', { action });
    if (!isValidOrg(org)) throw new GatewayError('invalid_path', INVALID_ORG_DETAIL);
    c.set('route', { action, org });
    if (!isValidRuuid(ruuid)) throw new GatewayError('invalid_path', INVALID_RUUID_DETAIL);
    c.set('target', { action, org, ruuid });
    await next();
  };
}

/** SnapLogic's resume path for a target: the segments as validated, encoded again. */
function startPath(t: RequestTarget): string {
  if (t.ruuid === undefined) throw new Error('runtime.start targets a run');
  return `${RUNTIME_START_PREFIX}/${encodeURIComponent(t.org)}/${encodeURIComponent(t.ruuid)}`;
}

/** The runtime start route and the 400/405 answers around it. */
export function runtimeStartRoutes(deps: RuntimeRouteDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  routes.post(
    `${RUNTIME_START_PREFIX}/:org/:ruuid`,
    runTarget('runtime.start'),
    deps.authenticate,
    deps.authorize,
    requestBody({
      maxBytes: deps.maxBodyBytes,
      timeoutMs: deps.bodyTimeoutMs,
      note: " SnapLogic's resume call takes no body.",
    }),
    deps.rateLimit,
    forwardCall(deps, { method: 'POST', path: startPath }),
  );

  const otherwise = (c: { req: { method: string } }): never => {
    if (c.req.method !== 'POST') {
      throw new GatewayError('method_not_allowed', `${RUNTIME_START_PREFIX}/{org}/{ruuid} accepts POST only.`, {
        headers: { allow: 'POST' },
      });
    }
    throw new GatewayError(
      'invalid_path',
      `The path must be ${RUNTIME_START_PREFIX}/{org}/{ruuid}, with exactly those two segments.`,
    );
  };
  routes.all(`${RUNTIME_START_PREFIX}/*`, otherwise);
  routes.all(RUNTIME_START_PREFIX, otherwise);
  return routes;
}
