// A bounded cache of verified tokens: keyed by a SHA-256 of the token (the token itself is never kept), never past exp.
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
 */
export class TokenCache {
  private readonly entries = new Map<string, { principal: Principal; until: number }>();
  private readonly now: () => number;

  constructor(private readonly options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  static keyOf(token: string): string {
    return hash('sha256', token, 'base64url');
  }

  get(key: string): Principal | undefined {
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    if (hit.until <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return hit.principal;
  }

  set(key: string, principal: Principal): void {
    const exp = typeof principal.claims.exp === 'number' ? principal.claims.exp * 1000 : 0;
    const until = Math.min(exp, this.now() + this.options.maxTtlMs);
    if (until <= this.now()) return;
    this.entries.delete(key);
    this.entries.set(key, { principal, until });
    if (this.entries.size > this.options.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }

  get size(): number {
    return this.entries.size;
  }
}
