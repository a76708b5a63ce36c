// The in-process limiter: the same GCRA and lease semantics as the Redis script, for one process (demo, laptop,
// Redis-outage fallback).
import {
  keyFor,
  policiesOf,
  type ConcurrencyPolicy,
  type LimitDecision,
  type LimitRequest,
  type PolicyOutcome,
  type RateLimiter,
  type RatePolicy,
} from './limits.js';

interface Entry {
  /** GCRA theoretical arrival time (µs) of a rate key; 0 for a concurrency key. */
  tat: number;
  /** A concurrency key's leases: their expiry (µs) by lease id; undefined for a rate key. */
  leases: Map<string, number> | undefined;
  /** When the entry may be dropped (µs). */
  expiresAt: number;
}

/**
 * The keys, least recently used first: a Map iterates in insertion order, so re-inserting a key
 * marks it newest. Idle keys expire like Redis keys; past `maxKeys` the least recently used go.
 */
class Entries {
  private readonly map = new Map<string, Entry>();

  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The live entry of `key`, now the most recently used; an expired one is dropped. */
  get(key: string, now: number): Entry | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    this.map.delete(key);
    if (e.expiresAt <= now) return undefined;
    this.map.set(key, e);
    return e;
  }

  /** The entry as stored, expired or not, without touching its recency. */
  peek(key: string): Entry | undefined {
    return this.map.get(key);
  }

  put(key: string, e: Entry): void {
    this.map.delete(key);
    this.map.set(key, e);
    while (this.map.size > this.maxKeys) this.map.delete(this.map.keys().next().value as string);
  }
}

/** What an admitted call took: one emission interval per rate key, and the key of its lease. */
interface Taken {
  rates: Array<{ key: string; intervalUs: number }>;
  leaseKey: string | undefined;
}

/** One policy's verdict, and what admitting the call takes under it (applied only if every policy admits). */
interface Step {
  outcome: PolicyOutcome;
  take?: (taken: Taken) => void;
}

function rateStep(entries: Entries, policy: RatePolicy, key: string, now: number): Step {
  const tat = Math.max(entries.get(key, now)?.tat ?? now, now);
  if (tat - now > policy.toleranceUs) {
    const resetMs = Math.ceil((tat - now) / 1000);
    const retryMs = Math.ceil((tat - policy.toleranceUs - now) / 1000);
    return { outcome: { policy, allowed: false, remaining: 0, resetMs, retryMs } };
  }
  const newTat = tat + policy.intervalUs;
  const remaining = Math.max(0, Math.floor((policy.toleranceUs - (newTat - now)) / policy.intervalUs + 1e-9) + 1);
  return {
    outcome: { policy, allowed: true, remaining, resetMs: Math.ceil((newTat - now) / 1000), retryMs: 0 },
    take: (taken) => {
      entries.put(key, { tat: newTat, leases: undefined, expiresAt: newTat });
      taken.rates.push({ key, intervalUs: policy.intervalUs });
    },
  };
}

function leaseStep(entries: Entries, policy: ConcurrencyPolicy, key: string, now: number, leaseId: string): Step {
  const held = entries.get(key, now)?.leases ?? new Map<string, number>();
  const leases = new Map([...held].filter(([, expiry]) => expiry > now));
  if (leases.size >= policy.limit) {
    return { outcome: { policy, allowed: false, remaining: 0, resetMs: 0, retryMs: 1000 } };
  }
  const expiry = now + policy.leaseMs * 1000;
  return {
    outcome: { policy, allowed: true, remaining: policy.limit - leases.size - 1, resetMs: 0, retryMs: 0 },
    take: (taken) => {
      leases.set(leaseId, expiry);
      entries.put(key, { tat: 0, leases, expiresAt: Math.max(...leases.values()) });
      taken.leaseKey = key;
    },
  };
}

/** Evaluates every policy, then (all-or-nothing) takes what an admitted call takes. */
function decide(entries: Entries, { limits, caller, leaseId }: LimitRequest, now: number): LimitDecision {
  const steps = policiesOf(limits).map((policy) => {
    const key = keyFor(limits.org, policy, caller, limits.group);
    return policy.kind === 'rate' ? rateStep(entries, policy, key, now) : leaseStep(entries, policy, key, now, leaseId);
  });
  const allowed = steps.every(({ outcome }) => outcome.allowed || outcome.policy.shadow);
  const taken: Taken = { rates: [], leaseKey: undefined };
  if (allowed) for (const step of steps) step.take?.(taken);
  const release = (): Promise<void> => {
    if (taken.leaseKey !== undefined) entries.peek(taken.leaseKey)?.leases?.delete(leaseId);
    taken.leaseKey = undefined;
    return Promise.resolve();
  };
  const refund = (): Promise<void> => {
    for (const { key, intervalUs } of taken.rates.splice(0)) {
      const e = entries.peek(key);
      if (e !== undefined) e.tat -= intervalUs;
    }
    return release();
  };
  return { allowed, outcomes: steps.map((s) => s.outcome), release, refund };
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
  const entries = new Entries(options.maxKeys);
  return {
    size: () => entries.size,
    check: (request) => Promise.resolve(decide(entries, request, nowUs())),
  };
}
