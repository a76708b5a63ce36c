// One wait before forwarding: while an org's bucket has headroom, the rate-limit check, the run lock and the
// write-ahead attempt go out together and the forward waits for all of them. In-process, with the real memory limiter
// behind a gate the test opens (the decision comes back when the test says), the real local run lock and the app's
// memory audit recorder: what was written and forwarded before the decision, and what a refusal after going ahead
// leaves (an attempt and its refused outcome, nothing forwarded, the run free), next to the calls that still decide
// first (no headroom yet, a small limit, a refusal just seen, a run this instance locked moments ago).
import { describe, expect, it } from 'vitest';
import type { LimitDecision, LimitRequest, RateLimiter } from '../../src/ratelimit/limits.js';
import { createMemoryLimiter } from '../../src/ratelimit/memory-limiter.js';
import { HEADROOM_CALLS } from '../../src/ratelimit/headroom.js';
import {
  DATA_ENG,
  expectProblem,
  onlyDecision,
  useInProcess,
  type InProcessApp,
  type Reply,
} from '../helpers/in-process.js';
import { until } from '../helpers/wait.js';

const world = useInProcess();

/** The real memory limiter, whose answers the test may hold back and turn into refusals. */
class GatedLimiter implements RateLimiter {
  private readonly real = createMemoryLimiter({ maxKeys: 10_000 });
  /** Checks held back: each waits for its `open(refuse)`. */
  readonly held: { request: LimitRequest; open: (refuse: boolean) => void }[] = [];
  hold = false;

  async check(request: LimitRequest): Promise<LimitDecision> {
    if (!this.hold) return this.real.check(request);
    const refuse = await new Promise<boolean>((open) => this.held.push({ request, open }));
    const decision = await this.real.check(request);
    if (!refuse) return decision;
    await decision.refund();
    return {
      allowed: false,
      outcomes: decision.outcomes.map((o) => ({ ...o, allowed: false, remaining: 0, retryMs: 1_000 })),
      release: () => Promise.resolve(),
      refund: () => Promise.resolve(),
    };
  }
}

async function gatewayWith(limit: number): Promise<{ gw: InProcessApp; limiter: GatedLimiter }> {
  const limiter = new GatedLimiter();
  const gw = await world.app({ orgs: { 'Acme-Prod': { rateLimit: { limit, window: '60s' } } }, limiter });
  return { gw, limiter };
}

/** Starts a resume of `ruuid`; the check it makes is held (the limiter's `hold` is set). */
async function heldResume(gw: InProcessApp, limiter: GatedLimiter, ruuid: string, token?: string) {
  const before = limiter.held.length;
  const reply = gw.resume('Acme-Prod', ruuid, { token: token ?? (await world.signer.mint()) });
  await until(
    () => limiter.held.length > before,
    2_000,
    () => 'limiter.held.length > before',
    5,
  );
  return { reply, open: limiter.held[before]!.open };
}

/** A bucket's first call, decided first (nothing is known of its quota yet): afterwards the bucket has headroom. */
async function firstCall(gw: InProcessApp): Promise<void> {
  const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token: await world.signer.mint() });
  expect(reply.status, reply.text).toBe(200);
}

/** A resume of a new run whose check is held, once its attempt is written (it went ahead of its decision). */
async function wentAhead(gw: InProcessApp, limiter: GatedLimiter) {
  limiter.hold = true;
  const ruuid = world.standIn.addRun('Acme-Prod');
  const before = gw.audit.attempts.length;
  const held = await heldResume(gw, limiter, ruuid);
  await until(
    () => gw.audit.attempts.length > before,
    2_000,
    () => `an attempt beyond the first ${before}`,
    5,
  );
  return { ...held, ruuid };
}

/** A resume of a new run whose check is held, once it is known that no attempt was written meanwhile (it decides first). */
async function decidedFirst(gw: InProcessApp, limiter: GatedLimiter) {
  limiter.hold = true;
  const before = gw.audit.attempts.length;
  const held = await heldResume(gw, limiter, world.standIn.addRun('Acme-Prod'));
  await new Promise((r) => setTimeout(r, 50));
  expect(gw.audit.attempts).toHaveLength(before);
  return held;
}

const eventTypes = (gw: InProcessApp, reply: Reply) =>
  gw.audit.of(reply.requestId).map((e) => `${e.type}:${e.decision}`);

describe('a call on a bucket with headroom', () => {
  it('takes the run lock and writes its attempt before its limit decision comes back, and forwards only after', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    // The first call of a bucket is decided first: nothing is known of its quota yet.
    await firstCall(gw);

    // Decision still pending: the lock was taken and the attempt written, nothing reached SnapLogic.
    const { reply, open, ruuid } = await wentAhead(gw, limiter);
    expect(gw.audit.attempts.at(-1)).toMatchObject({ ruuid, decision: 'allowed' });
    expect(world.standIn.calls('start', ruuid)).toHaveLength(0);
    open(false);
    const answer = await reply;
    expect(answer.status, answer.text).toBe(200);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(eventTypes(gw, answer)).toEqual(['attempt:allowed', 'outcome:allowed']);
    expect(answer.headers.get('ratelimit')).toMatch(/r=\d+/);
  });

  it('refused by its limits after going ahead: 429, its attempt and a refused outcome, nothing forwarded, the run free', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    await firstCall(gw);

    const { reply, open, ruuid } = await wentAhead(gw, limiter);
    open(true);
    const refused = await reply;
    expectProblem(refused, 429, 'quota_exceeded');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(eventTypes(gw, refused)).toEqual(['attempt:allowed', 'outcome:rate_limited']);
    expect(gw.audit.of(refused.requestId)[1]).toMatchObject({ reason: 'quota_exceeded', status: 429, ruuid });
    expect(world.standIn.calls('start', ruuid)).toHaveLength(0);

    // The lock taken beside the refused check was freed: the same run resumes at once (decided first now).
    limiter.hold = false;
    const again = await gw.resume('Acme-Prod', ruuid, { token: await world.signer.mint() });
    expect(again.status, again.text).toBe(200);
  });

  it('after a refusal the bucket decides first again: the next refused call is a decision alone', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    await firstCall(gw);
    limiter.hold = true;
    const first = await heldResume(gw, limiter, world.standIn.addRun('Acme-Prod'));
    first.open(true);
    expectProblem(await first.reply, 429, 'quota_exceeded');

    // Held at its decision: no attempt is written while it waits.
    const second = await decidedFirst(gw, limiter);
    second.open(true);
    const refused = await second.reply;
    expectProblem(refused, 429, 'quota_exceeded');
    expect(onlyDecision(gw.audit, refused)).toMatchObject({ decision: 'rate_limited', reason: 'quota_exceeded' });
  });
});

describe('calls that decide first', () => {
  it(`an org whose whole limit is below the headroom (${HEADROOM_CALLS} calls) never goes ahead`, async () => {
    const { gw, limiter } = await gatewayWith(HEADROOM_CALLS);
    for (let i = 0; i < 3; i++) await firstCall(gw);
    const held = await decidedFirst(gw, limiter);
    held.open(false);
    expect((await held.reply).status).toBe(200);
  });

  it('a second resume of a run this instance is resuming waits for its limits, and its 409 is a decision alone', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    await firstCall(gw);
    const ruuid = world.standIn.addRun('Acme-Prod');
    limiter.hold = true;
    const first = await heldResume(gw, limiter, ruuid);
    const second = await heldResume(gw, limiter, ruuid);
    const attempts = () => gw.audit.attempts.filter((e) => e.ruuid === ruuid).length;
    await until(
      () => attempts() === 1,
      2_000,
      () => 'attempts() === 1',
      5,
    );
    second.open(false);
    const busy = await second.reply;
    expectProblem(busy, 409, 'run_busy');
    expect(onlyDecision(gw.audit, busy)).toMatchObject({ decision: 'conflict', reason: 'run_busy', ruuid });
    first.open(false);
    expect((await first.reply).status).toBe(200);
    expect(attempts()).toBe(1);
  });
});

describe('what a call that went ahead records, and what it leaves', () => {
  it('its attempt says the rate limit was pending; its outcome holds the decision', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    await firstCall(gw);
    limiter.hold = true;
    const held = await heldResume(gw, limiter, world.standIn.addRun('Acme-Prod'));
    held.open(false);
    const reply = await held.reply;
    expect(reply.status).toBe(200);
    expect(gw.audit.of(reply.requestId).map((e) => [e.type, e.rateLimit])).toEqual([
      ['attempt', { outcome: 'pending', policies: [] }],
      ['outcome', { outcome: 'allowed', policies: [] }],
    ]);
  });

  it('callers sharing an org bucket count against the same headroom: no more go ahead than the org has left', async () => {
    const limiter = new GatedLimiter();
    const gw = await world.app({
      orgs: { 'Acme-Prod': { rateLimit: { limit: 100, window: '600s', perCaller: { limit: 1_000, window: '600s' } } } },
      limiter,
    });
    const tokens = await Promise.all(['caller-a', 'caller-b'].map((sub) => world.signer.mint({ ...DATA_ENG, sub })));
    for (const token of tokens) {
      expect((await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token })).status).toBe(200);
    }
    limiter.hold = true;
    const replies: Promise<Reply>[] = [];
    for (let i = 0; i < 70; i++) {
      for (const token of tokens) replies.push(gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token }));
    }
    await until(
      () => limiter.held.length === 140,
      5_000,
      () => `${limiter.held.length} checks held`,
      5,
    );
    await new Promise((r) => setTimeout(r, 50));
    // 98 left after the two first calls: at most 98 - 32 + 1 go ahead, whoever calls.
    const ahead = gw.audit.attempts.length - 2;
    expect(ahead).toBeGreaterThan(0);
    expect(ahead).toBeLessThanOrEqual(98 - HEADROOM_CALLS + 1);
    for (const h of limiter.held) h.open(false);
    const all = await Promise.all(replies);
    expect(all.filter((r) => r.status === 200)).toHaveLength(98);
    const refusedAfterAttempt = all.filter((r) => r.status === 429 && gw.audit.of(r.requestId)[0]?.type === 'attempt');
    expect(refusedAfterAttempt).toHaveLength(0);
  });

  it('a run locked elsewhere: the first refusal went ahead, the retries decide first and are decisions alone', async () => {
    const { gw } = await gatewayWith(1_000);
    const token = await world.signer.mint();
    expect((await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token })).status).toBe(200);
    const ruuid = world.standIn.addRun('Acme-Prod');
    // Another holder (as another instance would be) has the run's lock.
    const other = await gw.deps.runs.lock.acquire('Acme-Prod', ruuid, 30_000, 'local', 'start');
    expect(other.ok).toBe(true);
    const kinds: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const busy = await gw.resume('Acme-Prod', ruuid, { token });
      expectProblem(busy, 409, 'run_busy');
      kinds.push(eventTypes(gw, busy));
    }
    expect(kinds[0]).toEqual(['attempt:allowed', 'outcome:conflict']);
    for (const k of kinds.slice(1)) expect(k).toEqual(['decision:conflict']);
    if (other.ok) await other.release(0);
  });

  it('a refusal of the limits answers at once, without waiting for the attempt beside it to be acknowledged', async () => {
    const { gw, limiter } = await gatewayWith(1_000);
    await firstCall(gw);
    const acknowledge = gw.audit.attempt.bind(gw.audit);
    gw.audit.attempt = (e) => new Promise((done) => setTimeout(() => done(acknowledge(e)), 1_000));
    limiter.hold = true;
    const held = await heldResume(gw, limiter, world.standIn.addRun('Acme-Prod'));
    const started = performance.now();
    held.open(true);
    const refused = await held.reply;
    expectProblem(refused, 429, 'quota_exceeded');
    expect(performance.now() - started).toBeLessThan(500);
    // The attempt (submitted first, so first in a real trail) is acknowledged later; the outcome refers to it.
    await until(
      () => gw.audit.of(refused.requestId).length === 2,
      3_000,
      () => 'the attempt acknowledged',
      20,
    );
    const attempt = gw.audit.of(refused.requestId).find((e) => e.type === 'attempt');
    const outcome = gw.audit.of(refused.requestId).find((e) => e.type === 'outcome');
    expect(outcome).toMatchObject({ decision: 'rate_limited', reason: 'quota_exceeded', attemptId: attempt?.id });
  });
});

describe('shadow policies', () => {
  it('count like enforced ones: near its limit a call decides first, and over it its attempt says would_limit', async () => {
    const limiter = new GatedLimiter();
    const gw = await world.app({
      orgs: { 'Acme-Prod': { rateLimit: { limit: HEADROOM_CALLS + 2, window: '600s', shadow: true } } },
      limiter,
    });
    await firstCall(gw);
    // 33 left: far enough from the shadow limit to go ahead.
    const ahead = await wentAhead(gw, limiter);
    ahead.open(false);
    expect((await ahead.reply).status).toBe(200);
    limiter.hold = false;
    for (let i = 0; i < 2; i++) await firstCall(gw);
    // 30 left: decided first, so no attempt is written while the decision is held.
    const near = await decidedFirst(gw, limiter);
    near.open(false);
    expect((await near.reply).status).toBe(200);
    limiter.hold = false;
    const outcomes: (string | undefined)[] = [];
    for (let i = 0; i < HEADROOM_CALLS; i++) {
      const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), {
        token: await world.signer.mint(),
      });
      expect(reply.status, reply.text).toBe(200);
      outcomes.push(gw.audit.of(reply.requestId).find((e) => e.type === 'attempt')?.rateLimit?.outcome);
    }
    // Over the shadow limit every call is still forwarded, and its attempt says so.
    expect(outcomes.at(-1)).toBe('would_limit');
    expect(outcomes).not.toContain('pending');
  });
});
