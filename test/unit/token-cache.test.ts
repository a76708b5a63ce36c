import { describe, expect, it } from 'vitest';
import { TokenCache } from '../../src/auth/token-cache.js';
import type { Principal } from '../../src/auth/principal.js';

const principal = (exp: number, iat?: number): Principal => ({
  iss: 'https://idp',
  sub: 'svc',
  claims: { iss: 'https://idp', sub: 'svc', exp, ...(iat !== undefined ? { iat } : {}) },
});

describe('verified-token cache', () => {
  it('never serves a token past its exp, nor past maxTtl', () => {
    let now = 1_000_000_000_000;
    const cache = new TokenCache({ maxEntries: 10, maxTtlMs: 60_000, now: () => now });
    cache.set('short', principal(now / 1000 + 5));
    cache.set('long', principal(now / 1000 + 3600));
    expect(cache.get('short')?.sub).toBe('svc');
    now += 5_000;
    expect(cache.get('short')).toBeUndefined();
    expect(cache.get('long')?.sub).toBe('svc');
    now += 55_000;
    expect(cache.get('long')).toBeUndefined();
  });

  it('keeps at most maxEntries, dropping the least recently used', () => {
    const cache = new TokenCache({ maxEntries: 3, maxTtlMs: 60_000 });
    const exp = Date.now() / 1000 + 600;
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, principal(exp));
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('d')).toBeDefined();
  });

  it('a hit refreshes recency: the token in use survives while an idle one is evicted (LRU, not FIFO)', () => {
    const cache = new TokenCache({ maxEntries: 3, maxTtlMs: 60_000 });
    const exp = Date.now() / 1000 + 600;
    for (const k of ['busy', 'idle-1', 'idle-2']) cache.set(k, principal(exp));
    expect(cache.get('busy')).toBeDefined();
    cache.set('new', principal(exp));
    expect(cache.get('busy'), 'the most recently used token was evicted').toBeDefined();
    expect(cache.get('idle-1')).toBeUndefined();
    expect(cache.get('idle-2')).toBeDefined();
  });

  it('a flood of distinct refusals never evicts verified tokens: refusals have their own bounded space', () => {
    const cache = new TokenCache({ maxEntries: 3, maxTtlMs: 60_000, maxRefusals: 5 });
    const exp = Date.now() / 1000 + 600;
    cache.set('verified-1', principal(exp));
    cache.set('verified-2', principal(exp));
    for (let i = 0; i < 1_000; i++) cache.refuse(`junk-${i}`, new Error('token_malformed'), 10_000);
    expect(cache.get('verified-1'), 'a verified token was evicted by junk refusals').toBeDefined();
    expect(cache.get('verified-2')).toBeDefined();
    expect(cache.size).toBe(2);
    expect(cache.refusalCount).toBe(5);
    expect(cache.refusal('junk-999')?.message).toBe('token_malformed');
    expect(cache.refusal('junk-0')).toBeUndefined();
  });

  it('never serves a token past iat + maxTokenAge, even while exp and maxTtl are far off', () => {
    let now = 1_000_000_000_000;
    const cache = new TokenCache({ maxEntries: 10, maxTtlMs: 600_000, now: () => now });
    const iat = now / 1000 - 30;
    cache.set('aging', principal(now / 1000 + 3600, iat), { maxTokenAgeMs: 60_000 });
    expect(cache.get('aging')?.sub).toBe('svc');
    now += 29_000;
    expect(cache.get('aging')?.sub).toBe('svc');
    now += 1_000; // iat + 60 s
    expect(cache.get('aging'), 'served on a hit past iat + maxTokenAge').toBeUndefined();
  });

  it('does not remember a token without iat when the issuer bounds token age', () => {
    const now = 1_000_000_000_000;
    const cache = new TokenCache({ maxEntries: 10, maxTtlMs: 600_000, now: () => now });
    cache.set('no-iat', principal(now / 1000 + 3600), { maxTokenAgeMs: 60_000 });
    expect(cache.get('no-iat')).toBeUndefined();
  });

  it('keys by a hash, never the token itself', () => {
    const key = TokenCache.keyOf('header.payload.signature');
    expect(key).not.toContain('signature');
    expect(key).toHaveLength(43);
  });
});
