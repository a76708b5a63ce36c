// The run lock on a real redis-server: one holder at a time, holder-only release, lease expiry, the in-process
// fallback, and each onRedisError mode when Redis stalls.
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  createLocalRunLock,
  createModalRunLock,
  createRedisRunLock,
  runLockKey,
  RunLockUnavailableError,
  type RunLock,
} from '../../src/runs/run-lock.js';
import { waitForRedis } from '../../src/redis/client.js';
import { sleep } from '../helpers/wait.js';
import { useRedis } from '../helpers/world.js';

const redis = useRedis();
const newRuuid = () => `${randomBytes(12).toString('hex')}_${randomUUID()}`;
const ORG = 'Acme-Prod';

describe.each<[string, () => RunLock]>([
  ['redis', () => createRedisRunLock(redis.client, { deadlineMs: 2_000 })],
  ['local', () => createLocalRunLock()],
])('%s run lock', (name, make) => {
  it('lets exactly one of 20 concurrent acquirers win; the others get a Retry-After within the lease', async () => {
    const lock = make();
    const ruuid = newRuuid();
    const results = await Promise.all(Array.from({ length: 20 }, () => lock.acquire(ORG, ruuid, 5_000)));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    for (const r of results) {
      expect(r.by).toBe(name);
      if (!r.ok) {
        expect(r.retryAfterMs).toBeGreaterThan(0);
        expect(r.retryAfterMs).toBeLessThanOrEqual(5_000);
      }
    }
  });

  it('frees the lock on release, and locks runs independently', async () => {
    const lock = make();
    const ruuid = newRuuid();
    const first = await lock.acquire(ORG, ruuid, 5_000);
    expect((await lock.acquire(ORG, newRuuid(), 5_000)).ok).toBe(true);
    expect((await lock.acquire('Other-Org', ruuid, 5_000)).ok).toBe(true);
    expect((await lock.acquire(ORG, ruuid, 5_000)).ok).toBe(false);
    if (!first.ok) throw new Error('first acquire refused');
    await first.release();
    expect((await lock.acquire(ORG, ruuid, 5_000)).ok).toBe(true);
  });

  it('frees a crashed holder’s lock when its lease ends', async () => {
    const lock = make();
    const ruuid = newRuuid();
    expect((await lock.acquire(ORG, ruuid, 150)).ok).toBe(true); // never released
    expect((await lock.acquire(ORG, ruuid, 150)).ok).toBe(false);
    await sleep(250);
    expect((await lock.acquire(ORG, ruuid, 5_000)).ok).toBe(true);
  });

  it('never lets a holder whose lease ran out free its successor’s lock', async () => {
    const lock = make();
    const ruuid = newRuuid();
    const late = await lock.acquire(ORG, ruuid, 100);
    await sleep(200);
    const successor = await lock.acquire(ORG, ruuid, 5_000);
    expect(successor.ok).toBe(true);
    if (!late.ok) throw new Error('first acquire refused');
    await late.release();
    await late.release();
    expect((await lock.acquire(ORG, ruuid, 5_000)).ok).toBe(false);
  });

  it('after an accepted resume, holds the run closed to resumes for the hold only; a stop takes it at once', async () => {
    const lock = make();
    const ruuid = newRuuid();
    const resume = await lock.acquire(ORG, ruuid, 5_000, 'start');
    if (!resume.ok) throw new Error('first acquire refused');
    await resume.release(300);
    const duplicate = await lock.acquire(ORG, ruuid, 5_000, 'start');
    expect(duplicate.ok).toBe(false);
    if (!duplicate.ok) expect(duplicate.retryAfterMs).toBeLessThanOrEqual(300);
    await sleep(400);
    const later = await lock.acquire(ORG, ruuid, 5_000, 'start');
    expect(later.ok).toBe(true);
    if (!later.ok) throw new Error('acquire after the hold refused');
    await later.release(5_000);
    // A stop is not held back by a resume's hold, and holds the lock as usual (no resume or stop beside it).
    const stop = await lock.acquire(ORG, ruuid, 5_000, 'stop');
    expect(stop.ok).toBe(true);
    expect((await lock.acquire(ORG, ruuid, 5_000, 'stop')).ok).toBe(false);
    expect((await lock.acquire(ORG, ruuid, 5_000, 'start')).ok).toBe(false);
    if (!stop.ok) throw new Error('stop refused');
    await stop.release();
    expect((await lock.acquire(ORG, ruuid, 5_000, 'start')).ok).toBe(true);
  });

  it('refuses a name that did not pass the routing checks, so no caller text shapes a key', async () => {
    const lock = make();
    await expect(lock.acquire('acme}:x', newRuuid(), 1_000)).rejects.toThrow(TypeError);
    await expect(lock.acquire(ORG, '../x', 1_000)).rejects.toThrow(TypeError);
  });
});

describe('redis run lock', () => {
  it('keys the lock by the org hash tag, holds a token of its own, and sets the lease as the key’s TTL', async () => {
    const lock = createRedisRunLock(redis.client);
    const ruuid = newRuuid();
    const key = runLockKey(ORG, ruuid);
    expect(key).toBe(`run:{org:${ORG}}:${ruuid}:lock`);
    const result = await lock.acquire(ORG, ruuid, 10_000);
    expect(result.ok).toBe(true);
    // A random prefix per lock, then a counter: another lock object (another instance) never shares a token.
    const token = await redis.client.get(key);
    expect(token).toMatch(/^[0-9a-f]{24}\.[0-9a-z]+$/);
    const ttl = await redis.client.pttl(key);
    expect(ttl).toBeGreaterThan(9_000);
    expect(ttl).toBeLessThanOrEqual(10_000);
    if (result.ok) await result.release();
    expect(await redis.client.exists(key)).toBe(0);
    const other = await createRedisRunLock(redis.client).acquire(ORG, ruuid, 10_000);
    expect(other.ok).toBe(true);
    expect((await redis.client.get(key))?.split('.')[0]).not.toBe(token?.split('.')[0]);
    if (other.ok) await other.release();
    expect(await redis.client.exists(key)).toBe(0);
  });

  it('is shared by two clients (two instances): the second is refused until the first releases', async () => {
    const other = new Redis(redis.server.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    try {
      const a = createRedisRunLock(redis.client);
      const b = createRedisRunLock(other);
      const ruuid = newRuuid();
      const held = await a.acquire(ORG, ruuid, 5_000);
      expect((await b.acquire(ORG, ruuid, 5_000)).ok).toBe(false);
      if (held.ok) await held.release();
      expect((await b.acquire(ORG, ruuid, 5_000)).ok).toBe(true);
    } finally {
      other.disconnect();
    }
  });
});

describe('local run lock', () => {
  it('refuses once maxEntries live locks are held, and makes room as leases end', async () => {
    let now = 1_000;
    const lock = createLocalRunLock({ maxEntries: 2, now: () => now });
    expect((await lock.acquire(ORG, newRuuid(), 100)).ok).toBe(true);
    expect((await lock.acquire(ORG, newRuuid(), 100)).ok).toBe(true);
    expect(await lock.acquire(ORG, newRuuid(), 100)).toEqual({ ok: false, by: 'local', retryAfterMs: 1_000 });
    now += 100;
    expect((await lock.acquire(ORG, newRuuid(), 100)).ok).toBe(true);
  });
});

describe('modal run lock when Redis stalls (SIGSTOP)', () => {
  it('decides within the deadline: closed refuses, local and open fall back; the late lock is released', async () => {
    const stalled = new Redis(redis.server.port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false });
    expect(await waitForRedis(stalled, 5_000)).toBe(true);
    const lock = createModalRunLock({
      redis: createRedisRunLock(stalled, { deadlineMs: 150 }),
      local: createLocalRunLock(),
    });
    const refusedRun = newRuuid();
    const fallbackRun = newRuuid();
    redis.server.pause();
    try {
      const started = Date.now();
      const refused = lock.acquire(ORG, refusedRun, 10_000, 'closed');
      await expect(refused).rejects.toBeInstanceOf(RunLockUnavailableError);
      await expect(refused).rejects.toMatchObject({ retryAfterMs: 1_000 });
      expect(Date.now() - started).toBeLessThan(1_000);

      const local = await lock.acquire(ORG, fallbackRun, 10_000, 'local');
      expect(local).toMatchObject({ ok: true, by: 'local' });
      // The fallback excludes on this instance, in either degraded mode.
      expect(await lock.acquire(ORG, fallbackRun, 10_000, 'open')).toMatchObject({ ok: false, by: 'local' });
      redis.server.resume();
      // The stalled scripts now run and take both locks. The refused call's is released at once; the fallback
      // call's is held (other instances see it) until that call releases.
      await sleep(300);
      expect(await redis.client.exists(runLockKey(ORG, refusedRun))).toBe(0);
      expect(await redis.client.exists(runLockKey(ORG, fallbackRun))).toBe(1);
      if (local.ok) await local.release();
      await sleep(100);
      expect(await redis.client.exists(runLockKey(ORG, fallbackRun))).toBe(0);
      expect(await lock.acquire(ORG, fallbackRun, 10_000, 'closed')).toMatchObject({ ok: true, by: 'redis' });
    } finally {
      redis.server.resume();
      stalled.disconnect();
    }
  });

  it('follows Redis’s answer when Redis answers, whatever the mode', async () => {
    const lock = createModalRunLock({ redis: createRedisRunLock(redis.client), local: createLocalRunLock() });
    const ruuid = newRuuid();
    expect(await lock.acquire(ORG, ruuid, 5_000, 'local')).toMatchObject({ ok: true, by: 'redis' });
    expect(await lock.acquire(ORG, ruuid, 5_000, 'closed')).toMatchObject({ ok: false, by: 'redis' });
  });

  it('falls back on a dead connection too', async () => {
    const dead = new Redis(1, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true });
    dead.on('error', () => undefined);
    const lock = createModalRunLock({ redis: createRedisRunLock(dead), local: createLocalRunLock() });
    try {
      expect(await lock.acquire(ORG, newRuuid(), 5_000, 'open')).toMatchObject({ ok: true, by: 'local' });
      await expect(lock.acquire(ORG, newRuuid(), 5_000, 'closed')).rejects.toBeInstanceOf(RunLockUnavailableError);
    } finally {
      dead.disconnect();
    }
  });
});
