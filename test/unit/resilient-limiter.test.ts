// The rate limiter's circuit breaker with an injected clock: what opens it, how long it stays open, the single probe
// that closes it, and what each onRedisError mode decides meanwhile. The primary is a fake of our own RateLimiter.
import { describe, expect, it } from 'vitest';
import type { OnRedisError } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/ops/metrics.js';
import { RedisDeadlineError } from '../../src/redis/client.js';
import {
  compileOrgLimits,
  type LimitDecision,
  type LimitRequest,
  type OrgLimits,
  type RateLimiter,
} from '../../src/ratelimit/limits.js';
import { createMemoryLimiter } from '../../src/ratelimit/memory-limiter.js';
import { createResilientLimiter, LimiterUnavailableError } from '../../src/ratelimit/resilient-limiter.js';

const OPEN_FOR_MS = 5_000;

/** A primary that answers like Redis when `up`, and otherwise throws `failure()`; it counts the calls it gets. */
class FakePrimary implements RateLimiter {
  calls = 0;
  up = true;
  failure: () => Error = () =>
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
  /** Resolves a call held by `hold()`; undefined when none is held. */
  private held: (() => void) | undefined;
  private holding = false;

  /** The next call waits until `releaseHeld()` before answering. */
  hold(): void {
    this.holding = true;
  }

  releaseHeld(): void {
    this.held?.();
  }

  async check(): Promise<LimitDecision> {
    this.calls += 1;
    if (this.holding) {
      this.holding = false;
      await new Promise<void>((resolve) => (this.held = resolve));
    }
    if (!this.up) throw this.failure();
    return { allowed: true, outcomes: [], release: () => Promise.resolve(), refund: () => Promise.resolve() };
  }
}

interface Setup {
  limiter: RateLimiter;
  primary: FakePrimary;
  clock: { now: number };
  metrics: Metrics;
  logs: Record<string, unknown>[];
}

function setup(options: { expectedInstances?: number } = {}): Setup {
  const clock = { now: 1_000_000 };
  const primary = new FakePrimary();
  const metrics = createMetrics();
  const logs: Record<string, unknown>[] = [];
  const limiter = createResilientLimiter({
    primary,
    local: createMemoryLimiter({ maxKeys: 1_000, nowUs: () => clock.now * 1_000 }),
    expectedInstances: options.expectedInstances ?? 1,
    openForMs: OPEN_FOR_MS,
    log: createLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) }),
    metrics,
    now: () => clock.now,
  });
  return { limiter, primary, clock, metrics, logs };
}

function limits(onRedisError: OnRedisError, limit = 4): OrgLimits {
  return compileOrgLimits('Acme-Prod', { limit, window: 60_000, burst: 0, shadow: false, onRedisError }, 10_000);
}

let leases = 0;
const request = (l: OrgLimits): LimitRequest => ({ limits: l, caller: 'caller-key', leaseId: `lease-${++leases}` });

const logged = (s: Setup, msg: string) => s.logs.filter((l) => l.msg === msg);

async function gauge(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.rateLimitDegraded.get()).values[0]?.value;
}

async function counted(metrics: Metrics, counter: 'rateLimitModeChanges' | 'rateLimitDegradedDecisions') {
  const values = (await metrics[counter].get()).values;
  return Object.fromEntries(values.map((v) => [String(v.labels.mode), v.value]));
}

describe('opening the breaker', () => {
  it('a connection error opens it at once: later calls are decided without touching the primary', async () => {
    const s = setup();
    const l = limits('open');
    expect((await s.limiter.check(request(l))).degraded).toBeUndefined();
    s.primary.up = false;
    const failed = await s.limiter.check(request(l));
    expect(failed.degraded).toBe('open');
    expect(s.primary.calls).toBe(2);
    for (let i = 0; i < 5; i++) expect((await s.limiter.check(request(l))).degraded).toBe('open');
    expect(s.primary.calls, 'an open breaker sent calls to the primary').toBe(2);
    expect(logged(s, 'rate limiter degraded: redis unavailable; each org follows its onRedisError mode')).toHaveLength(
      1,
    );
    expect(await gauge(s.metrics)).toBe(1);
    expect(await counted(s.metrics, 'rateLimitModeChanges')).toEqual({ degraded: 1 });
  });

  it('deadline misses open it only on the third in a row; a success in between starts the count again', async () => {
    const s = setup();
    const l = limits('open');
    s.primary.up = false;
    s.primary.failure = () => new RedisDeadlineError(100);
    await s.limiter.check(request(l));
    await s.limiter.check(request(l));
    s.primary.up = true;
    expect((await s.limiter.check(request(l))).degraded).toBeUndefined();
    s.primary.up = false;
    await s.limiter.check(request(l));
    await s.limiter.check(request(l));
    expect(s.primary.calls, 'two misses after a success must not open the breaker').toBe(5);
    expect(logged(s, 'rate limiter degraded: redis unavailable; each org follows its onRedisError mode')).toEqual([]);
    // The third miss in a row opens it: the next call does not reach the primary.
    expect((await s.limiter.check(request(l))).degraded).toBe('open');
    expect(s.primary.calls).toBe(6);
    await s.limiter.check(request(l));
    expect(s.primary.calls).toBe(6);
    expect(await gauge(s.metrics)).toBe(1);
  });

  it('a call whose own deadline was missed is decided by the fallback while the breaker stays closed', async () => {
    const s = setup();
    s.primary.up = false;
    s.primary.failure = () => new RedisDeadlineError(100);
    const decision = await s.limiter.check(request(limits('local')));
    expect(decision.degraded).toBe('local');
    expect(decision.allowed).toBe(true);
  });
});

describe('while open, and the probe', () => {
  it('stays open for openForMs, then lets exactly one call probe; a good answer closes it', async () => {
    const s = setup();
    const l = limits('open');
    s.primary.up = false;
    await s.limiter.check(request(l));
    expect(s.primary.calls).toBe(1);
    s.primary.up = true;
    s.clock.now += OPEN_FOR_MS - 1;
    expect((await s.limiter.check(request(l))).degraded).toBe('open');
    expect(s.primary.calls, 'probed before openForMs had passed').toBe(1);

    s.clock.now += 1;
    s.primary.hold();
    const probe = s.limiter.check(request(l));
    // While the probe is out, every other call is still decided without the primary.
    const others = await Promise.all([s.limiter.check(request(l)), s.limiter.check(request(l))]);
    expect(others.map((d) => d.degraded)).toEqual(['open', 'open']);
    expect(s.primary.calls, 'more than one probe at once').toBe(2);
    s.primary.releaseHeld();
    expect((await probe).degraded).toBeUndefined();

    expect((await s.limiter.check(request(l))).degraded).toBeUndefined();
    expect(s.primary.calls).toBe(3);
    expect(logged(s, 'rate limiter back on redis')).toEqual([
      expect.objectContaining({ level: 'info', degradedForMs: OPEN_FOR_MS }),
    ]);
    expect(await gauge(s.metrics)).toBe(0);
    expect(await counted(s.metrics, 'rateLimitModeChanges')).toEqual({ degraded: 1, redis: 1 });
  });

  it('a failed probe keeps it open for another openForMs from the probe, logging the outage only once', async () => {
    const s = setup();
    const l = limits('open');
    s.primary.up = false;
    await s.limiter.check(request(l));
    s.clock.now += OPEN_FOR_MS;
    expect((await s.limiter.check(request(l))).degraded).toBe('open');
    expect(s.primary.calls, 'the probe was not sent').toBe(2);
    s.clock.now += OPEN_FOR_MS - 1;
    await s.limiter.check(request(l));
    expect(s.primary.calls, 'probed again before openForMs after the failed probe').toBe(2);
    s.clock.now += 1;
    await s.limiter.check(request(l));
    expect(s.primary.calls).toBe(3);
    expect(logged(s, 'rate limiter degraded: redis unavailable; each org follows its onRedisError mode')).toHaveLength(
      1,
    );
    expect(await counted(s.metrics, 'rateLimitModeChanges')).toEqual({ degraded: 1 });
  });
});

describe('what each onRedisError mode decides while Redis is unavailable', () => {
  it('local: the in-process limiter enforces this instance’s share (limit / expectedInstances)', async () => {
    const s = setup({ expectedInstances: 2 });
    s.primary.up = false;
    const l = limits('local', 4);
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await s.limiter.check(request(l)));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, false, false]);
    expect(decisions.every((d) => d.degraded === 'local')).toBe(true);
    expect(decisions[2]!.outcomes[0]).toMatchObject({ allowed: false, remaining: 0 });
    expect(await counted(s.metrics, 'rateLimitDegradedDecisions')).toEqual({ local: 4 });
  });

  it('local: a refund gives the share back', async () => {
    const s = setup({ expectedInstances: 2 });
    s.primary.up = false;
    const l = limits('local', 4);
    const first = await s.limiter.check(request(l));
    await first.refund();
    const admitted = [await s.limiter.check(request(l)), await s.limiter.check(request(l))];
    expect(admitted.map((d) => d.allowed)).toEqual([true, true]);
    expect((await s.limiter.check(request(l))).allowed).toBe(false);
  });

  it('open: admits every call, takes nothing and marks the decision degraded', async () => {
    const s = setup();
    s.primary.up = false;
    const l = limits('open', 1);
    const decisions = [];
    for (let i = 0; i < 5; i++) decisions.push(await s.limiter.check(request(l)));
    expect(decisions.map((d) => [d.allowed, d.degraded, d.outcomes.length])).toEqual(Array(5).fill([true, 'open', 0]));
    await expect(decisions[0]!.release()).resolves.toBeUndefined();
    await expect(decisions[0]!.refund()).resolves.toBeUndefined();
    expect(await counted(s.metrics, 'rateLimitDegradedDecisions')).toEqual({ open: 5 });
  });

  it('closed: refuses with LimiterUnavailableError, asking to retry when the probe is due (at least 1 s)', async () => {
    const s = setup();
    s.primary.up = false;
    const l = limits('closed');
    const first = await s.limiter.check(request(l)).catch((err: unknown) => err);
    expect(first).toBeInstanceOf(LimiterUnavailableError);
    expect((first as LimiterUnavailableError).retryAfterMs).toBe(OPEN_FOR_MS);
    expect((first as LimiterUnavailableError).cause).toBeInstanceOf(Error);

    s.clock.now += 3_000;
    const later = await s.limiter.check(request(l)).catch((err: unknown) => err);
    expect((later as LimiterUnavailableError).retryAfterMs).toBe(OPEN_FOR_MS - 3_000);
    s.clock.now += 1_500;
    const almost = await s.limiter.check(request(l)).catch((err: unknown) => err);
    expect((almost as LimiterUnavailableError).retryAfterMs, 'Retry-After below 1 s').toBe(1_000);
    expect(s.primary.calls).toBe(1);
    expect(await counted(s.metrics, 'rateLimitDegradedDecisions')).toEqual({ closed: 3 });
  });

  it('each org follows its own mode on the same open breaker', async () => {
    const s = setup();
    s.primary.up = false;
    expect((await s.limiter.check(request(limits('open')))).degraded).toBe('open');
    await expect(s.limiter.check(request(limits('closed')))).rejects.toBeInstanceOf(LimiterUnavailableError);
    expect((await s.limiter.check(request(limits('local')))).degraded).toBe('local');
    expect(s.primary.calls).toBe(1);
  });
});
