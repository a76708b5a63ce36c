// One resume or stop of a run in flight at a time, across instances: a Redis lease lock, an in-process fallback with
// the same interface, and a wrapper that applies the org's onRedisError mode.
import { randomBytes } from 'node:crypto';
import type { Redis, Result } from 'ioredis';
import type { OnRedisError } from '../config/schema.js';
import { batchWritesThisTurn, RedisDeadlineError, withDeadline, type RedisClient } from '../redis/client.js';
import { isValidOrg, isValidRuuid } from '../snaplogic/names.js';
import { RedisUnavailableError } from '../redis/unavailable.js';

/** Which lock decided: Redis (shared by every instance) or this process's fallback (for a response header). */
export type LockDecider = 'redis' | 'local';

/**
 * What the lock is taken for: a resume, or anything that may take over the hold a recent resume left (a stop, or a
 * resume that reads the run's state before it forwards).
 */
export type LockPurpose = 'start' | 'stop';

export type RunLockResult =
  | {
      readonly ok: true;
      readonly by: LockDecider;
      /**
       * Frees the lock if this holder still has it; never throws (a lost release ends with the lease). With
       * `holdResumeMs` > 0 (after SnapLogic accepted a resume) the run stays closed to resumes for that long, so a
       * duplicate arriving just after the first is refused rather than sent; a stop may take the lock at once.
       */
      release(holdResumeMs?: number): Promise<void>;
    }
  | { readonly ok: false; readonly by: LockDecider; readonly retryAfterMs: number };

export interface RunLock {
  /**
   * Takes the lock of `{org}/{ruuid}` for at most `leaseMs` (bound it by the upstream timeout: a crashed
   * holder's lock frees itself when the lease ends). `org` and `ruuid` must already be validated.
   */
  acquire(org: string, ruuid: string, leaseMs: number, purpose?: LockPurpose): Promise<RunLockResult>;
}

/** The value a held-after-resume lock keeps: a prefix no holder token (hex) can have. */
const RESUMED_PREFIX = 'resumed:';

/**
 * The lock's key, hash-tagged by org like the limiter's (`rl:{org:…}:…`), so a later script touching several of an
 * org's keys stays in one Cluster slot. The key is built only from an org and a runtime id that passed the routing
 * checks (src/snaplogic/names.ts); they are checked again here, cheaply, so no caller text can shape a key name.
 * Throws a TypeError on an invalid name: that is a bug in the caller, not a request to refuse.
 */
export function runLockKey(org: string, ruuid: string): string {
  if (!isValidOrg(org) || !isValidRuuid(ruuid)) throw new TypeError('run lock: org or ruuid not validated');
  return `run:{org:${org}}:${ruuid}:lock`;
}

/**
 * KEYS[1]  the run's lock key
 * ARGV[1]  this holder's random token
 * ARGV[2]  lease in ms
 * ARGV[3]  purpose: 'stop' may take over a hold left by an accepted resume (value 'resumed:…'); anything else not
 * Returns -1 when the lock was taken, else the ms left on the holder's lease or hold (at least 1).
 */
export const ACQUIRE_SCRIPT = `
local key = KEYS[1]
local token = ARGV[1]
local lease_ms = ARGV[2]
local held = redis.call('GET', key)
if (not held) or (ARGV[3] == 'stop' and string.sub(held, 1, ${RESUMED_PREFIX.length}) == '${RESUMED_PREFIX}') then
  redis.call('SET', key, token, 'PX', lease_ms)
  return -1
end
local left = redis.call('PTTL', key)
if left < 1 then left = 1 end
return left
`;

/**
 * KEYS[1]  the run's lock key
 * ARGV[1]  the releasing holder's token
 * ARGV[2]  hold after an accepted resume, in ms (absent or 0: none)
 * Deletes the key (or turns it into a resume hold) only if it still holds that token: a holder whose lease ran out
 * never frees its successor's lock. Returns 1 when released, 0 otherwise.
 */
export const RELEASE_SCRIPT = `
local key = KEYS[1]
local token = ARGV[1]
if redis.call('GET', key) ~= token then return 0 end
local hold = tonumber(ARGV[2]) or 0
if hold > 0 then
  redis.call('SET', key, '${RESUMED_PREFIX}' .. token, 'PX', math.floor(hold))
  return 1
end
return redis.call('DEL', key)
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    snapgateRunLock(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>;
    snapgateRunUnlock(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>;
  }
}

function defineLockCommands(client: RedisClient): void {
  if (typeof (client as Redis).snapgateRunLock !== 'function') {
    client.defineCommand('snapgateRunLock', { lua: ACQUIRE_SCRIPT });
    client.defineCommand('snapgateRunUnlock', { lua: RELEASE_SCRIPT });
  }
}

/**
 * Holder tokens: a random prefix per lock object, then a counter, so every acquire in any instance has its own token
 * without drawing random bytes per call. Tokens are never shown to callers; they only tell holders apart.
 */
function tokens(): () => string {
  const prefix = randomBytes(12).toString('hex');
  let n = 0;
  return () => `${prefix}.${(n++).toString(36)}`;
}

/**
 * An acquire that missed its deadline: the script may still run and take the lock under our token. Whoever decided
 * the call instead calls `settle()` when the call ends (at once when it was refused); a lock the late script took
 * is then released, not left to block other instances until its lease ends.
 */
export class LateAcquire {
  private taken = false;
  private settled = false;

  constructor(
    command: Promise<number>,
    private readonly release: () => Promise<void>,
  ) {
    command.then(
      (answer) => {
        this.taken = answer === -1;
        if (this.settled) this.free();
      },
      () => undefined,
    );
  }

  settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.free();
  }

  private free(): void {
    if (!this.taken) return;
    this.taken = false;
    void this.release();
  }
}

/** The lock's answer did not come within its deadline; settle `late` when the call ends. */
export class RunLockDeadlineError extends RedisDeadlineError {
  constructor(
    ms: number,
    readonly late: LateAcquire,
  ) {
    super(ms);
  }
}

/**
 * The shared lock. Each Redis call is raced against `deadlineMs`. `acquire` throws on any Redis error, and
 * RunLockDeadlineError (a RedisDeadlineError) when Redis does not answer in time; `release` never throws.
 */
export function createRedisRunLock(client: RedisClient, options: { deadlineMs?: number } = {}): RunLock {
  const deadlineMs = options.deadlineMs ?? 1_000;
  const newToken = tokens();
  defineLockCommands(client);
  const releaser =
    (key: string, token: string) =>
    async (holdResumeMs = 0): Promise<void> => {
      const hold = Math.max(0, Math.ceil(holdResumeMs));
      // Corked: the releases of calls answered in one turn (and what else goes to Redis then) leave in one write.
      batchWritesThisTurn(client);
      await withDeadline((client as Redis).snapgateRunUnlock(1, key, token, hold), deadlineMs).catch(() => undefined);
    };
  return {
    async acquire(org, ruuid, leaseMs, purpose = 'start') {
      const key = runLockKey(org, ruuid);
      const token = newToken();
      const release = releaser(key, token);
      const lease = Math.max(1, Math.ceil(leaseMs));
      batchWritesThisTurn(client);
      const command = (client as Redis).snapgateRunLock(1, key, token, lease, purpose);
      let answer: number;
      try {
        answer = await withDeadline(command, deadlineMs);
      } catch (err) {
        if (!(err instanceof RedisDeadlineError)) throw err;
        throw new RunLockDeadlineError(deadlineMs, new LateAcquire(command, release));
      }
      if (answer !== -1) return { ok: false, by: 'redis', retryAfterMs: Number(answer) };
      let held = true;
      return {
        ok: true,
        by: 'redis',
        release: async (holdResumeMs) => {
          if (!held) return;
          held = false;
          await release(holdResumeMs);
        },
      };
    },
  };
}

export interface LocalRunLockOptions {
  /** Most locks held at once; past it (after dropping expired ones) an acquire is refused for 1 s. Default 10,000. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * This process's lock: a Map from key to holder with an expiry, same interface and semantics as the Redis lock
 * (lease, holder-only release). It excludes calls within one instance only. Expired entries are dropped lazily
 * (no timers); the map is bounded by `maxEntries`.
 */
export function createLocalRunLock(options: LocalRunLockOptions = {}): RunLock {
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const newToken = tokens();
  const held = new Map<string, { token: string; expiresAt: number; resumed: boolean }>();
  const sweep = (at: number): void => {
    for (const [key, entry] of held) if (entry.expiresAt <= at) held.delete(key);
  };
  const decide = (org: string, ruuid: string, leaseMs: number, purpose: LockPurpose): RunLockResult => {
    const key = runLockKey(org, ruuid);
    const at = now();
    const current = held.get(key);
    if (current !== undefined && current.expiresAt > at && !(purpose === 'stop' && current.resumed)) {
      return { ok: false, by: 'local', retryAfterMs: Math.max(1, current.expiresAt - at) };
    }
    if (current === undefined && held.size >= maxEntries) sweep(at);
    if (current === undefined && held.size >= maxEntries) return { ok: false, by: 'local', retryAfterMs: 1_000 };
    const token = newToken();
    held.set(key, { token, expiresAt: at + Math.max(1, Math.ceil(leaseMs)), resumed: false });
    return {
      ok: true,
      by: 'local',
      release: (holdResumeMs = 0) => {
        if (held.get(key)?.token !== token) return Promise.resolve();
        if (holdResumeMs > 0) held.set(key, { token, expiresAt: now() + Math.ceil(holdResumeMs), resumed: true });
        else held.delete(key);
        return Promise.resolve();
      },
    };
  };
  return {
    // A throw (an unvalidated name) becomes a rejection, as from the Redis lock.
    acquire: (org, ruuid, leaseMs, purpose = 'start') =>
      new Promise((resolve) => resolve(decide(org, ruuid, leaseMs, purpose))),
  };
}

/** Redis cannot decide the lock and the org's mode is `closed`: the router answers 503 with Retry-After. */
export class RunLockUnavailableError extends RedisUnavailableError {
  readonly code = 'ERR_SNAPGATE_RUN_LOCK_UNAVAILABLE';
  constructor(retryAfterMs: number, options?: { cause?: unknown }) {
    super('run lock', retryAfterMs, options);
  }
}

/** The run lock as the router uses it: the org's onRedisError mode is passed per call. */
export interface ModalRunLock {
  acquire(
    org: string,
    ruuid: string,
    leaseMs: number,
    mode: OnRedisError,
    purpose?: LockPurpose,
  ): Promise<RunLockResult>;
}

/**
 * Redis first; when a Redis call fails (error or deadline), the org's mode decides:
 * - `closed`: throws RunLockUnavailableError (`retryAfterMs`, default 1 s);
 * - `local`: this process's lock decides (`by: 'local'`);
 * - `open`: the same as `local`. For the limiter `open` means "admit without counting", but a lock that admits
 *   everything would let two resumes of one run through; the in-process lock costs nothing and still excludes
 *   calls on this instance, which is the most an outage allows.
 * A Redis answer (taken or busy) is always final. An acquire that missed its deadline is settled when the call
 * ends, so a lock its late script took is released with it.
 */
export function createModalRunLock(options: { redis: RunLock; local: RunLock; retryAfterMs?: number }): ModalRunLock {
  const retryAfterMs = options.retryAfterMs ?? 1_000;
  return {
    async acquire(org, ruuid, leaseMs, mode, purpose = 'start') {
      // An unvalidated name is the caller's bug: it must surface as such, not as an outage.
      runLockKey(org, ruuid);
      try {
        return await options.redis.acquire(org, ruuid, leaseMs, purpose);
      } catch (err) {
        const late = err instanceof RunLockDeadlineError ? err.late : undefined;
        if (mode === 'closed') {
          late?.settle();
          throw new RunLockUnavailableError(retryAfterMs, { cause: err });
        }
        const decision = await options.local.acquire(org, ruuid, leaseMs, purpose);
        if (!decision.ok || late === undefined) {
          late?.settle();
          return decision;
        }
        return {
          ...decision,
          release: (holdResumeMs) => {
            late.settle();
            return decision.release(holdResumeMs);
          },
        };
      }
    },
  };
}
