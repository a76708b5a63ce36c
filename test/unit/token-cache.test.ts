import { describe, expect, it } from 'vitest';
import { TokenCache } from '../../src/auth/token-cache.js';
import type { Principal } from '../../src/auth/verifier.js';

const principal = (exp: number): Principal => ({ iss: 'https://idp', sub: 'svc', claims: { iss: 'https://idp', sub: 'svc', exp } });

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

  it('keeps at most maxEntries, dropping the least recently stored', () => {
    const cache = new TokenCache({ maxEntries: 3, maxTtlMs: 60_000 });
    const exp = Date.now() / 1000 + 600;
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, principal(exp));
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('d')).toBeDefined();
  });

  it('keys by a hash, never the token itself', () => {
    const key = TokenCache.keyOf('header.payload.signature');
    expect(key).not.toContain('signature');
    expect(key).toHaveLength(43);
  });
});
