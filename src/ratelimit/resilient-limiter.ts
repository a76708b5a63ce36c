// Redis first; when Redis fails, a circuit breaker and each org's onRedisError mode decide, and Redis is probed
// until it is back.
import type { Logger } from '../log.js';
import { RedisDeadlineError } from '../redis/client.js';
import type { Metrics } from '../ops/metrics.js';
import type { LimitDecision, LimitRequest, RateLimiter } from './limits.js';
import { LimitDeadlineError, type LateScript } from './redis-limiter.js';
import { createScaledLimiter } from './scaled-limiter.js';
import { RedisUnavailableError } from '../redis/unavailable.js';

/** Redis is unavailable and the org's mode is `closed`: refuse with 503 after `retryAfterMs`. */
export class LimiterUnavailableError extends RedisUnavailableError {
  constructor(retryAfterMs: number, options?: { cause?: unknown }) {
    super('rate limiter', retryAfterMs, options);
  }
}

export interface ResilientLimiterOptions {
  primary: RateLimiter;
  /** In-process limiter used for `local` mode; given limits scaled to one instance. */
  local: RateLimiter;
  expectedInstances: number;
  /** ms the breaker stays open before one request probes Redis again. */
  openForMs: number;
  log: Logger;
  metrics: Metrics;
  now?: () => number;
}

/** The fallback decision's release and refund, settling the late Redis script the same way. */
function settling(
  decision: Pick<LimitDecision, 'release' | 'refund'>,
  late: LateScript | undefined,
): Pick<LimitDecision, 'release' | 'refund'> {
  if (late === undefined) return { release: decision.release, refund: decision.refund };
  return {
    release: () => {
      late.settle(true);
      return decision.release();
    },
    refund: () => {
      late.settle(false);
      return decision.refund();
    },
  };
}

/** Consecutive deadline misses that open the breaker; a connection error opens it at once. */
const TIMEOUTS_TO_OPEN = 3;

/**
 * Wraps the Redis limiter with a circuit breaker. While closed, every decision goes to Redis. A
 * connection failure (or three deadline misses in a row: a slow answer is not yet an outage) opens
 * it: for `openForMs` no request touches Redis, so none waits on it, then a single request probes;
 * success closes it again. A request whose own Redis call failed is decided by the fallback. The
 * mode change is logged and counted once, not per request.
 */
export function createResilientLimiter(options: ResilientLimiterOptions): RateLimiter {
  const now = options.now ?? Date.now;
  const breaker = new Breaker(options, now);
  // The fallback enforces one instance's share of each org's limits.
  const local = createScaledLimiter(options.local, options.expectedInstances);

  const fallback = async (request: LimitRequest, cause: unknown): Promise<LimitDecision> => {
    const mode = request.limits.onRedisError;
    options.metrics.rateLimitDegradedDecisions.inc({ mode });
    // A script that missed its deadline may still run: it is settled with the call's end.
    const late = cause instanceof LimitDeadlineError ? cause.late : undefined;
    switch (mode) {
      case 'local': {
        const decision = await local.check(request);
        if (!decision.allowed) late?.settle(false);
        return { ...decision, degraded: 'local', ...settling(decision, late) };
      }
      case 'open': {
        const nothingTaken = { release: () => Promise.resolve(), refund: () => Promise.resolve() };
        return { allowed: true, outcomes: [], degraded: 'open', ...settling(nothingTaken, late) };
      }
      case 'closed':
        late?.settle(false);
        throw new LimiterUnavailableError(breaker.retryAfterMs(), { cause });
    }
  };

  return {
    async check(request: LimitRequest): Promise<LimitDecision> {
      if (!breaker.mayTry()) return fallback(request, undefined);
      try {
        const decision = await options.primary.check(request);
        breaker.succeeded();
        return decision;
      } catch (err) {
        breaker.failed(err);
        return fallback(request, err);
      }
    },
  };
}

/** The breaker's state; see createResilientLimiter. Mode changes are logged and counted here. */
class Breaker {
  private open = false;
  private openedAt = 0;
  private probing = false;
  private timeouts = 0;

  constructor(
    private readonly options: Pick<ResilientLimiterOptions, 'openForMs' | 'log' | 'metrics'>,
    private readonly now: () => number,
  ) {}

  /** True when this request may use Redis: the breaker is closed, or this is the probe after openForMs. */
  mayTry(): boolean {
    if (!this.open) return true;
    if (!this.probing && this.now() - this.openedAt >= this.options.openForMs) {
      this.probing = true;
      return true;
    }
    return false;
  }

  succeeded(): void {
    if (this.open) {
      this.open = false;
      this.options.log.info('rate limiter back on redis', { degradedForMs: this.now() - this.openedAt });
      this.options.metrics.rateLimitDegraded.set(0);
      this.options.metrics.rateLimitModeChanges.inc({ mode: 'redis' });
    }
    this.probing = false;
    this.timeouts = 0;
  }

  failed(err: unknown): void {
    if (!this.open && err instanceof RedisDeadlineError && ++this.timeouts < TIMEOUTS_TO_OPEN) return;
    this.timeouts = 0;
    if (!this.open) {
      this.options.log.warn('rate limiter degraded: redis unavailable; each org follows its onRedisError mode', {
        error: err instanceof Error ? err.message : String(err),
        retryInMs: this.options.openForMs,
      });
      this.options.metrics.rateLimitDegraded.set(1);
      this.options.metrics.rateLimitModeChanges.inc({ mode: 'degraded' });
    }
    this.open = true;
    this.openedAt = this.now();
    this.probing = false;
  }

  /** How long a caller refused in closed mode should wait: until the next probe, at least 1 s. */
  retryAfterMs(): number {
    return Math.max(1_000, this.options.openForMs - (this.now() - this.openedAt));
  }
}
