// POST /api/1/rest/public/runtime/start/{org}/{ruuid}: validate, authenticate, authorize, swap credentials, forward once.
import { Hono, type MiddlewareHandler } from 'hono';
import type { Action, OrgConfig } from '../config/schema.js';
import type { CredentialStore } from '../credentials/store.js';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import type { Logger } from '../log.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { AuditUnavailableError } from '../audit/trail.js';
import { auditEventOf } from '../http/request-context.js';
import { CallAbortedError, requestHeaderEntries, unlessAborted } from '../http/incoming.js';
import { requestBody } from '../http/request-body.js';
import { carriesRequestHeaders, withRequestHeaders } from '../http/response-headers.js';
import { abandoned, type Forwarder } from './forwarder.js';
import { callerResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { isValidOrg, isValidRuuid } from '../snaplogic/names.js';

export const RUNTIME_START_PREFIX = '/api/1/rest/public/runtime/start';

export interface RuntimeRouteDeps {
  authenticate: MiddlewareHandler<AppEnv>;
  authorize: (action: Action) => MiddlewareHandler<AppEnv>;
  rateLimit: MiddlewareHandler<AppEnv>;
  audit: AuditRecorder;
  credentials: CredentialStore;
  forwarder: Forwarder;
  orgs: Readonly<Record<string, OrgConfig>>;
  log: Logger;
  maxBodyBytes: number;
  /** ms allowed for receiving a request body. */
  bodyTimeoutMs: number;
}

const nullBodyStatuses = new Set([204, 205, 304]);

/** Checks org and ruuid before anything else, and records them for the audit trail. */
function validateRuntimePath(action: Action): MiddlewareHandler<AppEnv> {
  return async function validateRuntimePathMiddleware(c, next) {
    const org = c.req.param('org') ?? '';
    const ruuid = c.req.param('ruuid') ?? '';
    const audit = c.get('audit');
    audit.action = action;
    if (!isValidOrg(org)) {
      throw new GatewayError(
        'invalid_path',
        'The org segment is not a valid SnapLogic org name (letters, digits, ".", "_", "-"; at most 100 characters). Org names are case-sensitive.',
      );
    }
    audit.org = org;
    if (!isValidRuuid(ruuid)) {
      throw new GatewayError(
        'invalid_path',
        'The ruuid segment is not a SnapLogic runtime id (<24 hex>_<uuid>, e.g. 52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5).',
      );
    }
    audit.ruuid = ruuid;
    await next();
  };
}

/** The runtime start route and the 400/405 answers around it. */
export function runtimeStartRoutes(deps: RuntimeRouteDeps): Hono<AppEnv> {
  const routes = new Hono<AppEnv>();
  const origins = new Map(Object.entries(deps.orgs).map(([org, cfg]) => [org, new URL(cfg.pod).origin]));

  routes.post(
    `${RUNTIME_START_PREFIX}/:org/:ruuid`,
    validateRuntimePath('runtime.start'),
    deps.authenticate,
    deps.authorize('runtime.start'),
    requestBody({
      maxBytes: deps.maxBodyBytes,
      timeoutMs: deps.bodyTimeoutMs,
      note: " SnapLogic's resume call takes no body.",
    }),
    deps.rateLimit,
    async function forwardRuntimeStart(c) {
      const audit = c.get('audit');
      const org = audit.org as string;
      const ruuid = audit.ruuid as string;
      const origin = origins.get(org);
      const credential = deps.credentials.get(org);
      if (origin === undefined || credential === undefined) {
        throw new Error(`org ${org} passed authorization without pod or credential`);
      }
      const signal = c.get('signal');
      // Gone while the limits were checked: no attempt, nothing forwarded (the quota is refunded).
      if (signal.aborted) throw abandoned(signal, false);

      // Write-ahead: the attempt is in the required audit sinks before anything reaches SnapLogic.
      const attempt = auditEventOf(c, 'attempt', { decision: 'allowed' });
      // Whatever happens next, this request ends with an outcome that refers to its attempt.
      audit.attemptId = attempt.id;
      try {
        // A caller gone (or a shutdown) while the attempt is being acknowledged stops waiting at
        // once; the attempt is still written, and the outcome says the call was abandoned.
        await unlessAborted(deps.audit.attempt(attempt), signal);
      } catch (err) {
        if (err instanceof CallAbortedError) throw abandoned(signal, false);
        if (!(err instanceof AuditUnavailableError)) throw err;
        // Not even queued (a sink's queue is full): no outcome can refer to it; a decision is written instead.
        if (!err.recorded) delete audit.attemptId;
        throw new GatewayError(
          'audit_unavailable',
          'The audit trail cannot record this call right now, so it was not forwarded. Retry shortly.',
          {
            cause: err,
            headers: { 'retry-after': '1' },
          },
        );
      }

      // Gone while the attempt was being acknowledged: the outcome says so; nothing forwarded.
      if (signal.aborted) throw abandoned(signal, false);

      const started = performance.now();
      const res = await deps.forwarder.forward({
        origin,
        path: `${RUNTIME_START_PREFIX}/${encodeURIComponent(org)}/${encodeURIComponent(ruuid)}`,
        method: 'POST',
        headers: upstreamRequestHeaders(requestHeaderEntries(c), {
          authorization: credential.authorization,
          requestId: c.get('requestId'),
        }),
        body: c.get('body'),
        timeouts: deps.orgs[org]?.timeouts ?? {},
        // A caller that hangs up aborts the call, which frees its concurrency lease at once.
        signal,
        onDispatch: () => c.set('forwarded', true),
      });
      audit.upstreamStatus = res.status;
      const sl = res.headers['x-sl-statuscode'];
      if (typeof sl === 'string' && /^\d{3}$/.test(sl)) audit.slStatusCode = sl;
      audit.upstreamLatencyMs = performance.now() - started;
      if (res.status === 401 || res.status === 403) {
        deps.log.warn('SnapLogic rejected the stored credentials; rotate the org secret', {
          requestId: c.get('requestId'),
          org,
          credentialVersion: credential.version,
          upstreamStatus: res.status,
        });
        throw new GatewayError(
          'upstream_credentials_rejected',
          "Your token was accepted, but SnapLogic rejected the credentials snapgate holds for this org. Nothing was resumed. The platform team must rotate the org's SnapLogic secret; quote the X-Request-Id.",
          { extensions: { upstreamStatus: res.status } },
        );
      }
      return carriesRequestHeaders(
        c,
        new Response(nullBodyStatuses.has(res.status) ? null : res.body, {
          status: res.status,
          headers: withRequestHeaders(c, callerResponseHeaders(res.headers)),
        }),
      );
    },
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
