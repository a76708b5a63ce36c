// Per-request context: request id, timing, the call's place in flight, and the audit outcome or decision written
// once the response is decided.
import type { Context, MiddlewareHandler } from 'hono';
import type { AuditRecorder } from '../audit/recorder.js';
import { requestEvent, type RequestOutcome } from '../audit/request-event.js';
import type { AuditEventType, Decision } from '../audit/event.js';
import { GatewayError, kindOf, type ErrorCode } from '../errors.js';
import { seriesOf, type Metrics } from '../ops/metrics.js';
import type { AppEnv } from './app-env.js';
import { factsOf } from './call.js';
import { callSignal, outgoingOf, requestHeader, type CallSignal } from './incoming.js';
import type { InFlightCalls } from './in-flight.js';
import type { Logger } from '../log.js';
import { requestIdOf } from './request-id.js';
import { carryRequestHeaders } from './respond.js';
import { isReadAction } from '../snaplogic/runtime-api.js';

export const opsPaths: ReadonlySet<string> = new Set(['/livez', '/readyz']);

export interface RequestContextDeps {
  audit: AuditRecorder;
  instance: string;
  isDraining: () => boolean;
  metrics: Metrics;
  inFlight: InFlightCalls;
  /** Which reads leave events: all (like writes), denied (refusals only) or none. */
  auditReads: 'all' | 'denied' | 'none';
  /** Where a line per call goes at log.level debug (nothing is built for it at other levels). */
  log?: Logger;
  /** The configured orgs: the org label of the metrics is one of them, or `_other` (no org name starts with `_`, so it never merges with one). */
  orgs: ReadonlySet<string> | ReadonlyMap<string, unknown>;
}

/** The org label of a call not aimed at a configured org (none in the path, or an unknown one): bounded. */
export const OTHER_ORG = '_other';

/**
 * Sets the request id and the empty per-request variables, then, after the response is decided
 * (errors are already rendered by onError and visible as `c.error`), writes the outcome of a
 * forwarded call (its attempt was written before forwarding) or the decision on one that was not.
 * Health checks are not audited.
 */
export function requestContext(deps: RequestContextDeps): MiddlewareHandler<AppEnv> {
  const record = recorder(deps);
  return async function requestContextMiddleware(c, next) {
    const started = performance.now();
    const requestId = requestIdOf(requestHeader(c, 'x-request-id'));
    c.set('requestId', requestId);
    c.set('call', {});
    c.set('responseHeaders', { 'x-request-id': requestId });
    c.set('draining', deps.isDraining);
    if (opsPaths.has(c.req.path)) {
      await next();
      carryRequestHeaders(c);
      return;
    }
    // Watched from the first byte: a caller gone before forwarding starts is never forwarded.
    const signal = callSignal(c);
    c.set('signal', signal);
    const leave = deps.inFlight.enter(signal);
    try {
      await next();
      carryRequestHeaders(c);
      record(c, started);
    } finally {
      leaveOnceSent(c, signal, leave);
    }
  };
}

/**
 * A call is in flight until its outcome is recorded and its response has left (shutdown closes the
 * connections only after that). A pipelined response whose socket died before its turn never
 * closes: the signal (aborted when the socket goes) ends it too.
 */
function leaveOnceSent(c: Context<AppEnv>, signal: CallSignal, leave: () => void): void {
  const outgoing = outgoingOf(c);
  const gone = (): boolean => signal.reason === 'caller';
  if (outgoing === undefined || outgoing.destroyed || outgoing.writableFinished || gone()) return leave();
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

/** Counts the request in the metrics and writes its outcome (forwarded) or decision (not forwarded). */
function recorder(deps: RequestContextDeps): (c: Context<AppEnv>, started: number) => void {
  const requests = seriesOf((decision, reason, org) => deps.metrics.requests.labels(decision, reason, org));
  const requestDuration = seriesOf((decision, org) => deps.metrics.requestDuration.labels(decision, org));
  const upstreamDuration = seriesOf((status, org) => deps.metrics.upstreamDuration.labels(status, org));
  // A caller picks the path: only configured names become label values, so the series stay bounded.
  const orgLabel = (org: string | undefined): string => (org !== undefined && deps.orgs.has(org) ? org : OTHER_ORG);
  const eventOf = (c: Context<AppEnv>, type: AuditEventType, outcome: RequestOutcome) =>
    requestEvent(factsOf(c, deps.instance), type, outcome);

  return function record(c, started) {
    const err = c.error;
    const code: ErrorCode | undefined =
      err === undefined ? undefined : err instanceof GatewayError ? err.code : 'internal_error';
    const decision: Decision = code === undefined ? 'allowed' : kindOf(code);
    const latencyMs = performance.now() - started;
    const call = c.get('call');
    const target = c.get('target') ?? c.get('route');
    const org = orgLabel(target?.org);
    requests(decision, code ?? 'none', org).inc();
    requestDuration(decision, org).observe(latencyMs / 1000);
    if (call.upstreamLatencyMs !== undefined) {
      upstreamDuration(String(call.upstreamStatus ?? 0), org).observe(call.upstreamLatencyMs / 1000);
    }
    const outcome = { decision, status: c.res.status, latencyMs, ...(code !== undefined ? { reason: code } : {}) };
    if (deps.log?.enabled('debug') === true) debugLine(deps.log, c, outcome, target, call);
    if (deps.auditReads !== 'all' && call.attemptId === undefined) {
      const action = target?.action;
      if (action !== undefined && isReadAction(action) && (deps.auditReads === 'none' || decision === 'allowed')) {
        return;
      }
    }
    if (call.attemptId !== undefined) {
      deps.audit.outcome(eventOf(c, 'outcome', outcome));
    } else {
      const event = eventOf(c, 'decision', outcome);
      deps.audit.decision(event, event.caller?.sub ?? `addr:${event.client.address ?? '?'}`);
    }
  };
}

/** One line per call at debug level: what was decided, never a header, token or body. */
function debugLine(
  log: Logger,
  c: Context<AppEnv>,
  outcome: { decision: Decision; status: number; latencyMs: number; reason?: ErrorCode },
  target: { action?: string; org?: string; ruuid?: string } | undefined,
  call: AppEnv['Variables']['call'],
): void {
  log.debug('call', {
    requestId: c.get('requestId'),
    method: c.req.method,
    ...(target?.action !== undefined ? { action: target.action } : {}),
    ...(target?.org !== undefined ? { org: target.org } : {}),
    ...(target?.ruuid !== undefined ? { ruuid: target.ruuid } : {}),
    ...(c.get('principal') !== undefined ? { caller: c.get('principal')!.sub } : {}),
    decision: outcome.decision,
    ...(outcome.reason !== undefined ? { reason: outcome.reason } : {}),
    status: outcome.status,
    latencyMs: Math.round(outcome.latencyMs * 10) / 10,
    ...(call.upstreamStatus !== undefined ? { upstreamStatus: call.upstreamStatus } : {}),
    ...(call.upstreamLatencyMs !== undefined ? { upstreamLatencyMs: Math.round(call.upstreamLatencyMs) } : {}),
  });
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
        { headers: { 'retry-after': '1' } },
      );
    }
    await next();
  };
}
