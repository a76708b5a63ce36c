// The spans of a call: the server span around the whole request, internal spans around authenticate, authorize,
// rate limit and the audit attempt, and a client span per SnapLogic request. Mounted only when tracing is on.
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions';
import type { Context, MiddlewareHandler } from 'hono';
import type { AuditRecorder } from '../audit/recorder.js';
import { GatewayError, kindOf, type ErrorCode } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { requestHeader } from '../http/incoming.js';
import { opsPaths } from '../http/request-context.js';
import type { Forwarder } from '../upstream/forwarder.js';
import type { Tracing } from './tracing.js';

/** The only request headers tracing reads: the caller's W3C Trace Context. */
const callerTraceContext: TextMapGetter<Context<AppEnv>> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (c, key) => requestHeader(c, key),
};

/** Where the client span's context goes: the headers of the request to SnapLogic. */
const upstreamHeaders: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT']);

/** The method as semantic conventions want it: a caller's invented method is `_OTHER`, never echoed. */
const methodOf = (method: string): string => (knownMethods.has(method) ? method : '_OTHER');

/** The stable code of an error that ended a step: a GatewayError's, or `internal_error` for anything else. */
const codeOf = (err: unknown): ErrorCode => (err instanceof GatewayError ? err.code : 'internal_error');

/** Marks `span` failed with the error's stable code only (never its message: it may quote what a caller sent). */
function fail(span: Span, code: string): void {
  span.setAttribute(ATTR_ERROR_TYPE, code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/**
 * The server span of each call (health checks have none): continues the caller's `traceparent`/`tracestate` (a
 * malformed one starts a new trace) and is the active span while the call runs, so log lines and audit events
 * carry its trace id. Named by the route template (`POST /api/1/rest/public/runtime/start/{org}/{ruuid}`), never
 * the raw path; attributes are the method, template, status, org, action, request id and decision. No header,
 * token, credential, query or body is recorded. A call that ends in an error (a refusal too) has status ERROR and
 * `error.type` set to its code.
 */
export function traceRequests(tracing: Tracing): MiddlewareHandler<AppEnv> {
  const { tracer, propagator } = tracing;
  return async function traceRequestMiddleware(c, next) {
    if (opsPaths.has(c.req.path)) return next();
    const parent = propagator.extract(ROOT_CONTEXT, c, callerTraceContext);
    const method = methodOf(c.req.method);
    const span = tracer.startSpan(
      method,
      { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: method } },
      parent,
    );
    try {
      await context.with(trace.setSpan(parent, span), next);
      endServerSpan(c, span, method);
    } catch (err) {
      // Errors are rendered where they are thrown; one that escaped onError still ends its span.
      fail(span, codeOf(err));
      throw err;
    } finally {
      span.end();
    }
  };
}

function endServerSpan(c: Context<AppEnv>, span: Span, method: string): void {
  const matched = c.get('runtimeCall');
  const target = c.get('target') ?? c.get('route');
  const attributes: Attributes = { [ATTR_HTTP_RESPONSE_STATUS_CODE]: c.res.status };
  if (matched !== undefined) {
    span.updateName(`${method} ${matched.call.pattern}`);
    attributes[ATTR_HTTP_ROUTE] = matched.call.pattern;
    attributes[ATTR_URL_PATH] = matched.call.pattern;
  }
  // The org once the path validated it (a refused org name is not recorded), and the action once known.
  if (c.get('target') !== undefined) attributes['snaplogic.org'] = c.get('target')!.org;
  if (target?.action !== undefined) attributes['snaplogic.action'] = target.action;
  const requestId = c.get('requestId');
  if (requestId !== undefined) attributes['snapgate.request_id'] = requestId;
  const code = c.error === undefined ? undefined : codeOf(c.error);
  attributes['snapgate.decision'] = code === undefined ? 'allowed' : kindOf(code);
  span.setAttributes(attributes);
  if (code !== undefined) fail(span, code);
  else if (c.res.status >= 500) fail(span, String(c.res.status));
}

/**
 * Wraps a middleware step in an INTERNAL span named `name`, a child of the server span. The span ends when the step
 * hands on (calls next) or throws; the steps after it run in the server span's context, not under this one. A step
 * that refuses the call (throws) marks its span ERROR with the error's code.
 */
export function tracedStep(
  tracing: Tracing,
  name: string,
  step: MiddlewareHandler<AppEnv>,
  annotate?: (c: Context<AppEnv>, span: Span) => void,
): MiddlewareHandler<AppEnv> {
  const { tracer } = tracing;
  return async function tracedStepMiddleware(c, next) {
    const parent = context.active();
    const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL }, parent);
    let ended = false;
    const end = (err?: unknown): void => {
      if (ended) return;
      ended = true;
      annotate?.(c, span);
      if (err !== undefined) fail(span, codeOf(err));
      span.end();
    };
    try {
      await context.with(trace.setSpan(parent, span), () =>
        step(c, () => {
          end();
          return context.with(parent, next);
        }),
      );
      end();
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

/** The rate limit span says what the limiter decided (allowed, limited, would_limit, unavailable). */
export function annotateRateLimit(c: Context<AppEnv>, span: Span): void {
  const outcome = c.get('call')?.rateLimit;
  if (outcome !== undefined) span.setAttribute('snapgate.rate_limit.outcome', outcome.outcome);
}

/** An audit recorder whose write-ahead attempts each run in an INTERNAL span `audit attempt`; the rest unchanged. */
export function tracedAudit(tracing: Tracing, audit: AuditRecorder): AuditRecorder {
  const { tracer } = tracing;
  return {
    attempt: (event) =>
      tracer.startActiveSpan('audit attempt', { kind: SpanKind.INTERNAL }, async (span) => {
        try {
          await audit.attempt(event);
        } catch (err) {
          fail(span, err instanceof Error ? err.name : 'Error');
          throw err;
        } finally {
          span.end();
        }
      }),
    outcome: (event) => audit.outcome(event),
    decision: (event, denialKey) => audit.decision(event, denialKey),
    close: (deadlineMs) => audit.close(deadlineMs),
  };
}

/**
 * A forwarder whose every SnapLogic request is a CLIENT span (`POST /api/1/rest/public/runtime/start/{org}/{ruuid}`
 * when the call names its template, else the method), child of the active span, with server.address/port, the
 * status SnapLogic answered, and `error.type` on a failure or a 4xx/5xx answer. The request carries this span's
 * `traceparent` (and the trace's `tracestate`) in place of whatever the caller sent.
 */
export function tracedForwarder(tracing: Tracing, forwarder: Forwarder): Forwarder {
  const { tracer, propagator } = tracing;
  return {
    async forward(req) {
      const method = req.method;
      const origin = new URL(req.origin);
      const attributes: Attributes = {
        [ATTR_HTTP_REQUEST_METHOD]: method,
        [ATTR_SERVER_ADDRESS]: origin.hostname,
        [ATTR_SERVER_PORT]: origin.port === '' ? (origin.protocol === 'https:' ? 443 : 80) : Number(origin.port),
      };
      if (req.route !== undefined) attributes['url.template'] = req.route;
      const parent = context.active();
      const span = tracer.startSpan(
        req.route === undefined ? method : `${method} ${req.route}`,
        { kind: SpanKind.CLIENT, attributes },
        parent,
      );
      const headers = { ...req.headers };
      delete headers.traceparent;
      delete headers.tracestate;
      propagator.inject(trace.setSpan(parent, span), headers, upstreamHeaders);
      try {
        const res = await forwarder.forward({ ...req, headers });
        span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, res.status);
        if (res.status >= 400) fail(span, String(res.status));
        return res;
      } catch (err) {
        fail(span, codeOf(err));
        throw err;
      } finally {
        span.end();
      }
    },
    close: () => forwarder.close(),
  };
}
