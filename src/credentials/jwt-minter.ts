// Mints the short-lived JWTs snapgate will send to SnapLogic as `Authorization: Bearer` (issue 13), one per
// (org, SnapLogic user, audience, issuer), reused until most of its lifetime has passed. Groundwork: not yet
// read by config or the request path.
import { SignJWT } from 'jose';
import type { KeySet } from './signing-keys.js';

/** Who the token speaks for: `user` becomes `sub`, `audience` is `https://{pod}/api/1/rest/public`. */
export interface TokenSubject {
  readonly org: string;
  readonly user: string;
  readonly audience: string;
  readonly issuer: string;
}

export interface JwtMinter {
  /** A token with exactly iat, exp, iss, sub, aud, org, signed by the active key. Never log it. */
  tokenFor(subject: TokenSubject): Promise<string>;
  /** Signatures made so far (cache hits do not count): for a mint-count metric. */
  minted(): number;
}

export const defaultLifetimeMs = 5 * 60_000;
export const maxLifetimeMs = 60 * 60_000;
/** A token is reused until this share of its lifetime has passed, so it never reaches SnapLogic nearly expired. */
const reuseShare = 0.8;

interface Entry {
  readonly token: Promise<string>;
  readonly refreshAt: number;
}

/**
 * Owns a bounded token cache (default 10,000 entries, the oldest minted evicted first). `keys` is read on every
 * call, so a reloaded set takes effect at once: when the active key changes, the cache is emptied and the next
 * call signs with the new key. Throws RangeError at creation for a lifetime outside 1 s … 1 h (default 5 min) or a
 * cache size below 1; `tokenFor` throws TypeError for an empty subject field.
 */
export function createJwtMinter(options: {
  keys: () => KeySet;
  lifetimeMs?: number;
  now?: () => number;
  maxEntries?: number;
}): JwtMinter {
  const lifetimeMs = options.lifetimeMs ?? defaultLifetimeMs;
  if (!Number.isInteger(lifetimeMs) || lifetimeMs < 1000 || lifetimeMs > maxLifetimeMs) {
    throw new RangeError(`lifetimeMs must be a whole number of ms from 1000 to ${maxLifetimeMs} (1 h)`);
  }
  const maxEntries = options.maxEntries ?? 10_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
  const now = options.now ?? Date.now;
  const lifetimeSec = Math.floor(lifetimeMs / 1000);

  const cache = new Map<string, Entry>();
  let cachedFor: string | undefined;
  let count = 0;

  return {
    minted: () => count,
    tokenFor(subject) {
      for (const field of ['org', 'user', 'audience', 'issuer'] as const) {
        if (typeof subject[field] !== 'string' || subject[field].length === 0) {
          throw new TypeError(`tokenFor: ${field} must be a non-empty string`);
        }
      }
      const { active } = options.keys();
      // kid and thumbprint: a reload may keep the kid while replacing the key behind it.
      const signer = `${active.kid}\u0000${active.thumbprint}`;
      if (signer !== cachedFor) {
        cache.clear();
        cachedFor = signer;
      }
      const at = now();
      const cacheKey = JSON.stringify([subject.org, subject.user, subject.audience, subject.issuer]);
      const hit = cache.get(cacheKey);
      if (hit !== undefined && at < hit.refreshAt) return hit.token;
      cache.delete(cacheKey);

      const iat = Math.floor(at / 1000);
      count += 1;
      const token = new SignJWT({ org: subject.org })
        .setProtectedHeader({ alg: active.alg, kid: active.kid, typ: 'JWT' })
        .setIssuedAt(iat)
        .setExpirationTime(iat + lifetimeSec)
        .setIssuer(subject.issuer)
        .setSubject(subject.user)
        .setAudience(subject.audience)
        .sign(active.privateKey);
      // Stored as a promise so concurrent callers share one signature; a failed one is not kept.
      const entry: Entry = { token, refreshAt: at + lifetimeMs * reuseShare };
      token.catch(() => {
        if (cache.get(cacheKey) === entry) cache.delete(cacheKey);
      });
      cache.set(cacheKey, entry);
      while (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
      return token;
    },
  };
}
