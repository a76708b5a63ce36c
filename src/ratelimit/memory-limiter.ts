// The in-process limiter: the same GCRA and lease semantics as the Redis script, for one process (demo, laptop, Redis-outage fallback).
import {
  keyFor,
  policiesOf,
  type LimitDecision,
  type LimitRequest,
  type PolicyOutcome,
  type RateLimiter,
} from './limits.js';

interface Entry {
  /** GCRA theoretical arrival time (µs), or lease expiry per member for concurrency. */
  tat: number;
  leases: Map<string, number> | undefined;
  /** When the entry may be dropped (µs). */
  expiresAt: number;
}

/**
 * Creates an in-process limiter holding at most `maxKeys` keys; idle keys expire like Redis keys,
 * and past the cap the least recently used are dropped (which can only make it more lenient).
 */
export function createMemoryLimiter(options: {
  maxKeys: number;
  nowUs?: () => number;
}): RateLimiter & { size(): number } {
  const nowUs = options.nowUs ?? (() => Date.now() * 1000);
  const entries = new Map<string, Entry>();

  const get = (key: string, now: number): Entry | undefined => {
    const e = entries.get(key);
    if (e === undefined) return undefined;
    if (e.expiresAt <= now) {
      entries.delete(key);
      return undefined;
    }
    // Refresh recency: Map iteration order is insertion order, so re-inserting marks it newest.
    entries.delete(key);
    entries.set(key, e);
    return e;
  };
  const put = (key: string, e: Entry): void => {
    entries.delete(key);
    entries.set(key, e);
    while (entries.size > options.maxKeys) {
      const oldest = entries.keys().next().value as string;
      entries.delete(oldest);
    }
  };

  return {
    size: () => entries.size,
    check({ limits, caller, leaseId }: LimitRequest): Promise<LimitDecision> {
      const now = nowUs();
      const policies = policiesOf(limits);
      const writes: Array<() => void> = [];
      // What a refund gives back: each rate key's emission interval.
      const taken: Array<{ key: string; intervalUs: number }> = [];
      let admitted = true;
      let leaseKey: string | undefined;
      const outcomes: PolicyOutcome[] = policies.map((policy) => {
        const key = keyFor(limits.org, policy, caller);
        const entry = get(key, now);
        let outcome: PolicyOutcome;
        if (policy.kind === 'rate') {
          const tat = Math.max(entry?.tat ?? now, now);
          if (tat - now > policy.toleranceUs) {
            outcome = {
              policy,
              allowed: false,
              remaining: 0,
              resetMs: Math.ceil((tat - now) / 1000),
              retryMs: Math.ceil((tat - policy.toleranceUs - now) / 1000),
            };
          } else {
            const newTat = tat + policy.intervalUs;
            const remaining = Math.max(
              0,
              Math.floor((policy.toleranceUs - (newTat - now)) / policy.intervalUs + 1e-9) + 1,
            );
            outcome = { policy, allowed: true, remaining, resetMs: Math.ceil((newTat - now) / 1000), retryMs: 0 };
            writes.push(() => {
              put(key, { tat: newTat, leases: undefined, expiresAt: newTat });
              taken.push({ key, intervalUs: policy.intervalUs });
            });
          }
        } else {
          const leases = new Map([...(entry?.leases ?? new Map<string, number>())].filter(([, exp]) => exp > now));
          if (leases.size >= policy.limit) {
            outcome = { policy, allowed: false, remaining: 0, resetMs: 0, retryMs: 1000 };
          } else {
            outcome = { policy, allowed: true, remaining: policy.limit - leases.size - 1, resetMs: 0, retryMs: 0 };
            const expiry = now + policy.leaseMs * 1000;
            writes.push(() => {
              leases.set(leaseId, expiry);
              put(key, { tat: 0, leases, expiresAt: Math.max(...leases.values()) });
              leaseKey = key;
            });
          }
        }
        if (!outcome.allowed && !policy.shadow) admitted = false;
        return outcome;
      });
      if (admitted) for (const w of writes) w();
      const release = (): Promise<void> => {
        const key = leaseKey;
        if (key !== undefined) entries.get(key)?.leases?.delete(leaseId);
        leaseKey = undefined;
        return Promise.resolve();
      };
      return Promise.resolve({
        allowed: admitted,
        outcomes,
        release,
        refund: () => {
          for (const { key, intervalUs } of taken.splice(0)) {
            const e = entries.get(key);
            if (e !== undefined) e.tat -= intervalUs;
          }
          return release();
        },
      });
    },
  };
}
