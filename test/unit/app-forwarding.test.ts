// An authorized call in-process, from the rate-limit decision on: the real memory limiter with limits compiled from
// config (org rate, per-caller rate, concurrency) and refusals that reach nothing; a limiter that cannot be used
// (closed mode); the write-ahead attempt an audit trail cannot take (nothing forwarded, quota given back); SnapLogic
// refusing the stored credentials, its own errors passed through, and a pod that cannot be reached. The real forwarder
// talks to the stand-in (or to a closed port); a fake one stands in where a failure is easier to provoke that way.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { RateLimiter } from '../../src/ratelimit/limits.js';
import { createMemoryLimiter } from '../../src/ratelimit/memory-limiter.js';
import { createResilientLimiter } from '../../src/ratelimit/resilient-limiter.js';
import { testSecrets } from '../helpers/gateway.js';
import {
  BILLING,
  closedPort,
  DATA_ENG,
  expectNoSecrets,
  expectProblem,
  FakeForwarder,
  onlyDecision,
  UnavailableLimiter,
  useInProcess,
  type InProcessApp,
  type Reply,
  onAcme,
} from '../helpers/in-process.js';

const world = useInProcess();
const limited = { 'Acme-Prod': { rateLimit: { limit: 3, window: '60s' } } };
const QUOTA_TYPE = 'https://iana.org/assignments/http-problem-types#quota-exceeded';

async function acmeWith(rateLimit: Record<string, unknown>): Promise<InProcessApp> {
  return world.app({ orgs: { 'Acme-Prod': { rateLimit } } });
}

/** A resume of a new Acme-Prod run (by svc-billing unless `token` says otherwise). */
const resumeAcme = async (gw: InProcessApp, token?: string): Promise<Reply> =>
  gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token: token ?? (await world.signer.mint()) });

/** `r` of one policy in a RateLimit field. */
function remaining(reply: Reply, policy: string): number | undefined {
  const m = new RegExp(`"${policy}";r=(\\d+)`).exec(reply.headers.get('ratelimit') ?? '');
  return m ? Number(m[1]) : undefined;
}

describe('org rate', () => {
  it('admits limit + burst, then 429 quota_exceeded with Retry-After and RateLimit, nothing forwarded', async () => {
    const gw = await acmeWith({ limit: 2, window: '60s', burst: 1 });
    const token = await world.signer.mint();
    const admitted = [await resumeAcme(gw, token), await resumeAcme(gw, token), await resumeAcme(gw, token)];
    expect(admitted.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(admitted.map((r) => remaining(r, 'org-rate'))).toEqual([2, 1, 0]);

    const before = world.standIn.received.length;
    const ruuid = world.standIn.addRun('Acme-Prod');
    const refused = await gw.resume('Acme-Prod', ruuid, { token });
    expectProblem(refused, 429, 'quota_exceeded');
    expect(refused.json).toMatchObject({ type: QUOTA_TYPE, 'violated-policies': ['org-rate'] });
    expect(refused.json.detail).toContain('2 per 1 min (+1 burst)');
    // One call's worth comes back every 60 s / 2 = 30 s.
    expect(refused.headers.get('retry-after')).toMatch(/^(29|30)$/);
    expect(refused.headers.get('ratelimit-policy')).toMatch(/^"org-rate";q=2;w=60;pk=:[A-Za-z0-9+/]{16}:$/);
    expect(refused.headers.get('ratelimit')).toMatch(/^"org-rate";r=0;t=\d+;pk=:/);
    expect(world.standIn.received.length).toBe(before);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    expect(onlyDecision(gw.audit, refused)).toMatchObject({
      decision: 'rate_limited',
      reason: 'quota_exceeded',
      status: 429,
      ...onAcme(ruuid, 'svc-billing'),
      rateLimit: { outcome: 'limited', policies: ['org-rate'] },
    });
  });

  it('never charges the quota for 400, 401, 403 or 413 answers', async () => {
    const gw = await acmeWith({ limit: 1, window: '60s' });
    const token = await world.signer.mint();
    const stranger = await world.signer.mint({ sub: 'svc-stranger' });
    const ruuid = world.standIn.addRun('Acme-Prod');
    for (let i = 0; i < 3; i++) {
      expect((await gw.resume('Acme-Prod', ruuid, { token: 'not-a-token' })).status).toBe(401);
      expect((await gw.resume('Acme-Prod', ruuid, { token: stranger })).status).toBe(403);
      expect((await gw.resume('Acme-Prod', 'not-a-ruuid', { token })).status).toBe(400);
      expect((await gw.resume('Acme-Prod', ruuid, { token, body: 'x'.repeat(2_000) })).status).toBe(413);
    }
    const first = await gw.resume('Acme-Prod', ruuid, { token });
    expect(first.status, first.text).toBe(200);
    expect(remaining(first, 'org-rate')).toBe(0);
    expectProblem(await resumeAcme(gw, token), 429, 'quota_exceeded');
  });

  it('keeps every org to its own quota', async () => {
    const gw = await world.app({
      orgs: {
        'Acme-Prod': { rateLimit: { limit: 1, window: '60s' } },
        'Other-Org': { rateLimit: { limit: 1, window: '60s' } },
      },
    });
    const token = await world.signer.mint(DATA_ENG);
    expect((await resumeAcme(gw, token)).status).toBe(200);
    expectProblem(await resumeAcme(gw, token), 429, 'quota_exceeded');
    const other = await gw.resume('Other-Org', world.standIn.addRun('Other-Org'), { token });
    expect(other.status, other.text).toBe(200);
    expect(other.headers.get('ratelimit-policy')).not.toBe(
      (await resumeAcme(gw, token)).headers.get('ratelimit-policy'),
    );
  });

  it('reports a shadow policy that would refuse, and forwards anyway', async () => {
    const gw = await acmeWith({ limit: 1, window: '60s', shadow: true });
    const token = await world.signer.mint();
    const first = await resumeAcme(gw, token);
    const second = await resumeAcme(gw, token);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(first.headers.get('ratelimit-policy')).toContain(';sg-shadow');
    expect(first.headers.get('ratelimit')).not.toContain('sg-would-limit');
    expect(second.headers.get('ratelimit')).toContain('sg-would-limit');
    expect(gw.audit.of(second.requestId).map((e) => [e.type, e.rateLimit?.outcome])).toEqual([
      ['attempt', 'would_limit'],
      ['outcome', 'would_limit'],
    ]);
  });
});

describe('per-caller rate', () => {
  it('limits each caller within the org separately, with a partition key per caller', async () => {
    const gw = await acmeWith({ limit: 10, window: '60s', perCaller: { limit: 1, window: '60s' } });
    const billing = await world.signer.mint(BILLING);
    const dataEng = await world.signer.mint(DATA_ENG);
    const first = await resumeAcme(gw, billing);
    expect(first.status, first.text).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toMatch(
      /^"org-rate";q=10;w=60;pk=:.+:, "caller-rate";q=1;w=60;pk=:.+:$/,
    );

    const refused = await resumeAcme(gw, billing);
    expectProblem(refused, 429, 'quota_exceeded');
    expect(refused.json['violated-policies']).toEqual(['caller-rate']);
    expect(refused.json.detail).toContain('for each caller');
    expect(onlyDecision(gw.audit, refused)).toMatchObject({
      caller: { sub: 'svc-billing' },
      rateLimit: { outcome: 'limited', policies: ['caller-rate'] },
    });

    const other = await resumeAcme(gw, dataEng);
    expect(other.status, other.text).toBe(200);
    expect(remaining(other, 'caller-rate')).toBe(0);
    // Nine of the org's ten are left after the two admitted calls: the refused one took nothing.
    expect(remaining(other, 'org-rate')).toBe(8);
    const callerKey = (r: Reply) => /"caller-rate";q=1;w=60;pk=(:[^:]+:)/.exec(r.headers.get('ratelimit-policy')!)?.[1];
    expect(callerKey(other)).toBeDefined();
    expect(callerKey(other)).not.toBe(callerKey(first));
  });
});

describe('concurrency', () => {
  it('refuses a call while the cap is in flight at SnapLogic, and admits again once it has answered', async () => {
    const gw = await acmeWith({ limit: 100, window: '60s', concurrency: 1 });
    const token = await world.signer.mint();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const atSnapLogic = new Promise<void>((r) => (arrived = r));
    world.standIn.onRequest = () => {
      arrived();
      return held;
    };
    const slow = resumeAcme(gw, token);
    await atSnapLogic;
    world.standIn.onRequest = undefined;
    expect(gw.inFlight.size).toBe(1);

    const before = world.standIn.received.length;
    const refused = await resumeAcme(gw, token);
    expectProblem(refused, 429, 'quota_exceeded');
    expect(refused.json['violated-policies']).toEqual(['org-concurrency']);
    expect(refused.headers.get('ratelimit-policy')).toContain('"org-concurrency";q=1;qu="concurrent-requests"');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, refused)).toMatchObject({
      rateLimit: { outcome: 'limited', policies: ['org-concurrency'] },
    });

    release();
    expect((await slow).status).toBe(200);
    const after = await resumeAcme(gw, token);
    expect(after.status, after.text).toBe(200);
    expect(remaining(after, 'org-concurrency')).toBe(0);
  });
});

describe('a limiter that cannot be used', () => {
  it('in closed mode refuses with 503 temporary_reduced_capacity and Retry-After, forwarding nothing', async () => {
    const limiter = new UnavailableLimiter(2_500);
    const gw = await world.app({
      orgs: { 'Acme-Prod': { rateLimit: { limit: 10, window: '60s', onRedisError: 'closed' } } },
      limiter,
    });
    const before = world.standIn.received.length;
    const ruuid = world.standIn.addRun('Acme-Prod');
    const refused = await gw.resume('Acme-Prod', ruuid, { token: await world.signer.mint() });
    expectProblem(refused, 503, 'temporary_reduced_capacity');
    expect(refused.json.type).toBe('https://iana.org/assignments/http-problem-types#temporary-reduced-capacity');
    expect(refused.headers.get('retry-after')).toBe('3');
    expect(refused.headers.get('ratelimit')).toBeNull();
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, refused)).toMatchObject({
      decision: 'unavailable',
      reason: 'temporary_reduced_capacity',
      status: 503,
      caller: { sub: 'svc-billing' },
      org: 'Acme-Prod',
      ruuid,
      rateLimit: { outcome: 'unavailable', policies: [] },
    });
    // The limiter was asked once, with opaque keys: no claim text, not the caller's request id.
    expect(limiter.checks).toHaveLength(1);
    const [check] = limiter.checks;
    expect(check!.limits.org).toBe('Acme-Prod');
    expect(check!.caller).not.toContain('svc-billing');
    expect(check!.leaseId).not.toBe(refused.requestId);
  });

  it('is never asked about an org without limits', async () => {
    const limiter = new UnavailableLimiter();
    const gw = await world.app({ limiter });
    const reply = await resumeAcme(gw, await world.signer.mint());
    expect(reply.status, reply.text).toBe(200);
    expect(limiter.checks).toEqual([]);
  });

  it('behind the real breaker: a closed org is refused, a local org is limited in-process and says so', async () => {
    const down: RateLimiter = {
      check: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
    };
    const gw = await world.app({
      orgs: {
        'Acme-Prod': { rateLimit: { limit: 10, window: '60s', onRedisError: 'closed' } },
        'Other-Org': { rateLimit: { limit: 1, window: '60s', onRedisError: 'local' } },
      },
      limiter: ({ log, metrics }) =>
        createResilientLimiter({
          primary: down,
          local: createMemoryLimiter({ maxKeys: 100 }),
          expectedInstances: 1,
          openForMs: 1_000,
          log,
          metrics,
        }),
    });
    const token = await world.signer.mint(DATA_ENG);
    const closed = await resumeAcme(gw, token);
    expectProblem(closed, 503, 'temporary_reduced_capacity');
    expect(Number(closed.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    const local = await gw.resume('Other-Org', world.standIn.addRun('Other-Org'), { token });
    expect(local.status, local.text).toBe(200);
    expect(local.headers.get('x-snapgate-ratelimit-degraded')).toBe('local');
    expect(local.headers.get('ratelimit')).toContain('sg-degraded="local"');
    expect(gw.audit.of(local.requestId).at(-1)?.rateLimit).toEqual({
      outcome: 'allowed',
      policies: [],
      degraded: 'local',
    });
    const second = await gw.resume('Other-Org', world.standIn.addRun('Other-Org'), { token });
    expectProblem(second, 429, 'quota_exceeded');
    expect(gw.logs.filter((l) => String(l.msg).startsWith('rate limiter degraded'))).toHaveLength(1);
  });
});

describe('an audit trail that cannot record the attempt', () => {
  it('is 503 audit_unavailable with Retry-After: nothing forwarded, a decision written, quota given back', async () => {
    const gw = await world.app({ orgs: limited });
    gw.audit.refuseAttempts = { recorded: false };
    const before = world.standIn.received.length;
    const ruuid = world.standIn.addRun('Acme-Prod');
    const refused = await gw.resume('Acme-Prod', ruuid, { token: await world.signer.mint() });
    expectProblem(refused, 503, 'audit_unavailable');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(world.standIn.received.length).toBe(before);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    expect(gw.audit.attempts).toEqual([]);
    expect(onlyDecision(gw.audit, refused)).toMatchObject({
      decision: 'unavailable',
      reason: 'audit_unavailable',
      status: 503,
      ...onAcme(ruuid, 'svc-billing'),
      rateLimit: { outcome: 'allowed', policies: [] },
    });
    expect(gw.logs.some((l) => l.msg === 'request failed' && l.code === 'audit_unavailable')).toBe(true);

    gw.audit.refuseAttempts = undefined;
    const next = await resumeAcme(gw);
    expect(next.status, next.text).toBe(200);
    // Three per window: the refused call took nothing.
    expect(remaining(next, 'org-rate')).toBe(2);
  });

  it('ends with an outcome that refers to the attempt when the refused attempt is still queued', async () => {
    const gw = await world.app();
    gw.audit.refuseAttempts = { recorded: true };
    const before = world.standIn.received.length;
    const refused = await resumeAcme(gw);
    expectProblem(refused, 503, 'audit_unavailable');
    expect(world.standIn.received.length).toBe(before);
    const events = gw.audit.of(refused.requestId);
    expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
    expect(events[1]).toMatchObject({
      attemptId: events[0]!.id,
      decision: 'unavailable',
      reason: 'audit_unavailable',
      status: 503,
      upstreamStatus: null,
    });
  });
});

describe('SnapLogic refusing the stored credentials', () => {
  it('a 401 from SnapLogic → 502 upstream_credentials_rejected, no WWW-Authenticate, outcome, log line', async () => {
    const gw = await world.app({ orgs: limited });
    world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, 'rotated-elsewhere');
    try {
      const before = world.standIn.startCalls().length;
      const reply = await resumeAcme(gw);
      expectProblem(reply, 502, 'upstream_credentials_rejected');
      expect(reply.json.upstreamStatus).toBe(401);
      expect(reply.headers.get('www-authenticate')).toBeNull();
      // It was forwarded, and counted: the RateLimit fields are on the answer.
      expect(world.standIn.startCalls().length - before).toBe(1);
      expect(remaining(reply, 'org-rate')).toBe(2);
      const [attempt, outcome] = gw.audit.of(reply.requestId);
      expect(outcome).toMatchObject({
        type: 'outcome',
        attemptId: attempt!.id,
        decision: 'upstream_error',
        reason: 'upstream_credentials_rejected',
        status: 502,
        upstreamStatus: 401,
        slStatusCode: '401',
        caller: { sub: 'svc-billing' },
        org: 'Acme-Prod',
      });
      const warning = gw.logs.find((l) => l.msg === 'SnapLogic rejected the stored credentials; rotate the org secret');
      expect(warning).toMatchObject({ org: 'Acme-Prod', credentialVersion: 1, upstreamStatus: 401 });
    } finally {
      world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
    }
  });

  it('403 from SnapLogic (Basic disabled) → 502 upstream_credentials_rejected', async () => {
    const gw = await world.app();
    world.standIn.setFault({ kind: 'status', status: 403, count: 1 });
    const reply = await resumeAcme(gw);
    expectProblem(reply, 502, 'upstream_credentials_rejected');
    expect(reply.json.upstreamStatus).toBe(403);
    expect(gw.audit.of(reply.requestId).at(-1)).toMatchObject({
      decision: 'upstream_error',
      reason: 'upstream_credentials_rejected',
      upstreamStatus: 403,
    });
  });
});

describe("SnapLogic's own answers", () => {
  it('passes a 5xx through with its status, body, Retry-After and X-SL-StatusCode, but not its cookie', async () => {
    const gw = await world.app({ orgs: limited });
    world.standIn.setFault({ kind: 'status', status: 503, count: 1, retryAfter: 7 });
    const reply = await resumeAcme(gw);
    expect(reply.status, reply.text).toBe(503);
    expect(reply.headers.get('content-type')).toBe('application/json');
    expect(reply.json).toEqual({
      response_map: { error_list: [{ message: 'Injected failure' }] },
      http_status_code: 503,
    });
    expect(reply.headers.get('retry-after')).toBe('7');
    expect(reply.headers.get('x-sl-statuscode')).toBe('503');
    expect(reply.headers.get('set-cookie')).toBeNull();
    expect(reply.requestId).toBe(reply.sentRequestId);
    // A call that reached SnapLogic keeps its quota, whatever SnapLogic answered.
    expect(remaining(reply, 'org-rate')).toBe(2);
    const [attempt, outcome] = gw.audit.of(reply.requestId);
    expect(outcome).toMatchObject({
      type: 'outcome',
      attemptId: attempt!.id,
      decision: 'allowed',
      reason: null,
      status: 503,
      upstreamStatus: 503,
      slStatusCode: '503',
    });
  });

  it('passes a 409 for a run that is not Suspended through unchanged', async () => {
    const gw = await world.app();
    const ruuid = world.standIn.addRun('Acme-Prod', 'Completed');
    const reply = await gw.resume('Acme-Prod', ruuid, { token: await world.signer.mint() });
    expect(reply.status, reply.text).toBe(409);
    expect(reply.json.response_map.error_list[0].message).toContain('not Suspended');
    expect(gw.audit.of(reply.requestId).at(-1)).toMatchObject({
      status: 409,
      upstreamStatus: 409,
      decision: 'allowed',
    });
  });
});

describe('the connection to SnapLogic', () => {
  it('a closed port → 502 upstream_unreachable, after the attempt was written; never sent, so refunded', async () => {
    const gw = await world.app({ pod: `http://127.0.0.1:${await closedPort()}`, orgs: limited });
    const reply = await resumeAcme(gw);
    expectProblem(reply, 502, 'upstream_unreachable');
    expect(reply.json.detail).toContain('nothing was sent');
    const [attempt, outcome] = gw.audit.of(reply.requestId);
    expect(outcome).toMatchObject({
      type: 'outcome',
      attemptId: attempt!.id,
      decision: 'upstream_error',
      reason: 'upstream_unreachable',
      status: 502,
      upstreamStatus: null,
      org: 'Acme-Prod',
    });
    expect(remaining(reply, 'org-rate')).toBe(2);
    // No connection was made, so nothing reached SnapLogic: the quota comes back.
    const again = await resumeAcme(gw);
    expectProblem(again, 502, 'upstream_unreachable');
    expect(remaining(again, 'org-rate')).toBe(2);
  });

  it('all connections busy (never sent) → 503 upstream_busy, and the quota is given back', async () => {
    const busy = new GatewayError('upstream_busy', 'all connections are busy', { headers: { 'retry-after': '1' } });
    const forwarder = new FakeForwarder(FakeForwarder.failing(busy, false));
    const gw = await world.app({ orgs: limited, forwarder });
    const reply = await resumeAcme(gw);
    expectProblem(reply, 503, 'upstream_busy');
    expect(reply.headers.get('retry-after')).toBe('1');
    expect(forwarder.calls).toHaveLength(1);
    expect(forwarder.calls[0]!.headers.authorization).toMatch(/^Basic /);
    expect(gw.audit.of(reply.requestId).at(-1)).toMatchObject({
      type: 'outcome',
      decision: 'unavailable',
      reason: 'upstream_busy',
    });
    forwarder.answer = FakeForwarder.resumed();
    const next = await resumeAcme(gw);
    expect(next.status, next.text).toBe(200);
    expect(remaining(next, 'org-rate')).toBe(2);
  });

  it('no answer in time (sent) → 504 upstream_timeout, and the quota is kept', async () => {
    const timeout = new GatewayError('upstream_timeout', 'SnapLogic did not answer in time.');
    const forwarder = new FakeForwarder(FakeForwarder.failing(timeout, true));
    const gw = await world.app({ orgs: limited, forwarder });
    const reply = await resumeAcme(gw);
    expectProblem(reply, 504, 'upstream_timeout');
    expect(remaining(reply, 'org-rate')).toBe(2);
    expect(gw.audit.of(reply.requestId).at(-1)).toMatchObject({
      decision: 'upstream_error',
      reason: 'upstream_timeout',
      status: 504,
    });
    forwarder.answer = FakeForwarder.resumed();
    expect(remaining(await resumeAcme(gw), 'org-rate')).toBe(1);
  });
});

describe('secrets', () => {
  it('leaves no org password, Basic value or caller token in any answer, header or audit event of this file', () => {
    expectNoSecrets();
  });
});
