// A bounded LRU cache of verified tokens, with final refusals in a separate bounded space: keyed by a SHA-256 of the
// token (the token itself is never kept).
import { hash } from 'node:crypto';
import type { Principal } from './principal.js';

export interface TokenCacheOptions {
  /** Most verified tokens remembered; the least recently used go first. */
  maxEntries: number;
  /** Longest a verification is reused, ms, even if exp is later (bounds how long a removed key keeps working). */
  maxTtlMs: number;
  /**
   * Most refusals remembered, in their own space; the least recently used go first. Default: maxEntries,
   * at most 1000.
   */
  maxRefusals?: number;
  now?: () => number;
}

/** What bounds a verified token's reuse beyond exp and maxTtl. */
export interface TokenLimits {
  /** The issuer's maxTokenAge, ms: an entry never outlives iat + maxTokenAge. */
  maxTokenAgeMs?: number;
}

const DEFAULT_MAX_REFUSALS = 1_000;

interface Entry<V> {
  readonly value: V;
  readonly until: number;
}

/**
 * Signature checks dominate verification cost, and a service reuses one token for minutes. A hit
 * skips jose entirely; an entry lives until the earliest of the token's exp, iat + maxTokenAge
 * (when the issuer sets one) and `maxTtlMs`. Final refusals are kept too (`refuse`), so a flood of
 * one bad token is checked once; they live in a map of their own with its own cap, so a flood of
 * distinct junk tokens only ever evicts other refusals, never a verified caller.
 */
export class TokenCache {
  // A Map iterates in insertion order: re-inserting on every hit makes the first key the least recently used.
  private readonly verified = new Map<string, Entry<Principal>>();
  private readonly refusals = new Map<string, Entry<Error>>();
  private readonly maxRefusals: number;
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
    this.maxRefusals = Math.max(1, options.maxRefusals ?? Math.min(options.maxEntries, DEFAULT_MAX_REFUSALS));
  }

  static keyOf(token: string): string {
    return hash('sha256', token, 'base64url');
  }

  /** The verified caller of this token, if remembered; a hit makes it the most recently used. */
  get(key: string): Principal | undefined {
    return this.lookup(this.verified, key);
  }

  /** The refusal this token got, if remembered. */
  refusal(key: string): Error | undefined {
    return this.lookup(this.refusals, key);
  }

  /** Remembers a verified caller until the earliest of exp, iat + maxTokenAge and now + maxTtl. */
  set(key: string, principal: Principal, limits: TokenLimits = {}): void {
    const { exp, iat } = principal.claims;
    // No exp (or, when token age is bounded, no iat): nothing says how long the answer holds, so it is not kept.
    let until = typeof exp === 'number' ? Math.min(exp * 1000, this.now() + this.options.maxTtlMs) : 0;
    if (limits.maxTokenAgeMs !== undefined) {
      until = typeof iat === 'number' ? Math.min(until, iat * 1000 + limits.maxTokenAgeMs) : 0;
    }
    this.insert(this.verified, key, { value: principal, until }, this.options.maxEntries);
  }

  /** Remembers a refusal that cannot change for this token, for `ttlMs` (at most `maxTtlMs`). */
  refuse(key: string, refusal: Error, ttlMs: number): void {
    this.insert(
      this.refusals,
      key,
      { value: refusal, until: this.now() + Math.min(ttlMs, this.options.maxTtlMs) },
      this.maxRefusals,
    );
  }

  /** Verified tokens remembered. */
  get size(): number {
    return this.verified.size;
  }

  /** Refusals remembered. */
  get refusalCount(): number {
    return this.refusals.size;
  }

  private lookup<V>(map: Map<string, Entry<V>>, key: string): V | undefined {
    const hit = map.get(key);
    if (hit === undefined) return undefined;
    map.delete(key);
    if (hit.until <= this.now()) return undefined;
    map.set(key, hit);
    return hit.value;
  }

  private insert<V>(map: Map<string, Entry<V>>, key: string, entry: Entry<V>, cap: number): void {
    map.delete(key);
    if (entry.until <= this.now()) return;
    map.set(key, entry);
    if (map.size > cap) map.delete(map.keys().next().value as string);
  }
}
