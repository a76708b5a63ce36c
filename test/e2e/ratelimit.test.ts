// Rate limiting through the gateway: 429s that reach nothing, headers on every authorized answer, shadow mode,
// concurrency, and Redis outages.
import { request as httpRequest } from 'node:http';
import { beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { resumeNewRun, send, type Reply } from '../helpers/http.js';
import { freePort } from '../helpers/redis-server.js';
import { poll, sleep } from '../helpers/wait.js';
import { closedAfterEach, useWorld } from '../helpers/world.js';

const world = useWorld();
const open = closedAfterEach();

beforeEach(async () => {
  await world.admin.flushall();
  world.standIn.setFault(undefined);
});

/** A gateway whose Acme-Prod has `rateLimit`; Redis unless `withRedis` is false. */
async function gateway(
  rateLimit: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  withRedis = true,
): Promise<TestGateway> {
  const doc = baseConfig(world.standIn, world.issuer, {
    ...(withRedis ? { redis: { url: world.redis.url, commandTimeout: '100ms' } } : {}),
    admin: { host: '127.0.0.1', port: 0 },
    ...extra,
  });
  const orgs = doc.orgs as Record<string, Record<string, unknown>>;
  orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit };
  const gw = await startTestGateway(doc);
  open.push(gw);
  return gw;
}

const call = (gw: TestGateway, token = world.jwt, headers: Record<string, string> = {}) =>
  resumeNewRun(gw.url, world.standIn, token, { headers });

async function metricsText(gw: TestGateway): Promise<string> {
  return (await send(`http://127.0.0.1:${gw.gateway.adminPort}`, 'GET', '/metrics')).text;
}

describe('enforcement', () => {
  it(
    'admits limit + burst, ' +
      'then answers 429 problem+json with Retry-After and RateLimit fields, forwarding nothing',
    async () => {
      const gw = await gateway({ limit: 3, window: '60s', burst: 1 });
      const before = world.standIn.startCalls().length;
      const replies: Reply[] = [];
      for (let i = 0; i < 6; i++) replies.push(await call(gw));
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 429, 429]);
      expect(world.standIn.startCalls().length - before).toBe(4);

      expect(replies[0]!.headers['ratelimit-policy']).toMatch(/^"org-rate";q=3;w=60;pk=:[A-Za-z0-9+/]{16}:$/);
      expect(replies.slice(0, 4).map((r) => /r=(\d+)/.exec(String(r.headers.ratelimit))?.[1])).toEqual([
        '3',
        '2',
        '1',
        '0',
      ]);
      expect(String(replies[0]!.headers['ratelimit-policy'])).not.toContain('Acme');

      const limited = replies[4]!;
      expect(limited.headers['content-type']).toBe('application/problem+json');
      expect(limited.json).toMatchObject({
        type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
        status: 429,
        code: 'quota_exceeded',
        'violated-policies': ['org-rate'],
      });
      expect(limited.json.detail).toContain('Retry after');
      // One request's worth returns every 60 s / 3 = 20 s.
      expect(limited.headers['retry-after']).toMatch(/^(19|20)$/);
      expect(limited.headers.ratelimit).toMatch(/^"org-rate";r=0;t=\d+;pk=/);
      expect(gw.audit.at(-1)).toMatchObject({
        decision: 'rate_limited',
        reason: 'quota_exceeded',
        status: 429,
        rateLimit: { outcome: 'limited', policies: ['org-rate'] },
      });
    },
  );

  it('never charges the quota for 400, 401 or 403 answers', async () => {
    const gw = await gateway({ limit: 2, window: '60s' });
    const stranger = await world.issuer.mint({ sub: 'svc-stranger' });
    for (let i = 0; i < 5; i++) {
      expect((await call(gw, 'not-a-token')).status).toBe(401);
      expect((await call(gw, stranger)).status).toBe(403);
      expect(
        (
          await send(gw.url, 'POST', '/api/1/rest/public/runtime/start/Acme-Prod/..', {
            headers: { authorization: `Bearer ${world.jwt}` },
          })
        ).status,
      ).toBe(400);
    }
    expect((await call(gw)).status).toBe(200);
    expect((await call(gw)).status).toBe(200);
    expect((await call(gw)).status).toBe(429);
  });

  it('puts the RateLimit fields on upstream errors too, and does not refund them', async () => {
    const gw = await gateway({ limit: 2, window: '60s' });
    world.standIn.setFault({ kind: 'status', status: 503, count: 1 });
    const failed = await call(gw);
    expect(failed.status).toBe(503);
    expect(failed.headers.ratelimit).toMatch(/"org-rate";r=1;/);
    world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
    const rejected = await call(gw);
    expect(rejected.status).toBe(502);
    expect(rejected.headers.ratelimit).toMatch(/"org-rate";r=0;/);
    expect((await call(gw)).status).toBe(429);
  });

  it('limits each caller within the org when perCaller is set', async () => {
    const gw = await gateway({ limit: 10, window: '60s', perCaller: { limit: 2, window: '60s' } });
    const other = await world.issuer.mint({
      sub: 'svc-billing-2',
      scope: 'snaplogic:runtime:start',
      groups: ['data-eng'],
    });
    expect((await call(gw)).status).toBe(200);
    expect((await call(gw)).status).toBe(200);
    const limited = await call(gw);
    expect(limited.status).toBe(429);
    expect(limited.json['violated-policies']).toEqual(['caller-rate']);
    expect((await call(gw, other)).status).toBe(200);
  });

  it('uses the in-process limiter when no Redis is configured', async () => {
    const gw = await gateway({ limit: 2, window: '60s' }, {}, false);
    expect([(await call(gw)).status, (await call(gw)).status, (await call(gw)).status]).toEqual([200, 200, 429]);
    expect(gw.logs.some((l) => l.msg === 'rate limits are enforced per instance: no redis is configured')).toBe(true);
  });
});

describe('shadow mode', () => {
  it('never blocks, and reports would-limit in the RateLimit field, the audit event and metrics', async () => {
    const gw = await gateway({ limit: 2, window: '60s', shadow: true });
    const replies: Reply[] = [];
    for (let i = 0; i < 5; i++) replies.push(await call(gw));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(replies[0]!.headers['ratelimit-policy']).toContain(';sg-shadow');
    expect(replies[1]!.headers.ratelimit).not.toContain('sg-would-limit');
    expect(replies[4]!.headers.ratelimit).toContain('sg-would-limit');
    expect(gw.audit.at(-1)).toMatchObject({
      decision: 'allowed',
      rateLimit: { outcome: 'would_limit', policies: ['org-rate'] },
    });
    const metrics = await metricsText(gw);
    expect(metrics).toContain(
      'snapgate_ratelimit_decisions_total{org="Acme-Prod",policy="org-rate",outcome="would_limit"} 3',
    );
    expect(metrics).toContain(
      'snapgate_ratelimit_decisions_total{org="Acme-Prod",policy="org-rate",outcome="allowed"} 2',
    );
  });
});

describe('concurrency cap', () => {
  it('refuses a call while the cap is in flight at SnapLogic, and admits again when it ends', async () => {
    const gw = await gateway({ limit: 100, window: '60s', concurrency: 1 });
    world.standIn.setFault({ kind: 'latency', ms: 400, count: 1 });
    const slow = call(gw);
    await sleep(100);
    const refused = await call(gw);
    expect(refused.status).toBe(429);
    expect(refused.json['violated-policies']).toEqual(['org-concurrency']);
    expect(refused.headers['ratelimit-policy']).toContain('"org-concurrency";q=1;qu="concurrent-requests"');
    expect((await slow).status).toBe(200);
    await sleep(20);
    expect((await call(gw)).status).toBe(200);
  });

  it('frees the slot when the caller hangs up', async () => {
    const gw = await gateway({ limit: 100, window: '60s', concurrency: 1 });
    world.standIn.setFault({ kind: 'hang', count: 1 });
    const u = new URL(gw.url);
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: `/api/1/rest/public/runtime/start/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`,
      headers: { authorization: `Bearer ${world.jwt}` },
    });
    req.on('error', () => {});
    req.end();
    await sleep(200);
    expect((await call(gw)).status).toBe(429);
    req.destroy();
    await sleep(200);
    const after = await call(gw);
    expect(after.status, after.text).toBe(200);
    expect(gw.audit.some((e) => e.reason === 'client_closed_request')).toBe(true);
  });
});

describe('Redis outage', () => {
  /** A gateway whose Acme-Prod allows `limit` per 60 s with `onRedisError: mode`, having answered one call. */
  async function answeringGateway(limit: number, mode: 'open' | 'closed'): Promise<TestGateway> {
    const gw = await gateway({ limit, window: '60s', onRedisError: mode }, { rateLimiting: { breakerOpenFor: '2s' } });
    expect((await call(gw)).status).toBe(200);
    return gw;
  }

  /** Runs `check` with Redis killed; Redis is restarted (empty) afterwards, whatever `check` does. */
  async function whileRedisIsDown(check: () => Promise<void>): Promise<void> {
    await world.redis.kill();
    try {
      await check();
    } finally {
      await world.redis.restart();
    }
  }

  it("local mode with server.workers: each worker process takes its share of the instance's share", async () => {
    // Redis never reachable: every decision is the fallback's. One instance of two workers: 12 / 2 = 6 here.
    const doc = baseConfig(world.standIn, world.issuer, {
      server: { host: '127.0.0.1', port: 0, workers: 2 },
      redis: { url: `redis://127.0.0.1:${await freePort()}`, commandTimeout: '100ms', connectTimeout: '200ms' },
    });
    const orgs = doc.orgs as Record<string, Record<string, unknown>>;
    orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit: { limit: 12, window: '60s', onRedisError: 'local' } };
    const gw = await startTestGateway(doc);
    open.push(gw);
    const replies: Reply[] = [];
    for (let i = 0; i < 8; i++) replies.push(await call(gw));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    expect(replies.every((r) => r.headers['x-snapgate-ratelimit-degraded'] === 'local')).toBe(true);
  });

  it(
    'local mode: no request waits on the dead Redis, ' +
      'limits fall back to limit / expectedInstances, and exact limits return with Redis',
    async () => {
      const gw = await gateway(
        { limit: 10, window: '60s', onRedisError: 'local' },
        { rateLimiting: { expectedInstances: 2, breakerOpenFor: '300ms' } },
      );
      expect((await call(gw)).headers['x-snapgate-ratelimit-degraded']).toBeUndefined();

      // Kill Redis in the middle of a load of concurrent calls.
      const latencies: number[] = [];
      const statuses: number[] = [];
      const load = async () => {
        for (let i = 0; i < 6; i++) {
          const started = Date.now();
          const r = await call(gw);
          latencies.push(Date.now() - started);
          statuses.push(r.status);
        }
      };
      const workers = Promise.all([load(), load(), load()]);
      await sleep(5);
      await world.redis.kill();
      await workers;
      expect(
        statuses.every((s) => s === 200 || s === 429),
        statuses.join(),
      ).toBe(true);
      expect(Math.max(...latencies)).toBeLessThan(600);

      // While degraded: this instance admits its share, 10 / 2 = 5, then 429, each answer immediate.
      const degradedStarted = Date.now();
      const during: Reply[] = [];
      for (let i = 0; i < 8; i++) during.push(await call(gw));
      expect((Date.now() - degradedStarted) / 8).toBeLessThan(100);
      expect(during.every((r) => r.headers['x-snapgate-ratelimit-degraded'] === 'local')).toBe(true);
      expect(during.filter((r) => r.status === 200).length).toBeLessThanOrEqual(5);
      expect(during.at(-1)!.status).toBe(429);
      expect(during.at(-1)!.headers.ratelimit).toContain('sg-degraded="local"');
      expect(gw.logs.filter((l) => String(l.msg).startsWith('rate limiter degraded'))).toHaveLength(1);
      expect(await metricsText(gw)).toMatch(/snapgate_ratelimit_degraded 1/);

      // Redis comes back (empty): the breaker probes it and limits are exact and shared again.
      await world.redis.restart();
      await world.admin.ping().catch(() => undefined);
      const back = await poll(
        () => call(gw),
        (r) => r.headers['x-snapgate-ratelimit-degraded'] === undefined,
        5_000,
        100,
      );
      expect(back.headers['x-snapgate-ratelimit-degraded']).toBeUndefined();
      expect(gw.logs.filter((l) => l.msg === 'rate limiter back on redis')).toHaveLength(1);
      const statusesAfter: number[] = [back.status];
      for (let i = 0; i < 12; i++) statusesAfter.push((await call(gw)).status);
      expect(statusesAfter.filter((s) => s === 200)).toHaveLength(10);
      expect(await metricsText(gw)).toMatch(/snapgate_ratelimit_degraded 0/);
    },
  );

  it('closed mode: 503 temporary-reduced-capacity with Retry-After, nothing forwarded', async () => {
    const gw = await answeringGateway(10, 'closed');
    await whileRedisIsDown(async () => {
      const before = world.standIn.startCalls().length;
      const started = Date.now();
      const refused = await call(gw);
      expect(Date.now() - started).toBeLessThan(500);
      expect(refused.status).toBe(503);
      expect(refused.json).toMatchObject({
        type: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
        code: 'temporary_reduced_capacity',
      });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect((await call(gw)).status).toBe(503);
      expect(world.standIn.startCalls().length).toBe(before);
      expect(gw.audit.at(-1)).toMatchObject({ decision: 'unavailable', reason: 'temporary_reduced_capacity' });
    });
  });

  it('open mode (explicit opt-in): admits, marking the answer as degraded', async () => {
    const gw = await answeringGateway(1, 'open');
    await whileRedisIsDown(async () => {
      const replies = [await call(gw), await call(gw), await call(gw)];
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(replies.every((r) => r.headers['x-snapgate-ratelimit-degraded'] === 'open')).toBe(true);
    });
  });
});

describe('action groups on a shared Redis: reads never eat the resume quota', () => {
  const policy = [
    {
      match: { sub: 'svc-billing' },
      orgs: ['Acme-Prod'],
      actions: ['runtime.start', 'runtime.status', 'runtime.list'],
    },
  ];
  const status = (gw: TestGateway, ruuid: string) =>
    send(gw.url, 'GET', `/api/1/rest/public/runtime/Acme-Prod/${ruuid}?level=summary`, {
      headers: { authorization: `Bearer ${world.jwt}` },
    });

  it('two instances: reads count against the reads bucket only, resumes against the writes bucket only', async () => {
    const limits = { limit: 2, window: '60s', reads: { limit: 3, window: '60s' } };
    const a = await gateway(limits, { policy });
    const b = await gateway(limits, { policy });
    const ruuid = world.standIn.addRun('Acme-Prod', 'Suspended');
    const reads = [];
    for (const gw of [a, b, a, b, a]) reads.push(await status(gw, ruuid));
    expect(reads.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    expect(reads[3]!.json).toMatchObject({ code: 'quota_exceeded' });
    expect(reads[3]!.json.detail).toContain('for reads');
    // The reads' bucket is full, yet both resumes the writes allow go through, on either instance.
    const resumes = [await call(a), await call(b), await call(a)];
    expect(resumes.map((r) => r.status)).toEqual([200, 200, 429]);
    const keys = await world.admin.keys('rl:{org:Acme-Prod}:*');
    expect(keys.sort()).toEqual(['rl:{org:Acme-Prod}:rate', 'rl:{org:Acme-Prod}:reads:rate']);
    // Each answer names its own group's policy: the partition keys differ.
    const pk = (r: Reply) => /pk=(:[^:]+:)/.exec(String(r.headers['ratelimit-policy']))?.[1];
    expect(pk(reads[0]!)).toBeDefined();
    expect(pk(resumes[0]!)).toBeDefined();
    expect(pk(reads[0]!)).not.toBe(pk(resumes[0]!));
  });

  it('without rateLimit.reads, reads are not limited and leave the resume quota whole', async () => {
    const gw = await gateway({ limit: 1, window: '60s' }, { policy });
    const ruuid = world.standIn.addRun('Acme-Prod', 'Suspended');
    for (let i = 0; i < 5; i++) {
      const r = await status(gw, ruuid);
      expect(r.status).toBe(200);
      expect(r.headers['ratelimit-policy']).toBeUndefined();
    }
    expect((await call(gw)).status).toBe(200);
    expect((await call(gw)).status).toBe(429);
  });
});
