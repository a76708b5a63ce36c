// createApp(deps): middleware order and routes. No I/O of its own; everything it touches is passed in.
import { Hono } from 'hono';
import type { AuditRecorder } from './audit/recorder.js';
import type { TokenVerifier } from './auth/verifier.js';
import { authenticate } from './auth/authenticate.js';
import type { OrgConfig } from './config/schema.js';
import type { CredentialStore } from './credentials/store.js';
import { GatewayError } from './errors.js';
import type { AppEnv } from './http/app-env.js';
import { handleError } from './http/error-handler.js';
import { rawPathGuard } from './http/raw-path-guard.js';
import { drainGuard, requestContext } from './http/request-context.js';
import type { InFlightCalls } from './http/in-flight.js';
import type { Logger } from './log.js';
import { healthRoutes, type ReadinessProbe } from './ops/health.js';
import { authorize } from './policy/authorize.js';
import type { Policy } from './policy/policy.js';
import type { Forwarder } from './upstream/forwarder.js';
import type { Metrics } from './ops/metrics.js';
import { rateLimit } from './ratelimit/middleware.js';
import type { OrgLimits, RateLimiter } from './ratelimit/limits.js';
import { runtimeStartRoutes } from './upstream/runtime-routes.js';

export interface AppDeps {
  verifier: TokenVerifier;
  policy: Policy;
  credentials: CredentialStore;
  forwarder: Forwarder;
  orgs: Readonly<Record<string, OrgConfig>>;
  audit: AuditRecorder;
  log: Logger;
  /** Names this gateway instance in audit events. */
  instance: string;
  /** Largest request body forwarded, in bytes. */
  maxBodyBytes: number;
  /** ms allowed for receiving a request body. */
  bodyTimeoutMs: number;
  /** The calls in flight, for shutdown. */
  inFlight: InFlightCalls;
  readiness: ReadinessProbe;
  /** True once shutdown has begun: readiness fails and responses close their connection. */
  isDraining: () => boolean;
  limiter: RateLimiter;
  /** Compiled rate limits per org; orgs without an entry are not limited. */
  limits: ReadonlyMap<string, OrgLimits>;
  metrics: Metrics;
}

/** Builds the Hono app: request context → path guard → routes (authenticate → authorize → forward). */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.onError(handleError(deps.log));
  app.use(
    '*',
    requestContext({
      audit: deps.audit,
      instance: deps.instance,
      isDraining: deps.isDraining,
      metrics: deps.metrics,
      inFlight: deps.inFlight,
    }),
  );
  app.use('*', drainGuard(deps.isDraining));
  app.use('*', rawPathGuard());

  // The callers' port says ready or not; which check fails is for the admin listener.
  app.route('/', healthRoutes(deps.readiness, { detailed: false }));
  app.route(
    '/',
    runtimeStartRoutes({
      authenticate: authenticate(deps.verifier),
      authorize: authorize(deps.policy, (org) => Object.hasOwn(deps.orgs, org)),
      rateLimit: rateLimit({ limiter: deps.limiter, limitsFor: (org) => deps.limits.get(org), metrics: deps.metrics }),
      audit: deps.audit,
      credentials: deps.credentials,
      forwarder: deps.forwarder,
      orgs: deps.orgs,
      log: deps.log,
      maxBodyBytes: deps.maxBodyBytes,
      bodyTimeoutMs: deps.bodyTimeoutMs,
    }),
  );

  app.all('*', () => {
    // The caller's path is not echoed back.
    throw new GatewayError(
      'not_found',
      'snapgate serves POST /api/1/rest/public/runtime/start/{org}/{ruuid}; this request is not for a route it serves.',
    );
  });
  return app;
}
