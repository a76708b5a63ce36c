// The run guard end to end (issue 12, points 5, 6, 7 and 9): real gateways (in-process and a child process) sharing
// one real redis-server, in front of the SnapLogic stand-in. One resume of a run at a time across instances, the
// Idempotency-Key across instances (replay, in flight, mismatch, malformed, missing), the retry after an unknown
// outcome in both states, the lock released on a caller hang-up and on a killed instance (lease), and each org's
// onRedisError mode while Redis stalls.
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotencyRecordKey } from '../../src/runs/idempotency.js';
import { idempotencyScope } from '../../src/runs/idempotency-key.js';
import { runLockKey } from '../../src/runs/run-lock.js';
import {
  baseConfig,
  startTestGateway,
  startTestStandIn,
  testSecrets,
  withGatewayProcess,
  writeConfig,
  type TestGateway,
} from '../helpers/gateway.js';
import { resume, send, type Reply } from '../helpers/http.js';
import { RedisServer } from '../helpers/redis-server.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { poll, sleep, until } from '../helpers/wait.js';
import { closedAfterEach, forSuite } from '../helpers/world.js';

interface Parts {
  /** Runs stay where a request puts them (transitionMs 0): a resumed run stays Resuming, so states are exact. */
  standIn: SnapLogicStandIn;
  issuer: TokenIssuer;
  redis: RedisServer;
  admin: Redis;
  jwt: string;
}

const world = forSuite<Parts>(
  async () => {
    const standIn = await startTestStandIn({ transitionMs: 0 });
    const issuer = await TokenIssuer.start();
    const redis = await RedisServer.start();
    const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    admin.on('error', () => undefined);
    const jwt = await issuer.mint({ sub: 'svc-billing' }, { expiresIn: 3600 });
    return { standIn, issuer, redis, admin, jwt };
  },
  async (p) => {
    p.admin.disconnect();
    await p.redis.stop();
    await p.standIn.close();
    await p.issuer.close();
  },
);
const open = closedAfterEach();

afterEach(() => {
  world.standIn.setFault(undefined);
});

const ACME = 'Acme-Prod';
/**
 * A lease covers the audit attempt's acknowledgement (audit.ackTimeout, 1 s by default), then the call: its wait for a
 * pooled connection (upstream.queueTimeout, 2 s by default) and the org's longest call (connect + headers + body
 * timeouts), twice on a retry; plus a margin of at most this.
 */
const LEASE_MARGIN_MAX_MS = 2_000;
const ATTEMPT_MS = 1_000;
const QUEUE_MS = 2_000;
/** baseConfig's upstream timeouts: connect 1 s + headers 2 s + body 2 s. */
const DEFAULT_LONGEST_MS = 5_000;
const OTHER = 'Other-Org';
const RUNTIME = '/api/1/rest/public/runtime';

/** svc-billing may resume and stop runs of both orgs; svc-orders may resume Acme-Prod's (another caller, same key). */
const POLICY = [
  { match: { sub: 'svc-billing' }, orgs: [ACME, OTHER], actions: ['runtime.start', 'runtime.stop'] },
  { match: { sub: 'svc-orders' }, orgs: [ACME], actions: ['runtime.start'] },
];

type Orgs = Record<string, Record<string, unknown>>;

/**
 * A config on the suite's stand-in and issuer. Redis decisions get a generous deadline: a deadline missed on a
 * loaded machine would hand a decision to the in-process fallback and void the cross-instance claims.
 */
function config(
  options: { orgs?: (orgs: Orgs) => void; redisUrl?: string; commandTimeout?: string; holdAfterResume?: string } = {},
): Record<string, unknown> {
  const doc = baseConfig(world.standIn, world.issuer, {
    policy: POLICY,
    redis: { url: options.redisUrl ?? world.redis.url, commandTimeout: options.commandTimeout ?? '2s' },
    log: { level: 'info' },
    ...(options.holdAfterResume !== undefined ? { runLock: { holdAfterResume: options.holdAfterResume } } : {}),
  });
  options.orgs?.(doc.orgs as Orgs);
  return doc;
}

/** `n` in-process gateways on one config (each with its own Redis client, lock fallback and key store). */
async function gateways(n: number, doc: Record<string, unknown>): Promise<TestGateway[]> {
  const started = await Promise.all(Array.from({ length: n }, () => startTestGateway(doc)));
  open.push(...started);
  return started;
}

const key = (k: string): Record<string, string> => ({ 'idempotency-key': `"${k}"` });
const uniqueKey = (): string => `op-${Math.random().toString(36).slice(2)}-${Date.now()}`;

function stop(baseUrl: string, org: string, ruuid: string, token: string): Promise<Reply> {
  return send(baseUrl, 'POST', `${RUNTIME}/stop/${org}/${ruuid}`, { headers: { authorization: `Bearer ${token}` } });
}

/** Resolves once the stand-in has received `n` start calls of `ruuid`. */
function startsReceived(ruuid: string, n = 1): Promise<void> {
  return until(
    () => world.standIn.calls('start', ruuid).length >= n,
    5_000,
    () => `${n} start call(s) of ${ruuid} at the stand-in`,
    10,
  );
}

/** A problem+json refusal with `code`; returns its Retry-After in seconds (NaN when absent). */
function expectProblem(reply: Reply, status: number, code: string): number {
  expect({ status: reply.status, code: reply.json?.code }, reply.text).toEqual({ status, code });
  expect(reply.headers['content-type']).toMatch(/^application\/problem\+json/);
  return Number(reply.headers['retry-after']);
}

describe('one resume of a run at a time, across instances (run lock)', () => {
  it('20 concurrent resumes of one run over 3 instances: exactly one reaches SnapLogic, 19 are run_busy', async () => {
    const gws = await gateways(3, config({ holdAfterResume: '1s' }));
    const ruuid = world.standIn.addRun(ACME);
    const lock = runLockKey(ACME, ruuid);
    // The one admitted resume is held at the stand-in long enough for every other to meet its lock.
    world.standIn.setFault({ kind: 'latency', ms: 1_500, on: 'start', count: 1 });
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => resume(gws[i % 3]!.url, ACME, ruuid, world.jwt)),
    );

    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.run(ACME, ruuid)?.resumes).toBe(1);
    const ok = replies.filter((r) => r.status === 200);
    expect(ok).toHaveLength(1);
    const busy = replies.filter((r) => r.status !== 200);
    expect(busy).toHaveLength(19);
    // Retry-After is within the lease.
    for (const r of busy) {
      const retryAfter = expectProblem(r, 409, 'run_busy');
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual((ATTEMPT_MS + QUEUE_MS + DEFAULT_LONGEST_MS + LEASE_MARGIN_MAX_MS) / 1000);
    }
    // The refusals came from every instance, not only the winner's.
    const busyBy = new Set(replies.map((r, i) => (r.status === 409 ? i % 3 : -1)).filter((i) => i >= 0));
    expect(busyBy.size).toBe(3);
    // SnapLogic accepted the resume: the lock turns into a short hold (runLock.holdAfterResume, 1 s here), so a
    // duplicate sent just after is refused on any instance rather than forwarded.
    expect(await world.admin.get(lock)).toMatch(/^resumed:/);
    const held = await world.admin.pttl(lock);
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(1_000);
    const duplicate = await resume(gws[2]!.url, ACME, ruuid, world.jwt);
    expect(expectProblem(duplicate, 409, 'run_busy')).toBe(1);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    // Then it ends. The run is Resuming: a later resume reaches SnapLogic and gets its own 409, not run_busy.
    await until(
      async () => (await world.admin.exists(lock)) === 0,
      2_000,
      () => 'the hold to end',
      20,
    );
    const later = await resume(gws[1]!.url, ACME, ruuid, world.jwt);
    expect(later.status).toBe(409);
    expect(later.json?.code).toBeUndefined();
    expect(later.headers['x-sl-statuscode']).toBe('409');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(2);
  });

  it('a stop of a run whose resume is in flight on another instance is run_busy, not forwarded', async () => {
    const [a, b] = await gateways(2, config());
    const ruuid = world.standIn.addRun(ACME);
    world.standIn.setFault({ kind: 'latency', ms: 800, on: 'start', count: 1 });
    const first = resume(a!.url, ACME, ruuid, world.jwt);
    await startsReceived(ruuid);
    expect(await world.admin.exists(runLockKey(ACME, ruuid))).toBe(1);
    const stopped = await stop(b!.url, ACME, ruuid, world.jwt);
    expectProblem(stopped, 409, 'run_busy');
    expect((await first).status).toBe(200);
    expect(world.standIn.calls('stop', ruuid)).toHaveLength(0);
    // Once the resume is over, the stop goes through at once (a stop is not held back by the resume's hold).
    expect((await stop(b!.url, ACME, ruuid, world.jwt)).status).toBe(200);
    expect(world.standIn.calls('stop', ruuid)).toHaveLength(1);
  });
});

describe('Idempotency-Key across instances', () => {
  it('replays on another instance without a new call, hides no secret, and is scoped to the caller', async () => {
    const [a, b] = await gateways(2, config());
    const ruuid = world.standIn.addRun(ACME);
    const k = uniqueKey();
    const first = await resume(a!.url, ACME, ruuid, world.jwt, key(k));
    expect(first.status).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();

    const replayed = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    expect(replayed.status).toBe(200);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.text).toBe(first.text);
    expect(replayed.headers['x-sl-statuscode']).toBe('200');
    // The stand-in sets a session cookie on every answer: never stored, never replayed.
    expect(replayed.headers['set-cookie']).toBeUndefined();
    // The key sent bare (as Stripe's clients do) names the same record as its quoted form.
    const bare = await resume(a!.url, ACME, ruuid, world.jwt, { 'idempotency-key': k });
    expect(bare.status).toBe(200);
    expect(bare.headers['idempotent-replayed']).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);

    const record = idempotencyRecordKey(idempotencyScope({ issuer: world.issuer.issuer, subject: 'svc-billing' }, k));
    const fields = await world.admin.hgetall(record);
    expect(fields.st).toBe('d');
    expect(JSON.parse(fields.ans!)).toMatchObject({ s: 200 });
    const stored = JSON.stringify(fields);
    for (const secret of [testSecrets.ACME_SL_PASSWORD, testSecrets.ACME_SL_USER, 'SLSESSION', world.jwt, k]) {
      expect(stored).not.toContain(secret);
    }
    // Stored answers expire (default retention 24 h).
    const ttl = await world.admin.pttl(record);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(24 * 3_600_000);

    // The same key from another caller is another operation, not a replay (here refused by the run's hold).
    const orders = await world.issuer.mint({ sub: 'svc-orders' });
    const other = await resume(b!.url, ACME, ruuid, orders, key(k));
    expect(other.headers['idempotent-replayed']).toBeUndefined();
    expectProblem(other, 409, 'run_busy');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('the same key while the first call is in flight on another instance: 409 idempotency_key_in_use', async () => {
    const [a, b] = await gateways(2, config());
    const ruuid = world.standIn.addRun(ACME);
    const k = uniqueKey();
    world.standIn.setFault({ kind: 'latency', ms: 1_000, on: 'start', count: 1 });
    const first = resume(a!.url, ACME, ruuid, world.jwt, key(k));
    await startsReceived(ruuid);

    const inUse = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    const retryAfter = expectProblem(inUse, 409, 'idempotency_key_in_use');
    // Within the key's lease: the attempt, twice the call (with its queue wait), plus the margin.
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    const keyLease = ATTEMPT_MS + 2 * (QUEUE_MS + DEFAULT_LONGEST_MS) + LEASE_MARGIN_MAX_MS;
    expect(retryAfter).toBeLessThanOrEqual(keyLease / 1000);

    expect((await first).status).toBe(200);
    const after = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    expect(after.status).toBe(200);
    expect(after.headers['idempotent-replayed']).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('422 for the key on another run or action, 400 for a malformed key, 400 when the org requires one', async () => {
    const [a, b] = await gateways(
      2,
      config({ orgs: (orgs) => (orgs[OTHER] = { ...orgs[OTHER], requireIdempotencyKey: true }) }),
    );
    const ruuid = world.standIn.addRun(ACME);
    const another = world.standIn.addRun(ACME);
    const k = uniqueKey();
    expect((await resume(a!.url, ACME, ruuid, world.jwt, key(k))).status).toBe(200);

    expectProblem(await resume(b!.url, ACME, another, world.jwt, key(k)), 422, 'idempotency_key_mismatch');
    const asStop = await send(b!.url, 'POST', `${RUNTIME}/stop/${ACME}/${ruuid}`, {
      headers: { authorization: `Bearer ${world.jwt}`, ...key(k) },
    });
    expectProblem(asStop, 422, 'idempotency_key_mismatch');
    expect(world.standIn.calls('start', another)).toHaveLength(0);
    expect(world.standIn.calls('stop', ruuid)).toHaveLength(0);

    for (const malformed of ['', 'not a token', '"caf\u00e9"', '""', '"a", "b"', `"${'k'.repeat(256)}"`]) {
      const reply = await resume(b!.url, ACME, another, world.jwt, { 'idempotency-key': malformed });
      expectProblem(reply, 400, 'idempotency_key_invalid');
    }
    expect(world.standIn.calls('start', another)).toHaveLength(0);

    const required = world.standIn.addRun(OTHER);
    expectProblem(await resume(a!.url, OTHER, required, world.jwt), 400, 'idempotency_key_missing');
    expect(world.standIn.calls('start', required)).toHaveLength(0);
    expect((await resume(a!.url, OTHER, required, world.jwt, key(uniqueKey()))).status).toBe(200);
  });
});

describe('a retry after an unknown outcome reads the run’s state first', () => {
  /** Acme-Prod's calls time out after 500 ms of waiting for SnapLogic's headers. */
  const shortTimeouts = () =>
    config({
      orgs: (orgs) => (orgs[ACME] = { ...orgs[ACME], timeouts: { connect: '500ms', headers: '500ms', body: '500ms' } }),
    });

  it('not applied: the run is still Suspended, so the retry (another instance) is forwarded', async () => {
    const [a, b] = await gateways(2, shortTimeouts());
    const ruuid = world.standIn.addRun(ACME);
    const k = uniqueKey();
    world.standIn.setFault({ kind: 'unknown-outcome', applied: false, answerAfterMs: 1_500, count: 1 });
    expectProblem(await resume(a!.url, ACME, ruuid, world.jwt, key(k)), 504, 'upstream_timeout');
    expect(world.standIn.run(ACME, ruuid)?.state).toBe('Suspended');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    // The holder is done, but the resume may have taken effect: the run is held closed to blind resumes...
    expect(await world.admin.get(runLockKey(ACME, ruuid))).toMatch(/^resumed:/);
    expectProblem(await resume(b!.url, ACME, ruuid, world.jwt), 409, 'run_busy');

    // ...while a retry with the same key passes the hold: it reads the state before it forwards.
    const retry = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    expect(retry.status, retry.text).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    const starts = world.standIn.calls('start', ruuid);
    const reads = world.standIn.calls('status', ruuid);
    expect(starts).toHaveLength(2);
    expect(reads).toHaveLength(1);
    expect(reads[0]!.at).toBeGreaterThanOrEqual(starts[0]!.at);
    expect(reads[0]!.at).toBeLessThanOrEqual(starts[1]!.at);
    expect(world.standIn.run(ACME, ruuid)?.resumes).toBe(1);

    // The retry's answer is now the key's answer.
    const again = await resume(a!.url, ACME, ruuid, world.jwt, key(k));
    expect(again.status).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(2);
  });

  it('applied: the run moved on, so the retry gets 409 run_state_conflict with its state, not forwarded', async () => {
    const [a, b] = await gateways(2, shortTimeouts());
    const ruuid = world.standIn.addRun(ACME);
    const k = uniqueKey();
    world.standIn.setFault({ kind: 'unknown-outcome', applied: true, answerAfterMs: 1_500, count: 1 });
    expectProblem(await resume(a!.url, ACME, ruuid, world.jwt, key(k)), 504, 'upstream_timeout');
    expect(world.standIn.run(ACME, ruuid)?.state).toBe('Resuming');

    const retry = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    expectProblem(retry, 409, 'run_state_conflict');
    expect(retry.json?.state).toBe('Resuming');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('status', ruuid)).toHaveLength(1);

    // It stays a conflict: a later retry (with the run further along) reads the state again, still not forwarded.
    world.standIn.setState(ACME, ruuid, 'Started');
    const later = await resume(a!.url, ACME, ruuid, world.jwt, key(k));
    expectProblem(later, 409, 'run_state_conflict');
    expect(later.json?.state).toBe('Started');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('status', ruuid)).toHaveLength(2);
    expect(world.standIn.run(ACME, ruuid)?.resumes).toBe(1);
  });
});

describe('the lock is released on every outcome', () => {
  it('a caller hang-up frees the lock at once, and its key reads as an unknown outcome', async () => {
    const [a, b] = await gateways(2, config());
    const ruuid = world.standIn.addRun(ACME);
    const k = uniqueKey();
    const lock = runLockKey(ACME, ruuid);
    const record = idempotencyRecordKey(idempotencyScope({ issuer: world.issuer.issuer, subject: 'svc-billing' }, k));
    // The stand-in takes the resume and never answers (nor applies it): the run stays Suspended.
    world.standIn.setFault({ kind: 'hang', on: 'start', count: 1 });
    const u = new URL(a!.url);
    const req = request({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: `${RUNTIME}/start/${ACME}/${ruuid}`,
      headers: { authorization: `Bearer ${world.jwt}`, ...key(k) },
      agent: false,
    });
    const ended = new Promise<string>((resolve) => {
      req.on('response', () => resolve('answered'));
      req.on('error', () => resolve('error'));
      req.on('close', () => resolve('closed'));
    });
    req.end();
    await startsReceived(ruuid);
    expect(await world.admin.exists(lock)).toBe(1);
    expect(await world.admin.pttl(lock)).toBeGreaterThan(1_000);
    req.destroy();
    expect(await ended).not.toBe('answered');

    // Released well before the lease (over 6 s) would have ended it: the holder's token gives way at once to the
    // short hold after a resume that may have taken effect.
    const hungUp = Date.now();
    expect(
      await poll(
        () => world.admin.get(lock),
        (v) => v?.startsWith('resumed:') === true,
        2_000,
        20,
      ),
    ).toMatch(/^resumed:/);
    expect(Date.now() - hungUp).toBeLessThan(2_000);
    expect(await world.admin.pttl(lock)).toBeLessThanOrEqual(2_000);
    // The resume had been sent: the key's outcome is unknown, not forgotten.
    expect(
      await poll(
        () => world.admin.hget(record, 'st'),
        (st) => st === 'u',
        2_000,
        20,
      ),
    ).toBe('u');

    // Another instance: not run_busy; with the same key the run's state is read (Suspended) and the resume goes on.
    const retry = await resume(b!.url, ACME, ruuid, world.jwt, key(k));
    expect(retry.status, retry.text).toBe(200);
    expect(world.standIn.calls('status', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(2);
    // Accepted this time: the lock is now the short hold after a resume, no longer a holder's lease.
    expect(await world.admin.get(lock)).toMatch(/^resumed:/);
  });

  it('a killed instance’s lock holds until its lease ends (≤ lease), then another instance may resume', async () => {
    // connect 200 ms + headers 1 s + body 200 ms = 1.4 s longest call, after an attempt ack and a queue wait of at
    // most 200 ms each: a lease of 1.8 to 3.8 s.
    const LONGEST = 1_400;
    const LEASE = 200 + 200 + LONGEST + LEASE_MARGIN_MAX_MS;
    const doc = config({
      orgs: (orgs) => (orgs[ACME] = { ...orgs[ACME], timeouts: { connect: '200ms', headers: '1s', body: '200ms' } }),
    });
    doc.upstream = { ...(doc.upstream as Record<string, unknown>), queueTimeout: '200ms' };
    doc.audit = { ackTimeout: '200ms' };
    const [survivor] = await gateways(1, doc);
    const ruuid = world.standIn.addRun(ACME);
    const lock = runLockKey(ACME, ruuid);
    world.standIn.setFault({ kind: 'hang', on: 'start', count: 1 });
    let acquiredBy = 0;
    await withGatewayProcess(writeConfig(doc), { built: true }, async (child) => {
      expect(child.port, child.stderr.join('\n')).toBeGreaterThan(0);
      const inFlight = resume(child.url, ACME, ruuid, world.jwt).catch((err: Error) => err);
      await startsReceived(ruuid);
      acquiredBy = Date.now();
      // The lease covers the longest call (with a margin) and no more than the margin beyond it.
      const ttl = await world.admin.pttl(lock);
      expect(ttl).toBeGreaterThan(LONGEST);
      expect(ttl).toBeLessThanOrEqual(LEASE);
      // Killed before its own 1 s headers timeout could end the call and release the lock.
      child.kill('SIGKILL');
      await child.exited;
      expect(await inFlight).toBeInstanceOf(Error);
    });
    expect(Date.now() - acquiredBy).toBeLessThan(1_000);

    // Nobody released it: the lock outlives its holder, and other instances are refused meanwhile.
    const left = await world.admin.pttl(lock);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(LEASE);
    const busy = await resume(survivor!.url, ACME, ruuid, world.jwt);
    const retryAfter = expectProblem(busy, 409, 'run_busy');
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(LEASE / 1000));
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);

    // The lease ends it: within the lease (+ slack) of the acquisition, the run can be resumed again.
    await until(
      async () => (await world.admin.exists(lock)) === 0,
      LEASE + 1_000,
      () => 'the lease to end',
      20,
    );
    expect(Date.now() - acquiredBy).toBeLessThan(LEASE + 1_000);
    const after = await resume(survivor!.url, ACME, ruuid, world.jwt);
    expect(after.status, after.text).toBe(200);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(2);
  });
});

describe('Redis stalled (SIGSTOP): each org’s onRedisError mode', () => {
  it('closed refuses with 503 coordination_unavailable; local resumes with the degraded headers', async () => {
    // A redis-server of this test alone, so stalling it touches nothing else; a short deadline on Redis decisions.
    const down = await RedisServer.start();
    const probe = new Redis(down.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    probe.on('error', () => undefined);
    try {
      const [gw] = await gateways(
        1,
        config({
          redisUrl: down.url,
          commandTimeout: '200ms',
          orgs: (orgs) => {
            orgs[ACME] = { ...orgs[ACME], onRedisError: 'closed' };
            orgs[OTHER] = { ...orgs[OTHER], onRedisError: 'local' };
          },
        }),
      );
      // Redis answers: neither mode matters, no degraded header.
      const healthy = await resume(gw!.url, OTHER, world.standIn.addRun(OTHER), world.jwt);
      expect(healthy.status).toBe(200);
      expect(healthy.headers['x-snapgate-run-lock-degraded']).toBeUndefined();

      const refused = world.standIn.addRun(ACME);
      const refusedWithKey = world.standIn.addRun(ACME);
      const degraded = world.standIn.addRun(OTHER);
      const degradedWithKey = world.standIn.addRun(OTHER);
      const contended = world.standIn.addRun(OTHER);
      down.pause();
      try {
        const startedAt = Date.now();
        const closed = await resume(gw!.url, ACME, refused, world.jwt);
        expect(Date.now() - startedAt).toBeLessThan(2_000);
        expect(expectProblem(closed, 503, 'coordination_unavailable')).toBeGreaterThanOrEqual(1);
        const closedKey = await resume(gw!.url, ACME, refusedWithKey, world.jwt, key(uniqueKey()));
        expectProblem(closedKey, 503, 'coordination_unavailable');
        expect(world.standIn.calls('start', refused)).toHaveLength(0);
        expect(world.standIn.calls('start', refusedWithKey)).toHaveLength(0);

        const local = await resume(gw!.url, OTHER, degraded, world.jwt);
        expect(local.status, local.text).toBe(200);
        expect(local.headers['x-snapgate-run-lock-degraded']).toBe('local');
        expect(local.headers['x-snapgate-idempotency-degraded']).toBeUndefined();
        const localKey = await resume(gw!.url, OTHER, degradedWithKey, world.jwt, key(uniqueKey()));
        expect(localKey.status, localKey.text).toBe(200);
        expect(localKey.headers['x-snapgate-run-lock-degraded']).toBe('local');
        expect(localKey.headers['x-snapgate-idempotency-degraded']).toBe('local');
        expect(world.standIn.calls('start', degraded)).toHaveLength(1);
        expect(world.standIn.calls('start', degradedWithKey)).toHaveLength(1);

        // The in-process lock still excludes a second resume of the run on this instance.
        world.standIn.setFault({ kind: 'latency', ms: 1_000, on: 'start', count: 1 });
        const pair = await Promise.all([
          resume(gw!.url, OTHER, contended, world.jwt),
          sleep(100).then(() => resume(gw!.url, OTHER, contended, world.jwt)),
        ]);
        expect(pair.map((r) => r.status).sort()).toEqual([200, 409]);
        const busy = pair.find((r) => r.status === 409)!;
        expectProblem(busy, 409, 'run_busy');
        expect(busy.headers['x-snapgate-run-lock-degraded']).toBe('local');
        expect(world.standIn.calls('start', contended)).toHaveLength(1);
      } finally {
        down.resume();
      }
      // The stalled scripts run once Redis is back; every lock they took is released, none is left to block others.
      await sleep(300);
      for (const [org, r] of [
        [ACME, refused],
        [ACME, refusedWithKey],
        [OTHER, degraded],
        [OTHER, degradedWithKey],
        [OTHER, contended],
      ] as const) {
        expect(
          await poll(
            () => probe.exists(runLockKey(org, r)),
            (n) => n === 0,
            2_000,
            50,
          ),
          `${org}/${r}`,
        ).toBe(0);
      }
    } finally {
      probe.disconnect();
      down.resume();
      await Promise.all(open.splice(0).map((g) => g.close()));
      await down.stop();
    }
  });
});
