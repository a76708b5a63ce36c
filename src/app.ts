// createApp(deps): middleware order and routes. No I/O of its own; everything it touches is passed in.
import { Hono, type MiddlewareHandler } from 'hono';
import type { AuditRecorder } from './audit/recorder.js';
import { authenticate } from './auth/authenticate.js';
import type { TokenVerifier } from './auth/verifier.js';
import type { CredentialStore } from './credentials/store.js';
import type { UpstreamAuth } from './credentials/upstream-auth.js';
import { GatewayError } from './errors.js';
import type { AppEnv } from './http/app-env.js';
import { jwksRoutes, type JwksServing } from './credentials/jwks-route.js';
import { handleError } from './http/error-handler.js';
import type { InFlightCalls } from './http/in-flight.js';
import { rawPathGuard } from './http/raw-path-guard.js';
import { drainGuard, requestContext } from './http/request-context.js';
import type { Logger } from './log.js';
import { healthRoutes, type ReadinessProbe } from './ops/health.js';
import type { Metrics } from './ops/metrics.js';
import { annotateRateLimit, tracedAudit, tracedForwarder, tracedStep, traceRequests } from './ops/request-tracing.js';
import type { Tracing } from './ops/tracing.js';
import { authorize } from './policy/authorize.js';
import type { Policy } from './policy/policy.js';
import type { OrgGroupLimits } from './ratelimit/build.js';
import { Headroom } from './ratelimit/headroom.js';
import { CallerKeys, type RateLimiter } from './ratelimit/limits.js';
import { rateLimit } from './ratelimit/middleware.js';
import { runGuard, type RunGuardDeps } from './runs/run-guard.js';
import type { Forwarder } from './upstream/forwarder.js';
import type { UpstreamOrg } from './upstream/orgs.js';
import { createRunStateReader } from './upstream/run-state.js';
import { runtimeRoutes } from './upstream/runtime-routes.js';

export interface AppDeps {
  verifier: TokenVerifier;
  policy: Policy;
  /** What upstreamAuth reads: Basic sets and signing keys, reloaded on SIGHUP and file change. */
  credentials: CredentialStore;
  /** The SnapLogic credential of each call (Basic sets or minted JWTs; see credentials/upstream-auth.ts). */
  upstreamAuth: UpstreamAuth;
  /** Counts and logs a retry with an org's next password after SnapLogic answered 401 to the current one. */
  onCredentialFallback: (org: string, identity: string) => void;
  /** The JWKS SnapLogic fetches, when it is served on the callers' listener (signing without jwks.port). */
  jwks?: JwksServing;
  forwarder: Forwarder;
  /** The orgs this gateway serves, with each one's pod and effective timeouts; any other org is refused. */
  orgs: ReadonlyMap<string, UpstreamOrg>;
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
  /** Compiled rate limits per org and group of calls; orgs without an entry are not limited. */
  limits: ReadonlyMap<string, OrgGroupLimits>;
  metrics: Metrics;
  /** The run lock and Idempotency-Key records of writes, and each org's settings for them. */
  runs: Omit<RunGuardDeps, 'readState'>;
  /** Which reads leave audit events (see audit.reads). */
  auditReads: 'all' | 'denied' | 'none';
  /** Set when OTEL_* asks for traces (ops/tracing.ts); without it the app has no tracing step at all. */
  tracing?: Tracing;
}

const NOT_FOUND =
  'snapgate serves the SnapLogic runtime API under /api/1/rest/public/runtime/ (start, stop, list, status, ' +
  'api-stats); this request is not for a route it serves.';

/** Builds the Hono app: request context → drain and path guards → routes (validate → authenticate → authorize → …). */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { audit, instance, isDraining, metrics, inFlight, tracing } = deps;
  // Decided once here: with tracing off, no span or context is made on the request path.
  const traced =
    tracing === undefined
      ? (_name: string, step: MiddlewareHandler<AppEnv>) => step
      : (name: string, step: MiddlewareHandler<AppEnv>, annotate?: Parameters<typeof tracedStep>[3]) =>
          tracedStep(tracing, name, step, annotate);
  const forwarder = tracing === undefined ? deps.forwarder : tracedForwarder(tracing, deps.forwarder);

  app.onError(handleError(deps.log));
  // Before the request context: a JWKS fetch is not a call (no audit event, no drain refusal, no request id).
  if (deps.jwks !== undefined) app.route('/', jwksRoutes(deps.jwks));
  // Outside the request context, so its outcome event and log lines carry the trace id.
  if (tracing !== undefined) app.use('*', traceRequests(tracing));
  app.use(
    '*',
    requestContext({
      audit,
      instance,
      isDraining,
      metrics,
      inFlight,
      auditReads: deps.auditReads,
      orgs: deps.orgs,
      log: deps.log,
    }),
  );
  app.use('*', drainGuard(isDraining));
  app.use('*', rawPathGuard());

  // The callers' port says ready or not; which check fails is for the admin listener.
  app.route('/', healthRoutes(deps.readiness, { detailed: false }));
  app.route(
    '/',
    runtimeRoutes({
      authenticate: traced('authenticate', authenticate(deps.verifier)),
      authorize: traced(
        'authorize',
        authorize(deps.policy, (org) => deps.orgs.has(org)),
      ),
      runGuard: runGuard({ ...deps.runs, readState: createRunStateReader({ ...deps, forwarder }) }),
      rateLimit: traced(
        'rate limit',
        rateLimit({
          limiter: deps.limiter,
          limitsFor: (org, group) => deps.limits.get(org)?.[group],
          metrics,
          callerKeys: new CallerKeys(),
          headroom: new Headroom(),
        }),
        annotateRateLimit,
      ),
      audit: tracing === undefined ? audit : tracedAudit(tracing, audit),
      instance,
      upstreamAuth: deps.upstreamAuth,
      onCredentialFallback: deps.onCredentialFallback,
      forwarder,
      orgs: deps.orgs,
      log: deps.log,
      maxBodyBytes: deps.maxBodyBytes,
      bodyTimeoutMs: deps.bodyTimeoutMs,
      auditReads: deps.auditReads,
    }),
  );

  // The caller's path is not echoed back.
  app.all('*', () => {
    throw new GatewayError('not_found', NOT_FOUND);
  });
  return app;
}
