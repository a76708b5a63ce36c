// Where an issuer's verification keys come from: a remote JWKS (cached, rotating), a JWKS file, a PEM key or a
// shared secret.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from '../log.js';

/** The issuer's keys could not be obtained, so a token could not be judged (503, not 401). */
export class KeysUnavailableError extends Error {
  readonly code = 'ERR_SNAPGATE_KEYS_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeysUnavailableError';
  }
}

export interface KeySource {
  /** Key lookup for jose's jwtVerify. Throws KeysUnavailableError when keys cannot be fetched. */
  readonly getKey: JWTVerifyGetKey | KeyObject | Uint8Array;
  /** True once keys are loaded; a remote source without keys tries a fetch, at most one per cooldown. */
  ready(): Promise<boolean>;
}

const MAX_JWKS_BYTES = 512 * 1024;
// With no keys at all, fetches are paced by the cooldown and never come closer than this, so a
// dead IdP costs one fetch per cooldown however many requests and readiness probes ask.
const MIN_FETCH_GAP_WITHOUT_KEYS_MS = 1_000;
// Unknown-kid refetches allowed back to back before the cooldown paces them.
const MISS_REFETCH_BURST = 3;

function parseJwks(text: string, where: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where} is not JSON`, { cause: err });
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error(`${where} has no "keys" array`);
  return parsed as JSONWebKeySet;
}

export interface RemoteJwksOptions {
  /** Per fetch, ms. */
  timeoutMs: number;
  /** Least time between two fetches that are not unknown-kid refetches (those get a burst of 3), ms. */
  cooldownMs: number;
  /** Keys older than this are refetched, ms. */
  cacheMaxAgeMs: number;
  /** How long after the last successful fetch the keys stay trusted while refreshes fail, ms; then they are dropped. */
  maxStaleMs: number;
  now?: () => number;
  /** Told the result of every fetch, for snapgate_jwks_fetches_total. */
  onFetch?: (result: 'ok' | 'error') => void;
}

type LocalKeys = ReturnType<typeof createLocalJWKSet>;

/**
 * A JWKS fetched over HTTP. Fresh keys for `cacheMaxAgeMs`; a failed refresh keeps serving the
 * last good set (stale-if-error), but only for `maxStaleMs` after the last successful fetch: then
 * the keys are dropped and calls get KeysUnavailableError (503) until a fetch succeeds. Fetches are
 * single-flight and paced: at most one per `cooldownMs` while keys are missing or aging, however
 * often `ready()` or `getKey` asks; an unknown `kid` may refetch at once (a burst of 3, then one
 * per cooldown) so a rotation is picked up but made-up kids cannot become a fetch storm. An outage
 * is logged once when it starts and once when it ends; each further failed attempt is a debug line.
 */
export class RemoteJwks implements KeySource {
  private local: LocalKeys | undefined;
  private fetchedAt = 0;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  // Failed fetches since the last success, and when the first of them happened.
  private failures = 0;
  private failingSince = 0;
  // Refetches caused by unknown kids: a bucket of MISS_REFETCH_BURST, refilled one per cooldown.
  private missTokens = MISS_REFETCH_BURST;
  private missRefilledAt = 0;
  private inflight: Promise<void> | undefined;
  private readonly now: () => number;
  // Aging keys are refreshed before they could be dropped, so an idle gateway whose IdP is up keeps them.
  private readonly refreshAfterMs: number;

  constructor(
    private readonly url: string,
    private readonly options: RemoteJwksOptions,
    private readonly log: Logger,
  ) {
    this.now = options.now ?? Date.now;
    this.refreshAfterMs = Math.min(options.cacheMaxAgeMs, options.maxStaleMs);
  }

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const local = await this.usableKeys();
    try {
      return await local(header, token);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey && this.takeMissRefetch()) {
        // An unknown kid may mean the IdP rotated its keys: refetch once, then decide. A small
        // burst lets the first token signed with a rotated key through at once even right after
        // other misses, while a flood of made-up kids costs one fetch per cooldown at most.
        await this.refresh();
        return (await this.usableKeys())(header, token);
      }
      throw err;
    }
  };

  /** True when keys are loaded and not older than maxStale; tries a fetch only when pacing allows. */
  async ready(): Promise<boolean> {
    try {
      await this.usableKeys();
      return true;
    } catch {
      return false;
    }
  }

  /** Fetches the JWKS now; concurrent callers share one fetch. Throws KeysUnavailableError. */
  refresh(): Promise<void> {
    this.inflight ??= this.fetchOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /** The keys to judge a token with, refreshing them when due and allowed. Throws KeysUnavailableError. */
  private async usableKeys(): Promise<LocalKeys> {
    if (this.local !== undefined && this.now() - this.fetchedAt > this.refreshAfterMs && this.mayFetch()) {
      // Aging: try to refresh, but keep serving the last good set if the IdP is down.
      await this.refresh().catch(() => undefined);
    }
    this.dropIfTooStale();
    if (this.local === undefined) {
      if (this.inflight !== undefined) await this.inflight;
      else if (this.mayFetch()) await this.refresh();
    }
    if (this.local === undefined) {
      throw new KeysUnavailableError(`JWKS ${this.url} has no usable keys; the next fetch waits for the cooldown`);
    }
    return this.local;
  }

  private mayFetch(): boolean {
    const gap =
      this.local === undefined
        ? Math.max(this.options.cooldownMs, MIN_FETCH_GAP_WITHOUT_KEYS_MS)
        : this.options.cooldownMs;
    return this.now() - this.lastAttemptAt >= gap;
  }

  // Stale-if-error is bounded: keys nobody could confirm for maxStale may have been revoked.
  private dropIfTooStale(): void {
    if (this.local === undefined) return;
    const age = this.now() - this.fetchedAt;
    if (age <= this.options.maxStaleMs) return;
    this.local = undefined;
    this.log.warn('jwks keys dropped: older than maxStale', {
      jwksUri: this.url,
      maxStaleMs: this.options.maxStaleMs,
      ageMs: age,
    });
  }

  private takeMissRefetch(): boolean {
    const now = this.now();
    const cooldown = Math.max(this.options.cooldownMs, 1);
    const refill = Math.floor((now - this.missRefilledAt) / cooldown);
    if (refill > 0) {
      this.missTokens = Math.min(MISS_REFETCH_BURST, this.missTokens + refill);
      this.missRefilledAt = now;
    }
    if (this.missTokens < 1) return false;
    this.missTokens -= 1;
    return true;
  }

  private async fetchOnce(): Promise<void> {
    this.lastAttemptAt = this.now();
    try {
      const res = await fetch(this.url, {
        headers: { accept: 'application/json, application/jwk-set+json' },
        signal: AbortSignal.timeout(this.options.timeoutMs),
        redirect: 'error',
      });
      if (res.status !== 200) throw new Error(`JWKS ${this.url} answered HTTP ${res.status}`);
      const text = await res.text();
      if (text.length > MAX_JWKS_BYTES) throw new Error(`JWKS ${this.url} is larger than ${MAX_JWKS_BYTES} bytes`);
      this.local = createLocalJWKSet(parseJwks(text, `JWKS ${this.url}`));
      this.fetchedAt = this.now();
      this.options.onFetch?.('ok');
      if (this.failures > 0) {
        this.log.info('jwks fetch recovered', {
          jwksUri: this.url,
          failedAttempts: this.failures,
          failingForMs: this.fetchedAt - this.failingSince,
        });
        this.failures = 0;
      } else {
        this.log.debug('jwks refreshed', { jwksUri: this.url });
      }
    } catch (err) {
      const reason =
        err instanceof Error && err.name === 'TimeoutError' ? `timed out after ${this.options.timeoutMs} ms` : 'failed';
      const fields = {
        jwksUri: this.url,
        reason,
        keptLastGood: this.local !== undefined,
        error: err instanceof Error ? err.message : String(err),
      };
      this.failures += 1;
      this.options.onFetch?.('error');
      if (this.failures === 1) {
        // The start of an outage is worth a warning; every further attempt of the same outage is not.
        this.failingSince = this.lastAttemptAt;
        this.log.warn('jwks fetch failed', fields);
      } else {
        this.log.debug('jwks fetch failed', { ...fields, failedAttempts: this.failures });
      }
      throw new KeysUnavailableError(`JWKS ${this.url} fetch ${reason}`, { cause: err });
    }
  }
}

/** Keys that never change while running: a JWKS file, a PEM public key or an HMAC secret. */
export class StaticKeys implements KeySource {
  constructor(readonly getKey: JWTVerifyGetKey | KeyObject | Uint8Array) {}
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

/** Loads a JWKS file once at start-up. Throws when the file is missing or not a JWKS. */
export async function loadJwksFile(path: string): Promise<StaticKeys> {
  const text = await readFile(path, 'utf8');
  return new StaticKeys(createLocalJWKSet(parseJwks(text, `JWKS file ${path}`)));
}

/** Loads a PEM public key, given inline or as `file:/path`. */
export async function loadPublicKey(value: string): Promise<StaticKeys> {
  const pem = value.startsWith('file:') ? await readFile(value.slice(5), 'utf8') : value;
  return new StaticKeys(createPublicKey(pem));
}
