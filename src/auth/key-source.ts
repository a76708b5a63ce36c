// Where an issuer's verification keys come from: a remote JWKS (cached, rotating), a JWKS file, a PEM key or a shared secret.
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
  /** True once keys are loaded; a remote source tries a fetch when it has none. */
  ready(): Promise<boolean>;
}

const MAX_JWKS_BYTES = 512 * 1024;
// After a failed fetch with no keys at all, wait this long before the next try, so a dead IdP
// costs one fetch per second, not one per request.
const FAILED_FETCH_BACKOFF_MS = 1_000;
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
  timeoutMs: number;
  cooldownMs: number;
  cacheMaxAgeMs: number;
  now?: () => number;
}

/**
 * A JWKS fetched over HTTP. Fresh keys for `cacheMaxAgeMs`; an unknown `kid` triggers one refetch
 * at most every `cooldownMs` (so a flood of made-up kids cannot become a fetch storm); fetches are
 * single-flight; a failed refresh keeps serving the last good set (stale-if-error).
 */
export class RemoteJwks implements KeySource {
  private local: ReturnType<typeof createLocalJWKSet> | undefined;
  private fetchedAt = 0;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastFailureAt = Number.NEGATIVE_INFINITY;
  // Refetches caused by unknown kids: a bucket of MISS_REFETCH_BURST, refilled one per cooldown.
  private missTokens = MISS_REFETCH_BURST;
  private missRefilledAt = 0;
  private inflight: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly url: string,
    private readonly options: RemoteJwksOptions,
    private readonly log: Logger,
  ) {
    this.now = options.now ?? Date.now;
  }

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.now();
    if (this.local === undefined) {
      if (now - this.lastFailureAt < FAILED_FETCH_BACKOFF_MS) {
        throw new KeysUnavailableError(`JWKS ${this.url} could not be fetched recently`);
      }
      await this.refresh();
    } else if (now - this.fetchedAt > this.options.cacheMaxAgeMs && now - this.lastAttemptAt >= this.options.cooldownMs) {
      // Stale: try to refresh, but keep serving the last good set if the IdP is down.
      await this.refresh().catch(() => undefined);
    }
    const local = this.local as unknown as JWTVerifyGetKey;
    try {
      return await local(header, token);
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey && this.takeMissRefetch()) {
        // An unknown kid may mean the IdP rotated its keys: refetch once, then decide. A small
        // burst lets the first token signed with a rotated key through at once even right after
        // other misses, while a flood of made-up kids costs one fetch per cooldown at most.
        await this.refresh();
        return (this.local as unknown as JWTVerifyGetKey)(header, token);
      }
      throw err;
    }
  };

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

  async ready(): Promise<boolean> {
    if (this.local !== undefined) return true;
    try {
      await this.refresh();
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
      this.log.debug('jwks refreshed', { jwksUri: this.url });
    } catch (err) {
      this.lastFailureAt = this.now();
      const reason = err instanceof Error && err.name === 'TimeoutError' ? `timed out after ${this.options.timeoutMs} ms` : 'failed';
      this.log.warn('jwks fetch failed', {
        jwksUri: this.url,
        reason,
        keptLastGood: this.local !== undefined,
        error: err instanceof Error ? err.message : String(err),
      });
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
