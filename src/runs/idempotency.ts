// Idempotency-Key records shared by every instance: one Redis hash per caller's key, moved through its states by
// Lua scripts; an in-process store with the same interface; a wrapper applying the org's onRedisError mode.
import { randomBytes } from 'node:crypto';
import type { Redis, Result } from 'ioredis';
import type { OnRedisError } from '../config/schema.js';
import { RedisDeadlineError, withDeadline, type RedisClient } from '../redis/client.js';
import type { LockDecider } from './run-lock.js';
import { RedisUnavailableError } from '../redis/unavailable.js';

/** The answer of a call, as handed to `complete`. Only allow-listed headers and a capped body are kept. */
export interface AnswerToStore {
  readonly status: number;
  readonly headers: Iterable<readonly [string, string]> | Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/** A stored answer. A body over the cap was not stored: `stored: false` with its size, for the replay to say so. */
export interface StoredAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { readonly stored: true; readonly bytes: Buffer } | { readonly stored: false; readonly size: number };
}

/** Holding a record in flight; only its holder can complete, mark unknown or abandon it. Opaque to callers. */
export interface IdempotencyToken {
  readonly by: LockDecider;
  readonly record: string;
  readonly nonce: string;
}

export type BeginResult =
  /** First use of the key: forward the call, then complete / unknown / abandon. */
  | { readonly kind: 'new'; readonly by: LockDecider; readonly token: IdempotencyToken }
  /** Another call with this key holds it (409); its lease ends in `retryAfterMs`. */
  | { readonly kind: 'in_flight'; readonly by: LockDecider; readonly retryAfterMs: number }
  | { readonly kind: 'replay'; readonly by: LockDecider; readonly answer: StoredAnswer }
  /** The key was first used for another action or target (422). */
  | { readonly kind: 'mismatch'; readonly by: LockDecider }
  /**
   * An earlier call with this key was sent but its outcome is unknown (marked so, or its holder's lease ended).
   * This caller now holds the record, like `new`: read the run's state, forward only if still Suspended, then
   * complete; or `unknown(token)` again (e.g. to answer 409 with the observed state), or abandon, which puts the
   * record back to unknown rather than freeing it.
   */
  | { readonly kind: 'unknown_outcome'; readonly by: LockDecider; readonly token: IdempotencyToken };

export interface IdempotencyStore {
  /** `scope`: idempotencyScope(), `fingerprint`: requestFingerprint(); `leaseMs`: bound it by the upstream timeout. */
  begin(scope: string, fingerprint: string, leaseMs: number): Promise<BeginResult>;
  /**
   * Stores the answer for replays; false when the token no longer holds the record (its lease ran out and a
   * retry took over).
   */
  complete(token: IdempotencyToken, answer: AnswerToStore): Promise<boolean>;
  /** The call was sent, its outcome is unknown: the next begin gets unknown_outcome. */
  unknown(token: IdempotencyToken): Promise<boolean>;
  /** Nothing was sent: the key is free again (back to unknown if this token came from unknown_outcome). */
  abandon(token: IdempotencyToken): Promise<boolean>;
}

/** Response headers a replay may carry. Everything else (Set-Cookie, Authorization, …) is never stored. */
export const DEFAULT_STORED_HEADERS: readonly string[] = ['content-type', 'content-language', 'x-sl-statuscode'];

/** Headers that may carry a secret: refused in the allow-list at start-up. */
const NEVER_STORED = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'www-authenticate',
  'proxy-authenticate',
]);

export interface IdempotencyOptions {
  /** How long a finished record is kept, in ms, counted from its outcome. Default 24 h. */
  retentionMs?: number;
  /** Largest body stored, in bytes. Default 64 KiB. */
  bodyCapBytes?: number;
  /** Lower-case response header names kept with an answer. Default DEFAULT_STORED_HEADERS. */
  storedHeaders?: readonly string[];
}

interface Settings {
  retentionMs: number;
  bodyCapBytes: number;
  storedHeaders: ReadonlySet<string>;
}

/** Checks the options once; throws on a secret-bearing header in the allow-list or a non-positive number. */
function settingsOf(options: IdempotencyOptions): Settings {
  const retentionMs = options.retentionMs ?? 24 * 60 * 60 * 1_000;
  const bodyCapBytes = options.bodyCapBytes ?? 64 * 1024;
  if (!(retentionMs > 0) || !(bodyCapBytes >= 0)) throw new RangeError('idempotency: retention and body cap');
  const storedHeaders = new Set((options.storedHeaders ?? DEFAULT_STORED_HEADERS).map((h) => h.toLowerCase()));
  for (const h of storedHeaders) {
    if (NEVER_STORED.has(h)) throw new TypeError(`idempotency: header ${h} may carry a secret and is never stored`);
  }
  return { retentionMs, bodyCapBytes, storedHeaders };
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The record's key. Only a SHA-256 hex (from idempotencyScope) is accepted, so no caller text names a key. */
export function idempotencyRecordKey(scope: string): string {
  if (!HEX64.test(scope)) throw new TypeError('idempotency: scope must be a SHA-256 hex digest');
  return `idem:v1:${scope}`;
}

function checkFingerprint(fingerprint: string): void {
  if (!HEX64.test(fingerprint)) throw new TypeError('idempotency: fingerprint must be a SHA-256 hex digest');
}

interface EncodedAnswer {
  s: number;
  h: Record<string, string>;
  b?: string;
  n: number;
}

/** The JSON kept for an answer: allow-listed headers only, the body (base64) only when within the cap. */
function encodeAnswer(answer: AnswerToStore, settings: Settings): string {
  if (!Number.isInteger(answer.status) || answer.status < 100 || answer.status > 599) {
    throw new RangeError('idempotency: answer status');
  }
  const entries: Iterable<readonly [string, string]> =
    Symbol.iterator in answer.headers ? answer.headers : Object.entries(answer.headers);
  const h: Record<string, string> = {};
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (settings.storedHeaders.has(lower)) h[lower] = value;
  }
  const n = answer.body.byteLength;
  const b = n <= settings.bodyCapBytes ? Buffer.from(answer.body).toString('base64') : undefined;
  return JSON.stringify({ s: answer.status, h, n, ...(b !== undefined ? { b } : {}) } satisfies EncodedAnswer);
}

function decodeAnswer(json: string): StoredAnswer {
  const e = JSON.parse(json) as EncodedAnswer;
  return {
    status: e.s,
    headers: e.h,
    body: e.b !== undefined ? { stored: true, bytes: Buffer.from(e.b, 'base64') } : { stored: false, size: e.n },
  };
}

const newNonce = (): string => randomBytes(16).toString('hex');

/**
 * The record is a hash: fp (fingerprint), st ('f' in flight | 'u' outcome unknown | 'd' done), tok (holder's
 * nonce) and until (lease end, ms on Redis's clock) while in flight, was ('u' when taken over from unknown),
 * ans (the encoded answer) when done.
 * KEYS[1]  the record
 * ARGV[1]  fingerprint   ARGV[2]  nonce   ARGV[3]  lease ms   ARGV[4]  retention ms
 * Returns {'new'} | {'mismatch'} | {'replay', ans} | {'in_flight', ms left} | {'unknown_outcome'}.
 * An in-flight record whose lease ended reads as unknown: its holder may have sent the call before it vanished.
 * While in flight the key lives lease + retention, so a crashed holder's record outlives its lease.
 */
export const BEGIN_SCRIPT = `
local key = KEYS[1]
local fp, nonce = ARGV[1], ARGV[2]
local lease, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec = redis.call('HMGET', key, 'fp', 'st', 'until', 'ans')
local function hold(was)
  redis.call('HSET', key, 'fp', fp, 'st', 'f', 'tok', nonce, 'until', string.format('%.0f', now + lease), 'was', was)
  redis.call('PEXPIRE', key, lease + retention)
end
if not rec[1] then
  hold('')
  return {'new'}
end
if rec[1] ~= fp then return {'mismatch'} end
if rec[2] == 'd' then return {'replay', rec[4]} end
if rec[2] == 'f' and tonumber(rec[3]) > now then return {'in_flight', string.format('%.0f', tonumber(rec[3]) - now)} end
hold('u')
return {'unknown_outcome'}
`;

/**
 * KEYS[1]  the record
 * ARGV[1]  holder's nonce   ARGV[2]  'd' (done) | 'u' (unknown) | 'a' (abandon)   ARGV[3]  encoded answer or ''
 * ARGV[4]  retention ms
 * Acts only while the nonce holds the record in flight; returns 1 if it did, else 0. Done and unknown keep the
 * record for the retention from now; abandon deletes it, or puts it back to unknown when taken over from unknown.
 */
export const FINISH_SCRIPT = `
local key = KEYS[1]
local nonce, to, ans, retention = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rec = redis.call('HMGET', key, 'st', 'tok', 'was')
if rec[1] ~= 'f' or rec[2] ~= nonce then return 0 end
if to == 'a' and rec[3] ~= 'u' then
  redis.call('DEL', key)
  return 1
end
redis.call('HDEL', key, 'tok', 'until', 'was')
if to == 'd' then
  redis.call('HSET', key, 'st', 'd', 'ans', ans)
else
  redis.call('HSET', key, 'st', 'u')
end
redis.call('PEXPIRE', key, retention)
return 1
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    snapgateIdemBegin(numKeys: number, ...keysAndArgs: (string | number)[]): Result<string[], Context>;
    snapgateIdemFinish(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>;
  }
}

function defineIdempotencyCommands(client: RedisClient): void {
  if (typeof (client as Redis).snapgateIdemBegin !== 'function') {
    client.defineCommand('snapgateIdemBegin', { lua: BEGIN_SCRIPT });
    client.defineCommand('snapgateIdemFinish', { lua: FINISH_SCRIPT });
  }
}

function beginResult(raw: string[], token: IdempotencyToken): BeginResult {
  switch (raw[0]) {
    case 'new':
      return { kind: 'new', by: 'redis', token };
    case 'unknown_outcome':
      return { kind: 'unknown_outcome', by: 'redis', token };
    case 'in_flight':
      return { kind: 'in_flight', by: 'redis', retryAfterMs: Math.max(1, Number(raw[1])) };
    case 'replay':
      return { kind: 'replay', by: 'redis', answer: decodeAnswer(raw[1] ?? '') };
    case 'mismatch':
      return { kind: 'mismatch', by: 'redis' };
    default:
      throw new Error('idempotency: unexpected script answer');
  }
}

/**
 * The shared store. Every Redis call is raced against `deadlineMs` (default 1 s); all methods throw on a Redis
 * error or a missed deadline. A begin that missed its deadline may still run and take the record: when its late
 * answer shows it did, the record is marked unknown, since whoever decided instead may have sent the call.
 */
export function createRedisIdempotencyStore(
  client: RedisClient,
  options: IdempotencyOptions & { deadlineMs?: number } = {},
): IdempotencyStore {
  const settings = settingsOf(options);
  const deadlineMs = options.deadlineMs ?? 1_000;
  defineIdempotencyCommands(client);
  const finish = async (token: IdempotencyToken, to: 'd' | 'u' | 'a', ans: string): Promise<boolean> => {
    if (token.by !== 'redis') throw new TypeError('idempotency: token from another store');
    const command = (client as Redis).snapgateIdemFinish(1, token.record, token.nonce, to, ans, settings.retentionMs);
    return (await withDeadline(command, deadlineMs)) === 1;
  };
  return {
    async begin(scope, fingerprint, leaseMs) {
      const record = idempotencyRecordKey(scope);
      checkFingerprint(fingerprint);
      const token: IdempotencyToken = Object.freeze({ by: 'redis', record, nonce: newNonce() });
      const lease = Math.max(1, Math.ceil(leaseMs));
      const command = (client as Redis).snapgateIdemBegin(
        1,
        record,
        fingerprint,
        token.nonce,
        lease,
        settings.retentionMs,
      );
      try {
        return beginResult(await withDeadline(command, deadlineMs), token);
      } catch (err) {
        if (err instanceof RedisDeadlineError) {
          command.then(
            (late) => {
              if (late[0] === 'new' || late[0] === 'unknown_outcome') void finish(token, 'u', '').catch(() => false);
            },
            () => undefined,
          );
        }
        throw err;
      }
    },
    complete: (token, answer) => finish(token, 'd', encodeAnswer(answer, settings)),
    unknown: (token) => finish(token, 'u', ''),
    abandon: (token) => finish(token, 'a', ''),
  };
}

interface LocalRecord {
  fp: string;
  st: 'f' | 'u' | 'd';
  nonce: string;
  until: number;
  was: '' | 'u';
  ans: string;
  expiresAt: number;
}

/**
 * This process's store, for when Redis is unavailable: the same states and transitions as the scripts above, in a
 * Map with lazy expiry. It covers retries reaching this instance only. Bounded by `maxEntries` (default 1,000;
 * each record holds up to the body cap): when full of live records, begin throws IdempotencyUnavailableError
 * rather than evict a record whose loss could let a retry resume twice.
 */
export function createLocalIdempotencyStore(
  options: IdempotencyOptions & { maxEntries?: number; now?: () => number } = {},
): IdempotencyStore {
  const settings = settingsOf(options);
  const maxEntries = options.maxEntries ?? 1_000;
  const now = options.now ?? Date.now;
  const records = new Map<string, LocalRecord>();
  const live = (record: string, at: number): LocalRecord | undefined => {
    const r = records.get(record);
    if (r !== undefined && r.expiresAt <= at) records.delete(record);
    return r !== undefined && r.expiresAt > at ? r : undefined;
  };
  const begin = (scope: string, fingerprint: string, leaseMs: number): BeginResult => {
    const record = idempotencyRecordKey(scope);
    checkFingerprint(fingerprint);
    const at = now();
    const r = live(record, at);
    const lease = Math.max(1, Math.ceil(leaseMs));
    const hold = (was: '' | 'u'): IdempotencyToken => {
      const token: IdempotencyToken = Object.freeze({ by: 'local', record, nonce: newNonce() });
      const expiresAt = at + lease + settings.retentionMs;
      records.set(record, { fp: fingerprint, st: 'f', nonce: token.nonce, until: at + lease, was, ans: '', expiresAt });
      return token;
    };
    if (r === undefined) {
      if (records.size >= maxEntries) for (const key of records.keys()) live(key, at);
      if (records.size >= maxEntries) throw new IdempotencyUnavailableError(1_000);
      return { kind: 'new', by: 'local', token: hold('') };
    }
    if (r.fp !== fingerprint) return { kind: 'mismatch', by: 'local' };
    if (r.st === 'd') return { kind: 'replay', by: 'local', answer: decodeAnswer(r.ans) };
    if (r.st === 'f' && r.until > at) return { kind: 'in_flight', by: 'local', retryAfterMs: r.until - at };
    return { kind: 'unknown_outcome', by: 'local', token: hold('u') };
  };
  const finish = (token: IdempotencyToken, to: 'd' | 'u' | 'a', ans: string): Promise<boolean> => {
    if (token.by !== 'local') throw new TypeError('idempotency: token from another store');
    const at = now();
    const r = live(token.record, at);
    if (r === undefined || r.st !== 'f' || r.nonce !== token.nonce) return Promise.resolve(false);
    if (to === 'a' && r.was !== 'u') {
      records.delete(token.record);
      return Promise.resolve(true);
    }
    records.set(token.record, {
      ...r,
      st: to === 'd' ? 'd' : 'u',
      nonce: '',
      was: '',
      ans,
      expiresAt: at + settings.retentionMs,
    });
    return Promise.resolve(true);
  };
  return {
    // A throw (bad scope, store full) becomes a rejection, as from the Redis store.
    begin: (scope, fingerprint, leaseMs) => new Promise((resolve) => resolve(begin(scope, fingerprint, leaseMs))),
    complete: (token, answer) => new Promise((resolve) => resolve(finish(token, 'd', encodeAnswer(answer, settings)))),
    unknown: (token) => new Promise((resolve) => resolve(finish(token, 'u', ''))),
    abandon: (token) => new Promise((resolve) => resolve(finish(token, 'a', ''))),
  };
}

/** Redis cannot serve the key and the org's mode is `closed` (or the local store is full): the router answers 503. */
export class IdempotencyUnavailableError extends RedisUnavailableError {
  readonly code = 'ERR_SNAPGATE_IDEMPOTENCY_UNAVAILABLE';
  constructor(retryAfterMs: number, options?: { cause?: unknown }) {
    super('idempotency store', retryAfterMs, options);
  }
}

/** The store as the router uses it: begin takes the org's mode; transitions go to the store that issued the token. */
export interface ModalIdempotencyStore extends Omit<IdempotencyStore, 'begin'> {
  begin(scope: string, fingerprint: string, leaseMs: number, mode: OnRedisError): Promise<BeginResult>;
}

/**
 * Redis first; when begin's Redis call fails (error or deadline), the org's mode decides:
 * - `closed`: throws IdempotencyUnavailableError (`retryAfterMs`, default 1 s);
 * - `local` and `open`: the in-process store decides (`by: 'local'`). `open` cannot mean "no check": a retry would
 *   then resume the run again, so it degrades like `local`.
 * A degraded record lives in this instance only: a retry reaching another instance, or arriving after Redis is back,
 * is not matched with it (the run lock and the run's state still stand in the way of a double resume).
 * complete / unknown / abandon never throw: when Redis fails them they return false, and the record stays in
 * flight until its lease ends, after which it reads as unknown_outcome (the safe reading).
 */
export function createModalIdempotencyStore(options: {
  redis: IdempotencyStore;
  local: IdempotencyStore;
  retryAfterMs?: number;
}): ModalIdempotencyStore {
  const retryAfterMs = options.retryAfterMs ?? 1_000;
  const storeOf = (token: IdempotencyToken): IdempotencyStore => (token.by === 'redis' ? options.redis : options.local);
  const safely = (p: () => Promise<boolean>): Promise<boolean> => p().catch(() => false);
  return {
    async begin(scope, fingerprint, leaseMs, mode) {
      // Invalid arguments are the caller's bug: they must surface as such, not as an outage.
      idempotencyRecordKey(scope);
      checkFingerprint(fingerprint);
      try {
        return await options.redis.begin(scope, fingerprint, leaseMs);
      } catch (err) {
        if (mode === 'closed') throw new IdempotencyUnavailableError(retryAfterMs, { cause: err });
        return options.local.begin(scope, fingerprint, leaseMs);
      }
    },
    complete: (token, answer) => safely(() => storeOf(token).complete(token, answer)),
    unknown: (token) => safely(() => storeOf(token).unknown(token)),
    abandon: (token) => safely(() => storeOf(token).abandon(token)),
  };
}
