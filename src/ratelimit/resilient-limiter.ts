// Redis first; when Redis fails, a circuit breaker and each org's onRedisError mode decide, and Redis is probed until it is back.
import type { Logger } from '../log.js';
import { RedisDeadlineError } from '../redis/client.js';
import type { Metrics } from '../ops/metrics.js';
import type { LimitDecision, LimitRequest, RateLimiter } from './limits.js';
import { LimitDeadlineError, type LateScript } from './redis-limiter.js';
import { createScaledLimiter } from './scaled-limiter.js';

/** Redis is unavailable and the org's mode is `closed`: refuse with 503 after `retryAfterMs`. */
export class LimiterUnavailableError extends Error {
  constructor(
    readonly retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super('rate limiter unavailable', options);
    this.name = 'LimiterUnavailableError';
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
  const { log, metrics } = options;
  let open = false;
  let openedAt = 0;
  let probing = false;
  let timeouts = 0;
  // The fallback enforces one instance's share of each org's limits.
  const local = createScaledLimiter(options.local, options.expectedInstances);

  const mayTryRedis = (): boolean => {
    if (!open) return true;
    if (!probing && now() - openedAt >= options.openForMs) {
      probing = true;
      return true;
    }
    return false;
  };
  const succeeded = (): void => {
    if (open) {
      open = false;
      log.info('rate limiter back on redis', { degradedForMs: now() - openedAt });
      metrics.rateLimitDegraded.set(0);
      metrics.rateLimitModeChanges.inc({ mode: 'redis' });
    }
    probing = false;
    timeouts = 0;
  };
  const failed = (err: unknown): void => {
    if (!open && err instanceof RedisDeadlineError && ++timeouts < TIMEOUTS_TO_OPEN) return;
    timeouts = 0;
    if (!open) {
      log.warn('rate limiter degraded: redis unavailable; each org follows its onRedisError mode', {
        error: err instanceof Error ? err.message : String(err),
        retryInMs: options.openForMs,
      });
      metrics.rateLimitDegraded.set(1);
      metrics.rateLimitModeChanges.inc({ mode: 'degraded' });
    }
    open = true;
    openedAt = now();
    probing = false;
  };

  return {
    async check(request: LimitRequest): Promise<LimitDecision> {
      let cause: unknown;
      if (mayTryRedis()) {
        try {
          const decision = await options.primary.check(request);
          succeeded();
          return decision;
        } catch (err) {
          failed(err);
          cause = err;
        }
      }
      const mode = request.limits.onRedisError;
      metrics.rateLimitDegradedDecisions.inc({ mode });
      // A script that missed its deadline may still run: it is settled with the call's end.
      const late = cause instanceof LimitDeadlineError ? cause.late : undefined;
      switch (mode) {
        case 'local': {
          const decision = await local.check(request);
          if (!decision.allowed) late?.settle(false);
          return { ...decision, degraded: 'local', ...settling(decision, late) };
        }
        case 'open':
          return {
            allowed: true,
            outcomes: [],
            degraded: 'open',
            ...settling({ release: () => Promise.resolve(), refund: () => Promise.resolve() }, late),
          };
        case 'closed':
          late?.settle(false);
          throw new LimiterUnavailableError(Math.max(1_000, options.openForMs - (now() - openedAt)), { cause });
      }
    },
  };
}
