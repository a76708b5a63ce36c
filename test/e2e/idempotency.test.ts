// Idempotency-Key records on a real redis-server (and the in-process store, which must behave alike): every
// transition, replay, mismatch, lease and retention expiry, the body cap, no secret stored, key syntax.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  createLocalIdempotencyStore,
  createModalIdempotencyStore,
  createRedisIdempotencyStore,
  idempotencyRecordKey,
  IdempotencyUnavailableError,
  type BeginResult,
  type IdempotencyOptions,
  type IdempotencyStore,
  type IdempotencyToken,
} from '../../src/runs/idempotency.js';
import {
  idempotencyScope,
  parseIdempotencyKey,
  requestFingerprint,
  type IdempotencyKeyProblem,
} from '../../src/runs/idempotency-key.js';
import { waitForRedis } from '../../src/redis/client.js';
import { sleep } from '../helpers/wait.js';
import { useRedis } from '../helpers/world.js';

const redis = useRedis();
const CALLER = { issuer: 'https://issuer.example', subject: 'svc-orders' };
const RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';
const START = requestFingerprint({ action: 'runtime.start', org: 'Acme-Prod', ruuid: RUUID });
const STOP = requestFingerprint({ action: 'runtime.stop', org: 'Acme-Prod', ruuid: RUUID });
const newScope = () => idempotencyScope(CALLER, randomUUID());
const answer = (body = '{"ok":true}') => ({
  status: 200,
  headers: { 'content-type': 'application/json', 'x-sl-statuscode': '200' },
  body: Buffer.from(body),
});

function tokenOf(result: BeginResult): IdempotencyToken {
  if (result.kind === 'new' || result.kind === 'unknown_outcome') return result.token;
  throw new Error(`expected a token, got ${result.kind}`);
}

describe.each<[string, (o?: IdempotencyOptions) => IdempotencyStore]>([
  ['redis', (o) => createRedisIdempotencyStore(redis.client, { deadlineMs: 2_000, ...o })],
  ['local', (o) => createLocalIdempotencyStore(o)],
])('%s idempotency store', (name, make) => {
  it('new → in_flight for a second begin → complete → replay of the same answer', async () => {
    const store = make();
    const scope = newScope();
    const first = await store.begin(scope, START, 5_000);
    expect(first).toMatchObject({ kind: 'new', by: name });
    const second = await store.begin(scope, START, 5_000);
    expect(second.kind).toBe('in_flight');
    if (second.kind === 'in_flight') expect(second.retryAfterMs).toBeLessThanOrEqual(5_000);
    expect(await store.complete(tokenOf(first), answer())).toBe(true);
    const replay = await store.begin(scope, START, 5_000);
    expect(replay).toMatchObject({
      kind: 'replay',
      answer: { status: 200, headers: { 'content-type': 'application/json', 'x-sl-statuscode': '200' } },
    });
    if (replay.kind === 'replay' && replay.answer.body.stored) {
      expect(replay.answer.body.bytes.toString()).toBe('{"ok":true}');
    } else throw new Error('no stored body');
    // A token acts once: completing again changes nothing.
    expect(await store.complete(tokenOf(first), answer('other'))).toBe(false);
  });

  it('answers mismatch for the same key on another action or target, in flight or done', async () => {
    const store = make();
    const scope = newScope();
    const first = await store.begin(scope, START, 5_000);
    expect((await store.begin(scope, STOP, 5_000)).kind).toBe('mismatch');
    await store.complete(tokenOf(first), answer());
    expect((await store.begin(scope, STOP, 5_000)).kind).toBe('mismatch');
    // The same key of another caller is another record.
    const otherCaller = idempotencyScope({ ...CALLER, subject: 'svc-billing' }, 'k');
    expect(otherCaller).not.toBe(idempotencyScope(CALLER, 'k'));
  });

  it('abandon frees the key; a stale token cannot abandon its successor', async () => {
    const store = make();
    const scope = newScope();
    const first = tokenOf(await store.begin(scope, START, 5_000));
    expect(await store.abandon(first)).toBe(true);
    const again = await store.begin(scope, STOP, 5_000);
    expect(again.kind).toBe('new');
    expect(await store.abandon(first)).toBe(false);
    expect((await store.begin(scope, STOP, 5_000)).kind).toBe('in_flight');
  });

  it('unknown makes the next begin unknown_outcome, holding the record; abandoning it keeps it unknown', async () => {
    const store = make();
    const scope = newScope();
    expect(await store.unknown(tokenOf(await store.begin(scope, START, 5_000)))).toBe(true);
    const retry = await store.begin(scope, START, 5_000);
    expect(retry.kind).toBe('unknown_outcome');
    expect((await store.begin(scope, START, 5_000)).kind).toBe('in_flight');
    expect(await store.abandon(tokenOf(retry))).toBe(true);
    const later = await store.begin(scope, START, 5_000);
    expect(later.kind).toBe('unknown_outcome');
    expect(await store.complete(tokenOf(later), { ...answer(), status: 409 })).toBe(true);
    expect(await store.begin(scope, START, 5_000)).toMatchObject({ kind: 'replay', answer: { status: 409 } });
  });

  it('reads a crashed holder’s record as unknown_outcome after its lease; its token is then stale', async () => {
    const store = make();
    const scope = newScope();
    const crashed = tokenOf(await store.begin(scope, START, 100));
    await sleep(200);
    const retry = await store.begin(scope, START, 5_000);
    expect(retry.kind).toBe('unknown_outcome');
    expect(await store.complete(crashed, answer())).toBe(false);
  });

  it('forgets a record after its retention', async () => {
    const store = make({ retentionMs: 200 });
    const scope = newScope();
    await store.complete(tokenOf(await store.begin(scope, START, 5_000)), answer());
    expect((await store.begin(scope, START, 5_000)).kind).toBe('replay');
    await sleep(300);
    expect((await store.begin(scope, STOP, 5_000)).kind).toBe('new');
  });

  it('stores no body over the cap, and says so on replay', async () => {
    const store = make({ bodyCapBytes: 16 });
    const scope = newScope();
    await store.complete(tokenOf(await store.begin(scope, START, 5_000)), answer('x'.repeat(17)));
    const replay = await store.begin(scope, START, 5_000);
    expect(replay).toMatchObject({ kind: 'replay', answer: { status: 200, body: { stored: false, size: 17 } } });
    const small = newScope();
    await store.complete(tokenOf(await store.begin(small, START, 5_000)), answer('x'.repeat(16)));
    expect(await store.begin(small, START, 5_000)).toMatchObject({ answer: { body: { stored: true } } });
  });

  it('keeps only allow-listed headers: no Set-Cookie, no Authorization, ever', async () => {
    const store = make();
    const scope = newScope();
    const headers = new Headers({
      'Content-Type': 'application/json',
      'Set-Cookie': 'session=SECRET-COOKIE',
      Authorization: 'Basic U0VDUkVU',
      'X-Internal': 'SECRET-INTERNAL',
    });
    await store.complete(tokenOf(await store.begin(scope, START, 5_000)), {
      status: 201,
      headers,
      body: Buffer.from(''),
    });
    expect(await store.begin(scope, START, 5_000)).toMatchObject({
      kind: 'replay',
      answer: { status: 201, headers: { 'content-type': 'application/json' } },
    });
    const replay = await store.begin(scope, START, 5_000);
    if (replay.kind === 'replay') expect(Object.keys(replay.answer.headers)).toEqual(['content-type']);
    if (name === 'redis') {
      const stored = JSON.stringify(await redis.client.hgetall(idempotencyRecordKey(scope)));
      expect(stored).not.toMatch(/SECRET|U0VDUkVU|svc-orders|issuer\.example|Acme-Prod/);
    }
    expect(() => make({ storedHeaders: ['content-type', 'Set-Cookie'] })).toThrow(/never stored/);
  });

  it('refuses a scope or fingerprint that is not a SHA-256 digest, so no caller text names a key', async () => {
    const store = make();
    await expect(store.begin('svc-orders:my-key', START, 1_000)).rejects.toThrow(TypeError);
    await expect(store.begin(newScope(), 'runtime.start', 1_000)).rejects.toThrow(TypeError);
  });
});

describe('redis idempotency records', () => {
  it('names the record by the hash only, with the retention (+ lease while in flight) as its TTL', async () => {
    const store = createRedisIdempotencyStore(redis.client, { retentionMs: 60_000 });
    const scope = idempotencyScope(CALLER, 'order-42');
    const key = idempotencyRecordKey(scope);
    expect(key).toMatch(/^idem:v1:[0-9a-f]{64}$/);
    const token = tokenOf(await store.begin(scope, START, 10_000));
    expect(await redis.client.pttl(key)).toBeGreaterThan(69_000);
    await store.complete(token, answer());
    const ttl = await redis.client.pttl(key);
    expect(ttl).toBeGreaterThan(59_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await redis.client.del(key);
  });

  it('is shared by two clients (two instances)', async () => {
    const other = new Redis(redis.server.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    try {
      const a = createRedisIdempotencyStore(redis.client);
      const b = createRedisIdempotencyStore(other);
      const scope = newScope();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).begin(scope, START, 5_000)),
      );
      expect(results.filter((r) => r.kind === 'new')).toHaveLength(1);
      expect(results.filter((r) => r.kind === 'in_flight')).toHaveLength(9);
    } finally {
      other.disconnect();
    }
  });
});

describe('modal idempotency store', () => {
  it('stalled Redis: closed refuses in time, local falls back; a late begin marks the record unknown', async () => {
    const stalled = new Redis(redis.server.port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false });
    expect(await waitForRedis(stalled, 5_000)).toBe(true);
    const local = createLocalIdempotencyStore();
    const store = createModalIdempotencyStore({
      redis: createRedisIdempotencyStore(stalled, { deadlineMs: 150 }),
      local,
    });
    const scope = newScope();
    redis.server.pause();
    try {
      const started = Date.now();
      await expect(store.begin(scope, START, 5_000, 'closed')).rejects.toBeInstanceOf(IdempotencyUnavailableError);
      expect(Date.now() - started).toBeLessThan(1_000);
      const degraded = await store.begin(scope, START, 5_000, 'local');
      expect(degraded).toMatchObject({ kind: 'new', by: 'local' });
      expect(await store.begin(scope, START, 5_000, 'open')).toMatchObject({ kind: 'in_flight', by: 'local' });
      expect(await store.complete(tokenOf(degraded), answer())).toBe(true);
      redis.server.resume();
      await sleep(300);
      // The closed call's late script took the record; nobody can know whether a call was sent under it.
      expect(await redis.client.hget(idempotencyRecordKey(scope), 'st')).toBe('u');
      const after = await store.begin(scope, START, 5_000, 'closed');
      expect(after).toMatchObject({ kind: 'unknown_outcome', by: 'redis' });
    } finally {
      redis.server.resume();
      stalled.disconnect();
    }
  });

  it('transitions never throw: a failed complete returns false', async () => {
    const dead = new Redis(1, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true });
    dead.on('error', () => undefined);
    const store = createModalIdempotencyStore({
      redis: createRedisIdempotencyStore(dead),
      local: createLocalIdempotencyStore(),
    });
    const fake: IdempotencyToken = { by: 'redis', record: idempotencyRecordKey(newScope()), nonce: 'x' };
    try {
      expect(await store.complete(fake, answer())).toBe(false);
      expect(await store.begin(newScope(), START, 5_000, 'local')).toMatchObject({ kind: 'new', by: 'local' });
    } finally {
      dead.disconnect();
    }
  });
});

describe('local idempotency store bound', () => {
  it('refuses (503) rather than evict a live record when full', async () => {
    let now = 0;
    const store = createLocalIdempotencyStore({ maxEntries: 1, retentionMs: 100, now: () => now });
    await store.begin(newScope(), START, 50);
    await expect(store.begin(newScope(), START, 50)).rejects.toBeInstanceOf(IdempotencyUnavailableError);
    now += 151;
    expect((await store.begin(newScope(), START, 50)).kind).toBe('new');
  });
});

describe('parseIdempotencyKey', () => {
  it.each([
    ['"8e03978e-40d5-43e8-bc93-6894a57f9324"', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['  "order 42"\t', 'order 42'],
    ['"a \\"quoted\\" \\\\ key"', 'a "quoted" \\ key'],
    [`"${'k'.repeat(255)}"`, 'k'.repeat(255)],
    ['"~!@#$%^&*()"', '~!@#$%^&*()'],
    // Bare keys, as many clients send them: the same record as the quoted form.
    ['8e03978e-40d5', '8e03978e-40d5'],
    ['c2VjcmV0Cg==', 'c2VjcmV0Cg=='],
    [`${'k'.repeat(255)}`, 'k'.repeat(255)],
  ])('accepts %s', (header, key) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: true, key });
  });

  it.each<[string | undefined, IdempotencyKeyProblem]>([
    [undefined, 'missing'],
    ['   ', 'missing'],
    ['""', 'empty'],
    ["'single'", 'not_a_string'],
    ['two words', 'not_a_string'],
    ['-leading-dash', 'not_a_string'],
    ['a,b', 'not_a_string'],
    [`${'k'.repeat(256)}`, 'too_long'],
    ['"caf\u00e9"', 'invalid_character'],
    ['"tab\there"', 'invalid_character'],
    ['"a\\nb"', 'invalid_escape'],
    ['"open', 'unterminated'],
    ['"ends with backslash\\', 'invalid_escape'],
    ['"k";v=1', 'parameters_not_supported'],
    ['"a", "b"', 'trailing_characters'],
    [`"${'k'.repeat(256)}"`, 'too_long'],
  ])('refuses %j as %s', (header, problem) => {
    expect(parseIdempotencyKey(header)).toEqual({ ok: false, problem });
  });
});
