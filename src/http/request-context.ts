// Per-request context: request id, timing, and the audit event written after the response is decided.
import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { buildAuditEvent, type AuditSink } from '../audit/event.js';
import { GatewayError, kindOf, type ErrorCode } from '../errors.js';
import { acceptableRequestId } from '../upstream/headers.js';
import type { AppEnv } from './app-env.js';
import type { Metrics } from '../ops/metrics.js';

export const opsPaths: ReadonlySet<string> = new Set(['/livez', '/readyz']);

/**
 * Sets `requestId` and an empty audit record, then, after the response is decided (errors are
 * already rendered by onError and visible as `c.error`), writes one audit event and echoes
 * X-Request-Id. Health checks are not audited.
 */
export function requestContext(deps: {
  audit: AuditSink;
  instance: string;
  isDraining: () => boolean;
  metrics: Metrics;
}): MiddlewareHandler<AppEnv> {
  return async function requestContextMiddleware(c, next) {
    const started = performance.now();
    const requestId = acceptableRequestId(c.req.header('x-request-id')) ?? randomUUID();
    c.set('requestId', requestId);
    c.set('audit', {});

    await next();

    c.res.headers.set('x-request-id', requestId);
    if (deps.isDraining()) c.res.headers.set('connection', 'close');
    if (opsPaths.has(c.req.path)) return;

    const err = c.error;
    const code: ErrorCode | undefined = err === undefined ? undefined : err instanceof GatewayError ? err.code : 'internal_error';
    const principal = c.get('principal');
    const decision = code === undefined ? 'allowed' : kindOf(code);
    const latencyMs = performance.now() - started;
    deps.metrics.requests.inc({ decision, reason: code ?? 'none' });
    deps.metrics.requestDuration.observe({ decision }, latencyMs / 1000);
    const fields = c.get('audit');
    if (fields.upstreamLatencyMs !== undefined) {
      deps.metrics.upstreamDuration.observe({ status: String(fields.upstreamStatus ?? 0) }, fields.upstreamLatencyMs / 1000);
    }
    deps.audit.write(
      buildAuditEvent({
        time: new Date(),
        requestId,
        instance: deps.instance,
        caller: principal,
        fields,
        decision,
        reason: code,
        status: c.res.status,
        latencyMs,
      }),
    );
  };
}

/**
 * While draining, calls already in flight finish, health checks answer (readiness says 503), and
 * new work is refused with 503 so the caller retries on another instance. Nothing was forwarded.
 */
export function drainGuard(isDraining: () => boolean): MiddlewareHandler<AppEnv> {
  return async function drainGuardMiddleware(c, next) {
    if (isDraining() && !opsPaths.has(c.req.path)) {
      throw new GatewayError('shutting_down', 'This snapgate instance is shutting down and took no action. Retry; another instance will serve the call.', {
        headers: { 'retry-after': '1' },
      });
    }
    await next();
  };
}
