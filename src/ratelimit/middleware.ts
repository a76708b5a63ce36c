// The rate-limit middleware: after authorization, before forwarding; writes the RateLimit fields on every authorized
// response.
import { randomBytes } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { Admission } from '../http/admission.js';
import { GatewayError } from '../errors.js';
import type { CallFacts, RateLimitOutcome } from '../audit/event.js';
import { Headroom, type Buckets } from './headroom.js';
import type { AppEnv } from '../http/app-env.js';
import { seriesOf, type Metrics } from '../ops/metrics.js';
import { formatPolicyField, formatRateLimitField, retryAfterSeconds } from './headers.js';
import { addResponseHeaders } from '../http/respond.js';
import type { CallerKeys, LimitDecision, LimitGroup, OrgLimits, RateLimiter } from './limits.js';
import { isReadAction } from '../snaplogic/runtime-api.js';
import { LimiterUnavailableError } from './resilient-limiter.js';

/** The policy label of the metrics: the writes' names as they were, the reads' prefixed with `reads:`. */
function policyLabel(limits: OrgLimits, name: string): string {
  return limits.group === 'writes' ? name : `${limits.group}:${name}`;
}

function describeRate(limits: OrgLimits, name: string): string {
  const p = name === 'caller-rate' ? limits.perCaller : name === 'org-rate' ? limits.rate : undefined;
  if (name === 'org-concurrency') return `at most ${limits.concurrency?.limit ?? '?'} calls in flight at once`;
  if (p === undefined) return name;
  const window = p.windowMs % 60_000 === 0 ? `${p.windowMs / 60_000} min` : `${p.windowMs / 1000} s`;
  const burst = p.burst > 0 ? ` (+${p.burst} burst)` : '';
  return `${p.limit} per ${window}${burst}${name === 'caller-rate' ? ' for each caller' : ''}`;
}

/** What the decision means for the audit trail: allowed, would_limit (a shadow policy), or limited. */
function rateLimitOutcome(decision: LimitDecision): RateLimitOutcome {
  const refused = (shadow: boolean) =>
    decision.outcomes.filter((o) => !o.allowed && o.policy.shadow === shadow).map((o) => o.policy.name);
  const wouldLimit = refused(true);
  return {
    outcome: decision.allowed ? (wouldLimit.length > 0 ? 'would_limit' : 'allowed') : 'limited',
    policies: decision.allowed ? wouldLimit : refused(false),
    ...(decision.degraded !== undefined ? { degraded: decision.degraded } : {}),
  };
}

/** The RateLimit-Policy and RateLimit fields of a decision (and the degraded marker). */
function limitHeaders(limits: OrgLimits, decision: LimitDecision, caller: string): Record<string, string> {
  const headers: Record<string, string> = { 'ratelimit-policy': formatPolicyField(limits, caller) };
  const state = formatRateLimitField(limits, decision, caller);
  if (state !== undefined) headers.ratelimit = state;
  if (decision.degraded !== undefined) headers['x-snapgate-ratelimit-degraded'] = decision.degraded;
  return headers;
}

function quotaExceeded(limits: OrgLimits, decision: LimitDecision, headers: Record<string, string>): GatewayError {
  const violated = decision.outcomes.filter((o) => !o.allowed && !o.policy.shadow).map((o) => o.policy.name);
  const retryAfter = retryAfterSeconds(decision);
  return new GatewayError(
    'quota_exceeded',
    `This call would exceed ${limits.org}'s limit${limits.group === 'reads' ? ' for reads' : ''}: ` +
      `${violated.map((v) => `${v} (${describeRate(limits, v)})`).join(', ')}. Nothing was forwarded. Retry ` +
      `after ${retryAfter} s; the RateLimit header shows what is left.`,
    { headers: { ...headers, 'retry-after': String(retryAfter) }, extensions: { 'violated-policies': violated } },
  );
}

function limitsUnavailable(err: LimiterUnavailableError): GatewayError {
  return new GatewayError(
    'temporary_reduced_capacity',
    'Rate limits cannot be checked right now and this org is configured to refuse calls until they can. ' +
      'Nothing was forwarded; retry after the Retry-After delay.',
    { cause: err, headers: { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) } },
  );
}

/**
 * Consumes the org's policies for an authorized call. Refusals are 429 `quota_exceeded` with
 * Retry-After (nothing forwarded, nothing consumed); a Redis outage in `closed` mode is 503
 * `temporary_reduced_capacity`. A call that is then not forwarded is refunded. Orgs without a
 * rateLimit pass straight through. While the bucket has headroom (see headroom.ts) the call does not wait for the
 * decision here: it leaves it in `admission`, the run lock and the attempt are sent beside it, and the forward waits
 * for all of them.
 */
export function rateLimit(deps: {
  limiter: RateLimiter;
  /** An org's limits for one group of calls (writes: start, stop; reads: status, list, stats). */
  limitsFor: (org: string, group: LimitGroup) => OrgLimits | undefined;
  metrics: Metrics;
  callerKeys: CallerKeys;
  /** What this instance last learned of each bucket: whether a call may go ahead of its decision. */
  headroom: Headroom;
}): MiddlewareHandler<AppEnv> {
  const decisions = seriesOf((org, policy, outcome) => deps.metrics.rateLimitDecisions.labels(org, policy, outcome));
  // Lease ids are snapgate's own: unique per call across instances (random per middleware, then a
  // counter), never the caller's X-Request-Id, so no caller can share or free another's lease.
  const leasePrefix = randomBytes(9).toString('base64url');
  let leaseCount = 0;

  return async function rateLimitMiddleware(c, next) {
    const target = c.get('target');
    const limits =
      target !== undefined ? deps.limitsFor(target.org, isReadAction(target.action) ? 'reads' : 'writes') : undefined;
    if (limits === undefined) return next();
    const principal = c.get('principal');
    if (principal === undefined) throw new Error('rate limits are checked after authentication');
    const caller = deps.callerKeys.keyOf(principal.iss, principal.sub);
    const call = c.get('call');

    const leaseId = `${leasePrefix}.${(leaseCount++).toString(36)}`;
    const buckets = Headroom.bucketsOf(limits, caller);
    const ahead = deps.headroom.takeAhead(limits, buckets);
    const decided = decide(limits, caller, leaseId, { buckets, ahead }, call, c);
    if (ahead) {
      // The org has headroom: the next steps send their Redis work now, and the forward waits for this decision too.
      const admission = new Admission();
      admission.add(decided);
      c.set('admission', admission);
    } else {
      await decided;
    }
    try {
      await next();
    } finally {
      // A call refused after the decision and never forwarded (audit unavailable, caller gone,
      // upstream busy, shutdown) gives back what it took; a forwarded one keeps its quota.
      // A retry whose state read reached SnapLogic keeps its quota too, so retries cannot read for free.
      // A call refused by its decision took nothing.
      const decision = await decided.catch(() => undefined);
      const reached = c.get('forwarded') === true || c.get('stateRead') === true;
      if (decision !== undefined) void (reached ? decision.release() : decision.refund());
    }
  };

  /** The decision, as a check: it throws the 429 (or the 503 of closed mode); passed, the RateLimit fields are set. */
  async function decide(
    limits: OrgLimits,
    caller: string,
    leaseId: string,
    headroom: { buckets: Buckets; ahead: boolean },
    call: CallFacts,
    c: Context<AppEnv>,
  ): Promise<LimitDecision> {
    let decision: LimitDecision;
    try {
      decision = await deps.limiter.check({ limits, caller, leaseId });
    } catch (err) {
      deps.headroom.note(headroom.buckets, undefined, headroom.ahead);
      if (!(err instanceof LimiterUnavailableError)) throw err;
      call.rateLimit = { outcome: 'unavailable', policies: [] };
      throw limitsUnavailable(err);
    }
    deps.headroom.note(headroom.buckets, decision, headroom.ahead);
    for (const o of decision.outcomes) {
      const outcome = o.allowed ? 'allowed' : o.policy.shadow ? 'would_limit' : 'limited';
      decisions(limits.org, policyLabel(limits, o.policy.name), outcome).inc();
    }
    call.rateLimit = rateLimitOutcome(decision);
    const headers = limitHeaders(limits, decision, caller);
    if (!decision.allowed) throw quotaExceeded(limits, decision, headers);
    // Every response from here on (the forwarded answer or an upstream error) carries the RateLimit fields.
    addResponseHeaders(c, headers);
    return decision;
  }
}
