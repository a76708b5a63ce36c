// Rate-limit policies compiled from config once at start-up, and the limiter interface both limiters implement.
import { hash } from 'node:crypto';
import type { RateLimitConfig } from '../config/schema.js';

export type PolicyName = 'org-rate' | 'caller-rate' | 'org-concurrency';

/** GCRA: a bucket of `limit + burst` requests refilled at `limit` per `windowMs`. */
export interface RatePolicy {
  readonly kind: 'rate';
  readonly name: PolicyName;
  readonly limit: number;
  readonly burst: number;
  readonly windowMs: number;
  readonly shadow: boolean;
  /** Emission interval T = window / limit, in microseconds. */
  readonly intervalUs: number;
  /** Burst tolerance τ = T · (limit + burst − 1), in microseconds. */
  readonly toleranceUs: number;
}

/** At most `limit` calls in flight at SnapLogic at once; a lease expires after `leaseMs` if never released. */
export interface ConcurrencyPolicy {
  readonly kind: 'concurrency';
  readonly name: 'org-concurrency';
  readonly limit: number;
  readonly leaseMs: number;
  readonly shadow: boolean;
}

export type LimitPolicy = RatePolicy | ConcurrencyPolicy;

/** Everything that applies to one org, in a fixed order: org rate, caller rate, concurrency. */
export interface OrgLimits {
  readonly org: string;
  readonly rate: RatePolicy;
  readonly perCaller?: RatePolicy;
  readonly concurrency?: ConcurrencyPolicy;
  readonly onRedisError: RateLimitConfig['onRedisError'];
}

export interface PolicyOutcome {
  readonly policy: LimitPolicy;
  /** False when this policy alone would refuse the request (for a shadow policy: would have limited). */
  readonly allowed: boolean;
  /** Requests this policy would still admit right now. */
  readonly remaining: number;
  /** ms until the policy is fully replenished. */
  readonly resetMs: number;
  /** ms until a refused request would be admitted (0 when allowed). */
  readonly retryMs: number;
}

export interface LimitDecision {
  /** True unless an enforced (non-shadow) policy refused. Nothing is consumed when false. */
  readonly allowed: boolean;
  readonly outcomes: readonly PolicyOutcome[];
  /** Set when Redis could not be used and the org's onRedisError mode decided instead. */
  readonly degraded?: 'local' | 'open';
  /** Frees the concurrency lease (no-op when none was taken). Never throws. */
  release(): Promise<void>;
}

export interface LimitRequest {
  readonly limits: OrgLimits;
  /** A stable, opaque id of the caller (see callerKey). */
  readonly caller: string;
  /** Names the concurrency lease. */
  readonly requestId: string;
}

export interface RateLimiter {
  /** Checks and consumes every policy at once, all-or-nothing. Throws when its store fails. */
  check(request: LimitRequest): Promise<LimitDecision>;
}

export function ratePolicy(name: PolicyName, cfg: { limit: number; window: number; burst: number; shadow: boolean }): RatePolicy {
  const intervalUs = (cfg.window * 1000) / cfg.limit;
  return {
    kind: 'rate',
    name,
    limit: cfg.limit,
    burst: cfg.burst,
    windowMs: cfg.window,
    shadow: cfg.shadow,
    intervalUs,
    toleranceUs: intervalUs * (cfg.limit + cfg.burst - 1),
  };
}

/**
 * Compiles an org's config. A concurrency lease lives as long as the longest upstream call can
 * (`maxCallMs`) plus a margin, unless configured; a crashed instance's leases expire by then.
 */
export function compileOrgLimits(org: string, cfg: RateLimitConfig, maxCallMs: number): OrgLimits {
  return {
    org,
    rate: ratePolicy('org-rate', cfg),
    ...(cfg.perCaller !== undefined ? { perCaller: ratePolicy('caller-rate', cfg.perCaller) } : {}),
    ...(cfg.concurrency !== undefined
      ? {
          concurrency: {
            kind: 'concurrency' as const,
            name: 'org-concurrency' as const,
            limit: cfg.concurrency.limit,
            leaseMs: cfg.concurrency.lease ?? maxCallMs + 5_000,
            shadow: cfg.concurrency.shadow,
          },
        }
      : {}),
    onRedisError: cfg.onRedisError,
  };
}

/** The policies of an org in evaluation order. */
export function policiesOf(limits: OrgLimits): LimitPolicy[] {
  return [limits.rate, limits.perCaller, limits.concurrency].filter((p): p is LimitPolicy => p !== undefined);
}

// Callers repeat: their keys are remembered (bounded; forgotten all at once when full).
const callerKeys = new Map<string, string>();
const MAX_CALLER_KEYS = 10_000;

/** An opaque, fixed-length key for a caller: no claim text reaches Redis keys. */
export function callerKey(iss: string, sub: string): string {
  const id = `${iss}\n${sub}`;
  let key = callerKeys.get(id);
  if (key === undefined) {
    key = hash('sha256', id, 'base64url').slice(0, 22);
    if (callerKeys.size >= MAX_CALLER_KEYS) callerKeys.clear();
    callerKeys.set(id, key);
  }
  return key;
}

/**
 * Redis keys for an org's policies. The `{org:…}` hash tag puts them all in one Cluster slot, so
 * one script can touch every one of them. Org names cannot contain braces (see snaplogic-names).
 */
export function keyFor(org: string, policy: LimitPolicy, caller: string): string {
  switch (policy.name) {
    case 'org-rate':
      return `rl:{org:${org}}:rate`;
    case 'caller-rate':
      return `rl:{org:${org}}:caller:${caller}`;
    case 'org-concurrency':
      return `rl:{org:${org}}:conc`;
  }
}

/** Scales an org's limits for one instance of `instances` (local fallback); never below 1. */
export function scaleForInstance(limits: OrgLimits, instances: number): OrgLimits {
  const scaleRate = (p: RatePolicy): RatePolicy =>
    ratePolicy(p.name, {
      limit: Math.max(1, Math.floor(p.limit / instances)),
      window: p.windowMs,
      burst: Math.floor(p.burst / instances),
      shadow: p.shadow,
    });
  return {
    ...limits,
    rate: scaleRate(limits.rate),
    ...(limits.perCaller ? { perCaller: scaleRate(limits.perCaller) } : {}),
    ...(limits.concurrency
      ? { concurrency: { ...limits.concurrency, limit: Math.max(1, Math.floor(limits.concurrency.limit / instances)) } }
      : {}),
  };
}
