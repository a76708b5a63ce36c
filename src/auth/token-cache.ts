// A bounded cache of verified tokens and final refusals: keyed by a SHA-256 of the token (the token itself is never kept), never past exp.
import { hash } from 'node:crypto';
import type { Principal } from './verifier.js';

export interface TokenCacheOptions {
  /** Most tokens remembered; the least recently used go first. */
  maxEntries: number;
  /** Longest a verification is reused, ms, even if exp is later (bounds how long a removed key keeps working). */
  maxTtlMs: number;
  now?: () => number;
}

/**
 * Signature checks dominate verification cost, and a service reuses one token for minutes. A hit
 * skips jose entirely; an entry lives until the earlier of the token's exp and `maxTtlMs`.
 * Final refusals are kept the same way (`refuse`), so a flood of one bad token is checked once.
 */
export class TokenCache {
  private readonly entries = new Map<string, { principal?: Principal; refusal?: Error; until: number }>();
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  static keyOf(token: string): string {
    return hash('sha256', token, 'base64url');
  }

  private live(key: string): { principal?: Principal; refusal?: Error } | undefined {
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    if (hit.until <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return hit;
  }

  /** The verified caller of this token, if remembered. */
  get(key: string): Principal | undefined {
    return this.live(key)?.principal;
  }

  /** The refusal this token got, if remembered. */
  refusal(key: string): Error | undefined {
    return this.live(key)?.refusal;
  }

  set(key: string, principal: Principal): void {
    const exp = typeof principal.claims.exp === 'number' ? principal.claims.exp * 1000 : 0;
    this.store(key, { principal, until: Math.min(exp, this.now() + this.options.maxTtlMs) });
  }

  /** Remembers a refusal that cannot change for this token, for `ttlMs` (at most `maxTtlMs`). */
  refuse(key: string, refusal: Error, ttlMs: number): void {
    this.store(key, { refusal, until: this.now() + Math.min(ttlMs, this.options.maxTtlMs) });
  }

  private store(key: string, entry: { principal?: Principal; refusal?: Error; until: number }): void {
    if (entry.until <= this.now()) return;
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.options.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }

  get size(): number {
    return this.entries.size;
  }
}
