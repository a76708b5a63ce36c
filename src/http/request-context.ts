// Per-request context: request id, timing, client facts, and the audit outcome or decision written after the response is decided.
import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler } from 'hono';
import { buildAuditEvent, type AuditEvent, type AuditEventType, type Decision } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { GatewayError, kindOf, type ErrorCode } from '../errors.js';
import { seriesOf, type Metrics } from '../ops/metrics.js';
import { requestIdOf } from './request-id.js';
import type { AppEnv } from './app-env.js';
import { callSignal, outgoingOf, requestHeader } from './incoming.js';
import type { InFlightCalls } from './in-flight.js';
import { ensureRequestHeaders } from './response-headers.js';

export const opsPaths: ReadonlySet<string> = new Set(['/livez', '/readyz']);

/** Builds an audit event of this request from what the context has established so far. */
export function auditEventOf(
  c: Context<AppEnv>,
  type: AuditEventType,
  outcome: { decision: Decision; reason?: string; status?: number; latencyMs?: number },
): AuditEvent {
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
  return buildAuditEvent({
    type,
    time: new Date(),
    requestId: c.get('requestId'),
    instance: c.get('instance'),
    caller: c.get('principal'),
    fields: c.get('audit'),
    decision: outcome.decision,
    reason: outcome.reason,
    status: outcome.status,
    latencyMs: outcome.latencyMs,
    client: { address: incoming?.socket?.remoteAddress, userAgent: requestHeader(c, 'user-agent') },
  });
}

/**
 * Sets `requestId` and an empty audit record, then, after the response is decided (errors are
 * already rendered by onError and visible as `c.error`), writes the outcome of a forwarded call
 * (its attempt was written before forwarding) or the decision on one that was not, and echoes
 * X-Request-Id. Health checks are not audited.
 */
export function requestContext(deps: {
  audit: AuditRecorder;
  instance: string;
  isDraining: () => boolean;
  metrics: Metrics;
  inFlight: InFlightCalls;
}): MiddlewareHandler<AppEnv> {
  const requests = seriesOf((decision, reason) => deps.metrics.requests.labels(decision, reason));
  const requestDuration = seriesOf((decision) => deps.metrics.requestDuration.labels(decision));
  const upstreamDuration = seriesOf((status) => deps.metrics.upstreamDuration.labels(status));

  return async function requestContextMiddleware(c, next) {
    const started = performance.now();
    const requestId = requestIdOf(requestHeader(c, 'x-request-id'));
    c.set('requestId', requestId);
    c.set('instance', deps.instance);
    c.set('audit', {});
    const responseHeaders: Record<string, string> = { 'x-request-id': requestId };
    if (deps.isDraining()) responseHeaders.connection = 'close';
    c.set('responseHeaders', responseHeaders);
    if (opsPaths.has(c.req.path)) {
      await next();
      ensureRequestHeaders(c);
      return;
    }
    // Watched from the first byte: a caller gone before forwarding starts is never forwarded.
    const signal = callSignal(c);
    c.set('signal', signal);
    const leave = deps.inFlight.enter(signal);
    try {
      await next();
      ensureRequestHeaders(c);
      if (deps.isDraining() && responseHeaders.connection === undefined) c.res.headers.set('connection', 'close');
      record(c, started);
    } finally {
      // In flight until its outcome is recorded and its response has left (shutdown closes the
      // connections only after that).
      // A pipelined response whose socket died before its turn never closes: the signal (aborted
      // when the socket goes) ends it too.
      const outgoing = outgoingOf(c);
      const gone = (): boolean => signal.reason === 'caller';
      if (outgoing === undefined || outgoing.destroyed || outgoing.writableFinished || gone()) leave();
      else {
        let left = false;
        const done = (): void => {
          // A shutdown abort does not end it: its answer is still to be written.
          if (left || (!outgoing.destroyed && !outgoing.writableFinished && !gone())) return;
          left = true;
          signal.off('abort', done);
          leave();
        };
        outgoing.once('close', done);
        signal.on('abort', done);
      }
    }
  };

  function record(c: Context<AppEnv>, started: number): void {
    const err = c.error;
    const code: ErrorCode | undefined =
      err === undefined ? undefined : err instanceof GatewayError ? err.code : 'internal_error';
    const decision: Decision = code === undefined ? 'allowed' : kindOf(code);
    const latencyMs = performance.now() - started;
    const fields = c.get('audit');
    requests(decision, code ?? 'none').inc();
    requestDuration(decision).observe(latencyMs / 1000);
    if (fields.upstreamLatencyMs !== undefined) {
      upstreamDuration(String(fields.upstreamStatus ?? 0)).observe(fields.upstreamLatencyMs / 1000);
    }
    const outcome = { decision, status: c.res.status, latencyMs, ...(code !== undefined ? { reason: code } : {}) };
    if (fields.attemptId !== undefined) {
      deps.audit.outcome(auditEventOf(c, 'outcome', outcome));
    } else {
      const event = auditEventOf(c, 'decision', outcome);
      deps.audit.decision(event, event.caller?.sub ?? `addr:${event.client.address ?? '?'}`);
    }
  }
}

/**
 * While draining, calls already in flight finish, health checks answer (readiness says 503), and
 * new work is refused with 503 so the caller retries on another instance. Nothing was forwarded.
 */
export function drainGuard(isDraining: () => boolean): MiddlewareHandler<AppEnv> {
  return async function drainGuardMiddleware(c, next) {
    if (isDraining() && !opsPaths.has(c.req.path)) {
      throw new GatewayError(
        'shutting_down',
        'This snapgate instance is shutting down and took no action. Retry; another instance will serve the call.',
        {
          headers: { 'retry-after': '1' },
        },
      );
    }
    await next();
  };
}
