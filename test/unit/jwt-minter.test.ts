// The JWT minter: exactly the claims SnapLogic requires, signed by the active key and verifiable against the
// published JWKS; one signature per (org, user, audience, issuer) until 80% of the lifetime has passed; a new
// token at once when the active key changes; a bounded cache and a mint counter. The clock is a fake.
import { createLocalJWKSet, decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createJwtMinter, defaultLifetimeMs, maxLifetimeMs } from '../../src/credentials/jwt-minter.js';
import { createKeySet, publicJwks, type KeySet } from '../../src/credentials/signing-keys.js';
import { recordSecret } from '../helpers/leak-scan.js';

const AUD = 'https://elastic.snaplogic.com/api/1/rest/public';
const ISS = 'https://snapgate.example.com';
const subject = { org: 'acme', user: 'svc-acme@example.com', audience: AUD, issuer: ISS };
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

let rsaPem: string;
let ecPem: string;
beforeAll(async () => {
  const [rsa, ec] = await Promise.all([
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('ES256', { extractable: true }),
  ]);
  [rsaPem, ecPem] = await Promise.all([exportPKCS8(rsa.privateKey), exportPKCS8(ec.privateKey)]);
  recordSecret(rsaPem);
  recordSecret(ecPem);
});

function clock(start = T0): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

async function verify(token: string, set: KeySet, at: number) {
  recordSecret(token);
  return jwtVerify(token, createLocalJWKSet(publicJwks(set)), {
    issuer: ISS,
    audience: AUD,
    currentDate: new Date(at),
    algorithms: ['RS256', 'ES256'],
  });
}

describe('the token', () => {
  it.each(['RS256', 'ES256'] as const)('carries exactly the claims SnapLogic requires (%s)', async (alg) => {
    const set = createKeySet([{ secret: alg === 'RS256' ? rsaPem : ecPem, state: 'active', kid: 'k-2026-01' }]);
    const c = clock();
    const minter = createJwtMinter({ keys: () => set, now: c.now });
    const token = await minter.tokenFor(subject);
    const { payload, protectedHeader } = await verify(token, set, T0);
    expect(protectedHeader).toEqual({ alg, kid: 'k-2026-01', typ: 'JWT' });
    expect(payload).toEqual({
      iat: T0 / 1000,
      exp: T0 / 1000 + defaultLifetimeMs / 1000,
      iss: ISS,
      sub: subject.user,
      aud: AUD,
      org: 'acme',
    });
  });

  it('is signed by the active key, not by next or retired ones', async () => {
    const set = createKeySet([
      { secret: rsaPem, state: 'next', kid: 'next' },
      { secret: ecPem, state: 'active', kid: 'active' },
    ]);
    const token = await createJwtMinter({ keys: () => set }).tokenFor(subject);
    recordSecret(token);
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'ES256', kid: 'active' });
  });

  it('lives for the configured lifetime; beyond 1 h, or below 1 s, the minter refuses to start', async () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const token = await createJwtMinter({ keys: () => set, lifetimeMs: maxLifetimeMs, now: () => T0 }).tokenFor(
      subject,
    );
    const { payload } = await verify(token, set, T0);
    expect(payload.exp! - payload.iat!).toBe(3600);
    for (const lifetimeMs of [maxLifetimeMs + 1, 2 * maxLifetimeMs, 999, 0, -1, 1500.5, Number.NaN]) {
      expect(() => createJwtMinter({ keys: () => set, lifetimeMs }), String(lifetimeMs)).toThrow(RangeError);
    }
  });

  it('refuses an empty subject field', () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const minter = createJwtMinter({ keys: () => set });
    expect(() => minter.tokenFor({ ...subject, user: '' })).toThrow(/user must be a non-empty string/);
    expect(minter.minted()).toBe(0);
  });
});

describe('reuse', () => {
  it('reuses the token until 80% of its lifetime has passed, then mints a new one', async () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const c = clock();
    const minter = createJwtMinter({ keys: () => set, now: c.now });
    const first = await minter.tokenFor(subject);
    c.advance(0.8 * defaultLifetimeMs - 1);
    expect(await minter.tokenFor(subject)).toBe(first);
    expect(minter.minted()).toBe(1);
    c.advance(1);
    const second = await minter.tokenFor(subject);
    expect(second).not.toBe(first);
    expect(minter.minted()).toBe(2);
    expect((await verify(second, set, c.now())).payload.iat).toBe((T0 + 0.8 * defaultLifetimeMs) / 1000);
  });

  it('keeps one token per org, user, audience and issuer', async () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const minter = createJwtMinter({ keys: () => set, now: () => T0 });
    const variants = [
      subject,
      { ...subject, org: 'globex' },
      { ...subject, user: 'svc-other@example.com' },
      { ...subject, audience: 'https://uat.elastic.snaplogic.com/api/1/rest/public' },
      { ...subject, issuer: 'https://snapgate-2.example.com' },
    ];
    const tokens = await Promise.all(variants.map((s) => minter.tokenFor(s)));
    tokens.forEach((t) => recordSecret(t));
    expect(new Set(tokens).size).toBe(variants.length);
    expect(await Promise.all(variants.map((s) => minter.tokenFor(s)))).toEqual(tokens);
    expect(minter.minted()).toBe(variants.length);
  });

  it('signs once for concurrent callers of the same subject', async () => {
    const set = createKeySet([{ secret: rsaPem, state: 'active' }]);
    const minter = createJwtMinter({ keys: () => set });
    const tokens = await Promise.all(Array.from({ length: 20 }, () => minter.tokenFor(subject)));
    recordSecret(tokens[0]!);
    expect(new Set(tokens).size).toBe(1);
    expect(minter.minted()).toBe(1);
  });

  it('mints at once with the new key when the active key changes, and verifies through the rotated JWKS', async () => {
    const before = createKeySet([
      { secret: rsaPem, state: 'active', kid: 'old' },
      { secret: ecPem, state: 'next', kid: 'new' },
    ]);
    const after = createKeySet([
      { secret: rsaPem, state: 'retired', kid: 'old' },
      { secret: ecPem, state: 'active', kid: 'new' },
    ]);
    let current = before;
    const c = clock();
    const minter = createJwtMinter({ keys: () => current, now: c.now });
    const old = await minter.tokenFor(subject);
    c.advance(1000);
    current = after;
    const fresh = await minter.tokenFor(subject);
    expect(decodeProtectedHeader(fresh)).toMatchObject({ kid: 'new', alg: 'ES256' });
    expect(minter.minted()).toBe(2);
    // The retired key is still published, so a token it signed before the switch still verifies.
    expect((await verify(old, after, c.now())).protectedHeader.kid).toBe('old');
    expect((await verify(fresh, after, c.now())).protectedHeader.kid).toBe('new');
    expect(await minter.tokenFor(subject)).toBe(fresh);
  });

  it('mints anew when a reload keeps the kid but replaces the key behind it', async () => {
    let current = createKeySet([{ secret: rsaPem, state: 'active', kid: 'same' }]);
    const minter = createJwtMinter({ keys: () => current });
    const first = await minter.tokenFor(subject);
    current = createKeySet([{ secret: ecPem, state: 'active', kid: 'same' }]);
    const second = await minter.tokenFor(subject);
    recordSecret(first);
    recordSecret(second);
    expect(decodeProtectedHeader(second).alg).toBe('ES256');
    expect(minter.minted()).toBe(2);
  });

  it('keeps its token when a reload yields an equal key set', async () => {
    let current = createKeySet([{ secret: ecPem, state: 'active', kid: 'k' }]);
    const minter = createJwtMinter({ keys: () => current });
    const first = await minter.tokenFor(subject);
    recordSecret(first);
    current = createKeySet([{ secret: ecPem, state: 'active', kid: 'k' }]);
    expect(await minter.tokenFor(subject)).toBe(first);
    expect(minter.minted()).toBe(1);
  });

  it('holds at most maxEntries tokens, evicting the oldest first', async () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const minter = createJwtMinter({ keys: () => set, now: () => T0, maxEntries: 3 });
    const users = ['u1', 'u2', 'u3', 'u4'].map((user) => ({ ...subject, user }));
    for (const s of users) recordSecret(await minter.tokenFor(s));
    expect(minter.minted()).toBe(4);
    // u2..u4 are still cached; u1 was evicted when u4 came in.
    for (const s of users.slice(1)) await minter.tokenFor(s);
    expect(minter.minted()).toBe(4);
    recordSecret(await minter.tokenFor(users[0]!));
    expect(minter.minted()).toBe(5);
    expect(() => createJwtMinter({ keys: () => set, maxEntries: 0 })).toThrow(RangeError);
  });

  it('bounds the default cache at 10,000 entries', async () => {
    const set = createKeySet([{ secret: ecPem, state: 'active' }]);
    const minter = createJwtMinter({ keys: () => set, now: () => T0 });
    for (let i = 0; i <= 10_000; i++) await minter.tokenFor({ ...subject, user: `u${i}` });
    expect(minter.minted()).toBe(10_001);
    await minter.tokenFor({ ...subject, user: 'u10000' });
    await minter.tokenFor({ ...subject, user: 'u1' });
    expect(minter.minted()).toBe(10_001);
    await minter.tokenFor({ ...subject, user: 'u0' });
    expect(minter.minted()).toBe(10_002);
  });
});
