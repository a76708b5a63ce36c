// The last step of every runtime route: write the attempt ahead, swap the caller's token for the org's credential,
// send the call to the org's pod once, and answer with SnapLogic's response.
import type { Context, Handler } from 'hono';
import type { AuditRecorder } from '../audit/recorder.js';
import { requestEvent } from '../audit/request-event.js';
import { AuditUnavailableError } from '../audit/trail.js';
import { sendAuthorized, type UpstreamAuth, type UpstreamIdentity } from '../credentials/upstream-auth.js';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import { factsOf, signalOf } from '../http/call.js';
import { CallAbortedError, requestHeaderEntries, unlessAborted } from '../http/incoming.js';
import { respond } from '../http/respond.js';
import type { Logger } from '../log.js';
import { isReadAction, upstreamPath } from '../snaplogic/runtime-api.js';
import type { RateLimitOutcome } from '../audit/event.js';
import { abandoned, mayHaveBeenSent, type Forwarder, type UpstreamResponse } from './forwarder.js';
import { callerResponseHeaders, upstreamRequestHeaders } from './headers.js';
import type { UpstreamOrg } from './orgs.js';

export interface ForwardDeps {
  audit: AuditRecorder;
  /** The SnapLogic credential of each call (the org's, or the caller's mapped identity). */
  upstreamAuth: UpstreamAuth;
  /** Counts and logs a retry with the next password after a 401 (see sendAuthorized). */
  onCredentialFallback: (org: string, identity: string) => void;
  forwarder: Forwarder;
  orgs: ReadonlyMap<string, UpstreamOrg>;
  log: Logger;
  /** Names this gateway instance in audit events. */
  instance: string;
  /** Which reads write ahead an attempt (`all`) or leave at most a decision (`denied`, `none`). */
  auditReads: 'all' | 'denied' | 'none';
}

const nullBodyStatuses = new Set([204, 205, 304]);

/** The forwarding handler of a route whose target was validated, authorized and counted by earlier steps. */
export function forwardCall(deps: ForwardDeps): Handler<AppEnv> {
  return async function forwardToSnapLogic(c) {
    const target = c.get('target');
    const matched = c.get('runtimeCall');
    const org = target !== undefined ? deps.orgs.get(target.org) : undefined;
    if (target === undefined || matched === undefined || org === undefined) {
      throw new Error(`org ${target?.org ?? '?'} passed authorization without call or pod`);
    }
    const signal = signalOf(c);
    // Gone while the limits were checked: no attempt, nothing forwarded (the quota is refunded).
    if (signal.aborted) throw abandoned(signal, false);
    // Chosen before the attempt is written, so the attempt names the SnapLogic identity it will act as.
    const credential = await deps.upstreamAuth.forCall(target.org, c.get('principal'));
    c.get('call').upstreamIdentity = credential.identity;
    const admission = c.get('admission');
    if (deps.auditReads === 'all' || !isReadAction(target.action)) {
      // Sent beside checks still being decided (the limits, the run lock), when there are any: the call waits once
      // for all of them. A call they then refuse has its attempt, and its outcome says it was refused.
      const attempt = writeAttempt(c, deps, admission !== undefined);
      attempt.catch(() => undefined);
      // A refusal answers as soon as it is known; the attempt, already on its way, still gets its outcome.
      await admission?.passed();
      await attempt;
      // Gone while the attempt was being acknowledged: the outcome says so; nothing forwarded.
      if (signal.aborted) throw abandoned(signal, false);
    } else {
      await admission?.passed();
    }

    const { call, query } = matched;
    const callerHeaders = requestHeaderEntries(c);
    const send = (authorization: string) =>
      deps.forwarder.forward({
        origin: org.origin,
        path: query === '' ? upstreamPath(call, target) : `${upstreamPath(call, target)}?${query}`,
        method: call.method,
        headers: upstreamRequestHeaders(callerHeaders, { authorization, requestId: c.get('requestId') }),
        // SnapLogic's runtime calls take no body; a GET never carries one.
        body: call.method === 'POST' ? c.get('body') : undefined,
        timeouts: org.timeouts,
        // A caller that hangs up aborts the call, which frees its concurrency lease at once.
        signal,
        onDispatch: () => c.set('forwarded', true),
        kind: call.kind,
        route: call.pattern,
      });
    const started = performance.now();
    let res: UpstreamResponse;
    try {
      const sent = await sendAuthorized(credential, send, () => {
        // From here on the call acts as the next password: an outcome the retry never answers must say so.
        c.get('call').upstreamIdentity = { ...credential.identity, nextPassword: true };
        deps.log.warn('SnapLogic answered 401 to the current password; retrying once with the next one', {
          requestId: c.get('requestId'),
          org: target.org,
          identity: credential.identity.name,
        });
        deps.onCredentialFallback(target.org, credential.identity.name);
      });
      res = sent.answer;
      c.get('call').upstreamIdentity = sent.identity;
    } catch (err) {
      // The connection was never made: nothing reached SnapLogic (the quota is refunded, a key freed).
      if (!mayHaveBeenSent(err)) c.set('forwarded', false);
      throw err;
    }
    noteAnswer(c, res, performance.now() - started);
    if (res.status === 401 || res.status === 403) {
      throw credentialsRejected(c, deps.log, c.get('call').upstreamIdentity!, credential.version, res.status);
    }
    const body = nullBodyStatuses.has(res.status) ? null : res.body;
    const headers = callerResponseHeaders(res.headers);
    c.set('answer', { status: res.status, headers, body: body ?? new Uint8Array(0) });
    return respond(c, body, { status: res.status, headers });
  };
}

const PENDING_LIMITS: RateLimitOutcome = { outcome: 'pending', policies: [] };

/**
 * Write-ahead: the attempt is in the required audit sinks before anything reaches SnapLogic.
 * Whatever happens next, the request ends with an outcome that refers to it.
 */
async function writeAttempt(c: Context<AppEnv>, deps: ForwardDeps, checksPending: boolean): Promise<void> {
  const call = c.get('call');
  const signal = signalOf(c);
  const facts = factsOf(c, deps.instance);
  // Written beside a rate-limit check not yet answered: the attempt says so, and its outcome holds the decision.
  const pending = checksPending && call.rateLimit === undefined;
  const attempt = requestEvent(
    pending ? { ...facts, call: { ...call, rateLimit: PENDING_LIMITS } } : facts,
    'attempt',
    { decision: 'allowed' },
  );
  call.attemptId = attempt.id;
  try {
    // A caller gone (or a shutdown) while the attempt is being acknowledged stops waiting at
    // once; the attempt is still written, and the outcome says the call was abandoned.
    await unlessAborted(deps.audit.attempt(attempt), signal);
  } catch (err) {
    if (err instanceof CallAbortedError) throw abandoned(signal, false);
    if (!(err instanceof AuditUnavailableError)) throw err;
    // Not even queued (a sink's queue is full): no outcome can refer to it; a decision is written instead.
    if (!err.recorded) delete call.attemptId;
    throw new GatewayError(
      'audit_unavailable',
      'The audit trail cannot record this call right now, so it was not forwarded. Retry shortly.',
      { cause: err, headers: { 'retry-after': '1' } },
    );
  }
}

/** What SnapLogic answered, for the outcome event and the metrics. */
function noteAnswer(c: Context<AppEnv>, res: UpstreamResponse, latencyMs: number): void {
  const call = c.get('call');
  call.upstreamStatus = res.status;
  const sl = res.headers['x-sl-statuscode'];
  if (typeof sl === 'string' && /^\d{3}$/.test(sl)) call.slStatusCode = sl;
  call.upstreamLatencyMs = latencyMs;
}

function credentialsRejected(
  c: Context<AppEnv>,
  log: Logger,
  identity: UpstreamIdentity,
  version: number | undefined,
  status: number,
): GatewayError {
  const jwt = identity.type === 'jwt';
  log.warn(
    jwt
      ? "SnapLogic rejected snapgate's JWT; check the org's JWT issuer registration (issuer id, JWKS URL) and user"
      : 'SnapLogic rejected the stored credentials; rotate the org secret',
    {
      requestId: c.get('requestId'),
      org: c.get('target')?.org,
      identity: identity.name,
      ...(identity.user !== undefined ? { user: identity.user } : {}),
      credentialType: identity.type,
      ...(version !== undefined ? { credentialVersion: version } : {}),
      upstreamStatus: status,
    },
  );
  return new GatewayError(
    'upstream_credentials_rejected',
    jwt
      ? 'Your token was accepted, but SnapLogic rejected the JWT snapgate signed for this org, so it did nothing. ' +
          "The platform team must check the org's JWT issuer registration and SnapLogic user; quote the X-Request-Id."
      : 'Your token was accepted, but SnapLogic rejected the credentials snapgate holds for this org, so it did ' +
          "nothing. The platform team must rotate the org's SnapLogic secret; quote the X-Request-Id.",
    { extensions: { upstreamStatus: status } },
  );
}
