// One suite, two limiters: the Redis script (on a real redis-server) and the in-process limiter must decide alike.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryLimiter } from '../../src/ratelimit/memory-limiter.js';
import { compileOrgLimits, keyFor, type OrgLimits, type RateLimiter } from '../../src/ratelimit/limits.js';
import { createRedisLimiter } from '../../src/ratelimit/redis-limiter.js';
import { RedisServer } from '../helpers/redis-server.js';

let server: RedisServer;
let client: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
});

afterAll(async () => {
  client.disconnect();
  await server.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let orgSeq = 0;
function limits(cfg: Partial<Parameters<typeof compileOrgLimits>[1]> = {}): OrgLimits {
  orgSeq += 1;
  return compileOrgLimits(
    `Org-${orgSeq}-${randomUUID().slice(0, 8)}`,
    { limit: 5, window: 60_000, burst: 0, shadow: false, onRedisError: 'local', ...cfg },
    10_000,
  );
}

const limiters: Array<[string, () => RateLimiter]> = [
  ['redis', () => createRedisLimiter(client)],
  ['memory', () => createMemoryLimiter({ maxKeys: 1_000 })],
];

describe.each(limiters)('%s limiter', (_name, make) => {
  let limiter: RateLimiter;
  beforeEach(() => {
    limiter = make();
  });
  const check = (l: OrgLimits, caller = 'caller-a', leaseId: string = randomUUID()) =>
    limiter.check({ limits: l, caller, leaseId });

  it('admits exactly limit + burst at once, then refuses with an exact retry time', async () => {
    const l = limits({ limit: 10, burst: 5, window: 60_000 });
    const decisions = await Promise.all(Array.from({ length: 40 }, () => check(l)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(15);
    const refused = decisions.find((d) => !d.allowed)!;
    expect(refused.outcomes[0]).toMatchObject({ allowed: false, remaining: 0 });
    // One request's worth of quota comes back every window / limit = 6 s.
    expect(refused.outcomes[0]!.retryMs).toBeGreaterThan(5_900);
    expect(refused.outcomes[0]!.retryMs).toBeLessThanOrEqual(6_000);
  });

  it('counts remaining down and reports the time to full replenishment', async () => {
    const l = limits({ limit: 3, window: 3_000 });
    const remaining = [];
    for (let i = 0; i < 3; i++) remaining.push((await check(l)).outcomes[0]!.remaining);
    expect(remaining).toEqual([2, 1, 0]);
    const last = await check(l);
    expect(last.allowed).toBe(false);
    expect(last.outcomes[0]!.resetMs).toBeGreaterThan(2_900);
    expect(last.outcomes[0]!.resetMs).toBeLessThanOrEqual(3_000);
  });

  it('refills at limit per window', async () => {
    const l = limits({ limit: 5, window: 1_000 });
    for (let i = 0; i < 5; i++) expect((await check(l)).allowed).toBe(true);
    expect((await check(l)).allowed).toBe(false);
    await sleep(230);
    expect((await check(l)).allowed).toBe(true);
    expect((await check(l)).allowed).toBe(false);
  });

  it('consumes nothing when any enforced policy refuses (all-or-nothing)', async () => {
    const l = limits({ limit: 10, perCaller: { limit: 2, window: 60_000, burst: 0, shadow: false } });
    expect((await check(l, 'greedy')).allowed).toBe(true);
    expect((await check(l, 'greedy')).allowed).toBe(true);
    const refused = await check(l, 'greedy');
    expect(refused.allowed).toBe(false);
    expect(refused.outcomes.map((o) => [o.policy.name, o.allowed])).toEqual([
      ['org-rate', true],
      ['caller-rate', false],
    ]);
    // The org bucket was not charged for the refused call: 8 left for everyone else.
    const other = await check(l, 'polite');
    expect(other.outcomes[0]!.remaining).toBe(7);
  });

  it('keeps callers apart within an org, and the org limit above them', async () => {
    const l = limits({ limit: 4, perCaller: { limit: 2, window: 60_000, burst: 0, shadow: false } });
    const a = await Promise.all([check(l, 'a'), check(l, 'a'), check(l, 'a')]);
    expect(a.filter((d) => d.allowed)).toHaveLength(2);
    const b = await Promise.all([check(l, 'b'), check(l, 'b'), check(l, 'b')]);
    expect(b.filter((d) => d.allowed)).toHaveLength(2);
    const c = await check(l, 'c');
    expect(c.allowed).toBe(false);
    expect(c.outcomes.find((o) => !o.allowed)?.policy.name).toBe('org-rate');
  });

  it('caps calls in flight and frees a slot on release', async () => {
    const l = limits({ limit: 100, concurrency: { limit: 2, shadow: false, lease: 60_000 } });
    const first = await check(l);
    const second = await check(l);
    const third = await check(l);
    expect([first.allowed, second.allowed, third.allowed]).toEqual([true, true, false]);
    expect(third.outcomes.find((o) => o.policy.name === 'org-concurrency')).toMatchObject({
      allowed: false,
      retryMs: 1000,
    });
    // The refused call consumed no rate either: 98 remain after two admitted calls.
    expect(third.outcomes[0]!.allowed).toBe(true);
    await first.release();
    const fourth = await check(l);
    expect(fourth.allowed).toBe(true);
    expect(fourth.outcomes[0]!.remaining).toBe(97);
  });

  it('refund gives back the rate quota and the lease a decision took, once', async () => {
    const l = limits({
      limit: 2,
      burst: 0,
      concurrency: { limit: 1, shadow: false, lease: undefined },
      perCaller: { limit: 2, window: 60_000, burst: 0, shadow: false },
    });
    const first = await check(l);
    expect(first.allowed).toBe(true);
    expect((await check(l)).allowed).toBe(false); // the lease is held
    await first.refund();
    await first.refund(); // a second refund gives nothing more
    const again = await check(l);
    expect(again.allowed).toBe(true);
    expect(again.outcomes.find((o) => o.policy.name === 'org-rate')?.remaining).toBe(1);
    expect(again.outcomes.find((o) => o.policy.name === 'caller-rate')?.remaining).toBe(1);
    await again.release();
    expect((await check(l)).allowed).toBe(true);
    expect((await check(l)).allowed).toBe(false); // org-rate used up by the two kept calls
  });

  it('one lease id frees only its own lease', async () => {
    const l = limits({ limit: 100, concurrency: { limit: 2, shadow: false, lease: undefined } });
    const a = await check(l, 'c', 'lease-a');
    const b = await check(l, 'c', 'lease-b');
    expect([a.allowed, b.allowed]).toEqual([true, true]);
    await b.release();
    await b.release();
    expect((await check(l, 'c', 'lease-c')).allowed).toBe(true);
    expect((await check(l, 'c', 'lease-d')).allowed).toBe(false); // a still holds its slot
  });

  it('expires a lease that is never released', async () => {
    const l = limits({ limit: 100, concurrency: { limit: 1, shadow: false, lease: 150 } });
    expect((await check(l)).allowed).toBe(true);
    expect((await check(l)).allowed).toBe(false);
    await sleep(200);
    expect((await check(l)).allowed).toBe(true);
  });

  it('evaluates shadow policies without blocking, reporting would-limit', async () => {
    const l = limits({ limit: 2, shadow: true });
    const results = await Promise.all(Array.from({ length: 4 }, () => check(l)));
    expect(results.every((d) => d.allowed)).toBe(true);
    expect(results.filter((d) => !d.outcomes[0]!.allowed)).toHaveLength(2);
  });
});

describe('redis limiter specifics', () => {
  it('sets a TTL on every key so idle orgs and callers vanish', async () => {
    const limiter = createRedisLimiter(client);
    const l = limits({
      limit: 10,
      window: 10_000,
      perCaller: { limit: 5, window: 5_000, burst: 0, shadow: false },
      concurrency: { limit: 3, shadow: false, lease: 20_000 },
    });
    await limiter.check({ limits: l, caller: 'c1', leaseId: 'r1' });
    const keys = [keyFor(l.org, l.rate, 'c1'), keyFor(l.org, l.perCaller!, 'c1'), keyFor(l.org, l.concurrency!, 'c1')];
    const ttls = await Promise.all(keys.map((k) => client.pttl(k)));
    expect(ttls[0]).toBeGreaterThan(0);
    expect(ttls[0]).toBeLessThanOrEqual(1_000); // one emission interval: 10 s / 10
    expect(ttls[1]).toBeGreaterThan(0);
    expect(ttls[1]).toBeLessThanOrEqual(1_000);
    expect(ttls[2]).toBeGreaterThan(19_000);
    expect(ttls[2]).toBeLessThanOrEqual(20_000);
    expect(keys.every((k) => k.startsWith(`rl:{org:${l.org}}:`))).toBe(true);
  });

  it('survives a flushed script cache (NOSCRIPT after a restart or failover)', async () => {
    const limiter = createRedisLimiter(client);
    const l = limits();
    expect((await limiter.check({ limits: l, caller: 'c', leaseId: 'r' })).allowed).toBe(true);
    await client.script('FLUSH');
    expect((await limiter.check({ limits: l, caller: 'c', leaseId: 'r2' })).allowed).toBe(true);
  });

  it('decides in one round trip of O(1) work, however many orgs and callers exist', async () => {
    const limiter = createRedisLimiter(client);
    const stats = async () => {
      const info = await client.info('commandstats');
      const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
      // Every command Redis ran, including the ones inside the script.
      const all = [...info.matchAll(/calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      return { scripts: calls('evalsha') + calls('eval'), all };
    };
    const batch = async () => {
      const l = limits({
        perCaller: { limit: 5, window: 60_000, burst: 0, shadow: false },
        concurrency: { limit: 3, shadow: false },
      });
      const before = await stats();
      for (let i = 0; i < 10; i++) await limiter.check({ limits: l, caller: 'c', leaseId: `x${i}` });
      const after = await stats();
      return { scripts: after.scripts - before.scripts, all: after.all - before.all };
    };
    const fill = async (n: number) => {
      for (let i = 0; i < n; i++) await limiter.check({ limits: limits(), caller: `c${i}`, leaseId: `r${i}` });
    };
    await fill(100);
    const small = await batch();
    await fill(1_000);
    const large = await batch();
    // One script call per decision: one round trip.
    expect(small.scripts).toBe(10);
    expect(large.scripts).toBe(10);
    // The same work inside Redis with 100 or 1,100 orgs stored.
    expect(large.all).toBe(small.all);
  });
});

describe('memory limiter specifics', () => {
  it('holds at most maxKeys keys', async () => {
    const limiter = createMemoryLimiter({ maxKeys: 50 });
    for (let i = 0; i < 500; i++) await limiter.check({ limits: limits(), caller: 'c', leaseId: `r${i}` });
    expect(limiter.size()).toBe(50);
  });
});
