// JWT verification with jose: picks the trusted issuer, pins its algorithms, checks iss/aud/exp/nbf, and names the check that failed.
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { IssuerConfig } from '../config/schema.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import {
  KeysUnavailableError,
  loadJwksFile,
  loadPublicKey,
  RemoteJwks,
  StaticKeys,
  type KeySource,
} from './key-source.js';
import { resolveSecret, parseSecretRef } from '../config/secret-ref.js';
import type { Principal } from './principal.js';
import { TokenCache } from './token-cache.js';

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
  /** True when every issuer has keys loaded (a remote source without keys tries at most one fetch per cooldown). */
  ready(): Promise<boolean>;
}

const MAX_TOKEN_LENGTH = 16 * 1024;

interface TrustedIssuer {
  readonly config: IssuerConfig;
  readonly keys: KeySource;
  readonly audiences: readonly string[];
  readonly requiredClaims: readonly string[];
}

/**
 * Refusals that depend on the token alone, never on time passing or on the keys changing: the same
 * token gets the same answer, so it is remembered (by hash, in the token cache) and a flood of one
 * bad token costs one signature check per REJECTION_TTL_MS. Not remembered: token_not_yet_valid
 * (nbf passes), token_claim_invalid (iat may be just ahead of the clock), token_key_unknown (a
 * rotation may publish the key), jwks_unavailable (transient). An iat older than maxTokenAge is
 * token_claim_invalid yet final (the token only gets older): see isFinal.
 */
const FINAL_REJECTIONS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'token_malformed',
  'token_signature_invalid',
  'token_issuer_untrusted',
  'token_algorithm_not_allowed',
  'token_audience_invalid',
  'token_expired',
]);
const REJECTION_TTL_MS = 10_000;

function invalid(code: ErrorCode, detail: string, cause?: unknown): GatewayError {
  return new GatewayError(code, detail, { cause });
}

function isFinal(err: unknown): err is GatewayError {
  if (!(err instanceof GatewayError)) return false;
  return (
    FINAL_REJECTIONS.has(err.code) || (err.code === 'token_claim_invalid' && err.cause instanceof joseErrors.JWTExpired)
  );
}

/** Builds the key source for one issuer. Throws (stopping start-up) when a file or secret is missing. */
async function keySourceFor(
  issuer: IssuerConfig,
  env: Readonly<Record<string, string | undefined>>,
  log: Logger,
  now: () => number,
): Promise<KeySource> {
  if (issuer.jwksUri !== undefined) {
    return new RemoteJwks(
      issuer.jwksUri,
      {
        timeoutMs: issuer.jwks.timeout,
        cooldownMs: issuer.jwks.cooldown,
        cacheMaxAgeMs: issuer.jwks.cacheMaxAge,
        maxStaleMs: issuer.jwks.maxStale,
        now,
      },
      log,
    );
  }
  if (issuer.jwksFile !== undefined) return loadJwksFile(issuer.jwksFile);
  if (issuer.publicKey !== undefined) return loadPublicKey(issuer.publicKey);
  const ref = parseSecretRef(issuer.secret ?? '');
  if (ref === undefined) throw new Error(`issuer ${issuer.issuer} has no key source`);
  return new StaticKeys(new TextEncoder().encode(await resolveSecret(ref, env)));
}

/**
 * Creates the verifier for the configured issuers. Throws when an issuer's static key source
 * cannot be loaded; remote JWKS are fetched lazily and reported through `ready()`. `now` (ms,
 * default Date.now) is the one clock for claim checks, the token cache and JWKS pacing.
 */
export async function createTokenVerifier(
  issuers: readonly IssuerConfig[],
  deps: {
    env: Readonly<Record<string, string | undefined>>;
    log: Logger;
    cache?: { maxEntries: number; maxTtlMs: number };
    now?: () => number;
  },
): Promise<TokenVerifier> {
  const now = deps.now ?? Date.now;
  const cache =
    deps.cache !== undefined && deps.cache.maxEntries > 0 ? new TokenCache({ ...deps.cache, now }) : undefined;
  const byIssuer = new Map<string, TrustedIssuer>();
  for (const config of issuers) {
    byIssuer.set(config.issuer, {
      config,
      keys: await keySourceFor(config, deps.env, deps.log, now),
      audiences: typeof config.audience === 'string' ? [config.audience] : config.audience,
      requiredClaims: [...new Set(['exp', 'sub', ...config.requiredClaims])],
    });
  }

  async function verify(token: string): Promise<Principal> {
    if (cache === undefined) return verifyUncached(token);
    const key = TokenCache.keyOf(token);
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const refusal = cache.refusal(key);
    if (refusal !== undefined) throw refusal;
    try {
      const principal = await verifyUncached(token);
      // maxTokenAge must hold on hits too: the entry never outlives iat + maxTokenAge.
      cache.set(key, principal, { maxTokenAgeMs: byIssuer.get(principal.iss)?.config.maxTokenAge });
      return principal;
    } catch (err) {
      if (isFinal(err)) cache.refuse(key, err, REJECTION_TTL_MS);
      throw err;
    }
  }

  async function verifyUncached(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_LENGTH || token.split('.').length !== 3) {
      throw invalid(
        'token_malformed',
        'The bearer token is not a compact JWT (header.payload.signature). Send the token exactly as your identity provider issued it.',
      );
    }
    let alg: string | undefined;
    let kid: string | undefined;
    let unverifiedIss: unknown;
    try {
      ({ alg, kid } = decodeProtectedHeader(token));
      unverifiedIss = decodeJwt(token).iss;
    } catch (err) {
      throw invalid(
        'token_malformed',
        "The bearer token's header or claims are not valid base64url JSON. Send the token exactly as your identity provider issued it.",
        err,
      );
    }
    const trusted = typeof unverifiedIss === 'string' ? byIssuer.get(unverifiedIss) : undefined;
    if (trusted === undefined) {
      throw invalid(
        'token_issuer_untrusted',
        "The token's iss claim is missing or names an issuer this gateway does not trust. Use a token from your company identity provider.",
      );
    }
    const allowed = trusted.config.algorithms as readonly string[];
    if (alg === undefined || !allowed.includes(alg)) {
      // The header is unverified input: the detail names what is allowed, never what the token claims.
      throw invalid(
        'token_algorithm_not_allowed',
        `The token's algorithm is not one this issuer may use (allowed: ${allowed.join(', ')}). Use a normal token from your identity provider.`,
      );
    }
    if (trusted.config.requireKid && kid === undefined) {
      throw invalid(
        'token_malformed',
        'The token header has no kid; this issuer requires one to pick the signing key.',
      );
    }
    try {
      const { payload } = await jwtVerify(token, trusted.keys.getKey as JWTVerifyGetKey, {
        issuer: trusted.config.issuer,
        audience: [...trusted.audiences],
        algorithms: [...allowed],
        clockTolerance: trusted.config.clockTolerance / 1000,
        requiredClaims: [...trusted.requiredClaims],
        currentDate: new Date(now()),
        ...(trusted.config.maxTokenAge !== undefined ? { maxTokenAge: trusted.config.maxTokenAge / 1000 } : {}),
        ...(trusted.config.typ !== undefined ? { typ: trusted.config.typ } : {}),
      });
      if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
        throw invalid('token_claim_invalid', "The token's sub claim must be a non-empty string naming the caller.");
      }
      const clientId =
        typeof payload.azp === 'string'
          ? payload.azp
          : typeof payload.client_id === 'string'
            ? payload.client_id
            : undefined;
      return {
        iss: trusted.config.issuer,
        sub: payload.sub,
        claims: payload,
        ...(clientId !== undefined ? { clientId } : {}),
      };
    } catch (err) {
      throw translate(err, trusted);
    }
  }

  return {
    verify,
    async ready() {
      const results = await Promise.all([...byIssuer.values()].map((i) => i.keys.ready()));
      return results.every(Boolean);
    },
  };
}

/** Maps jose's errors (by code) to our stable error codes; anything unknown stays a 500. */
function translate(err: unknown, issuer: TrustedIssuer): unknown {
  if (err instanceof GatewayError) return err;
  if (err instanceof KeysUnavailableError) {
    return new GatewayError(
      'jwks_unavailable',
      "The identity provider's signing keys could not be fetched, so the token was not judged. Retry shortly; if it persists, tell the platform team.",
      { cause: err, headers: { 'retry-after': '5' } },
    );
  }
  if (err instanceof joseErrors.JWTExpired && err.claim === 'iat') {
    // jose reports an iat older than maxTokenAge as JWTExpired; the token has not expired, it is too old.
    return invalid(
      'token_claim_invalid',
      "The token's iat claim is older than this issuer allows (maxTokenAge). Get a fresh token from your identity provider and retry.",
      err,
    );
  }
  if (err instanceof joseErrors.JWTExpired) {
    return invalid(
      'token_expired',
      'The token has expired. Get a fresh token from your identity provider and retry.',
      err,
    );
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return invalid(
          'token_not_yet_valid',
          "The token is not valid yet (nbf is in the future). Check the caller's clock, or wait until the token is valid.",
          err,
        );
      case 'aud':
        return invalid(
          'token_audience_invalid',
          `The token's aud claim does not name this gateway. Request a token for audience ${issuer.audiences.join(' or ')}.`,
          err,
        );
      case 'iss':
        return invalid(
          'token_issuer_untrusted',
          "The token's iss claim names an issuer this gateway does not trust.",
          err,
        );
      case 'iat':
        return invalid(
          'token_claim_invalid',
          "The token's iat claim is missing or in the future. Check the issuer's clock, or get a fresh token.",
          err,
        );
      default:
        return invalid(
          'token_claim_invalid',
          `The token's ${err.claim} claim is ${err.reason === 'missing' ? 'missing' : 'invalid'}. Get a token that carries it.`,
          err,
        );
    }
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return invalid(
      'token_signature_invalid',
      "The token's signature does not match the issuer's keys. Use a token issued by your company identity provider, unmodified.",
      err,
    );
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return invalid(
      'token_algorithm_not_allowed',
      `The token's algorithm is not allowed for this issuer (allowed: ${issuer.config.algorithms.join(', ')}).`,
      err,
    );
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return invalid(
      'token_key_unknown',
      "The issuer publishes no single key matching this token's kid and algorithm. If keys were just rotated, get a fresh token; otherwise the token was not issued by a trusted provider.",
      err,
    );
  }
  if (
    err instanceof joseErrors.JWTInvalid ||
    err instanceof joseErrors.JWSInvalid ||
    err instanceof joseErrors.JOSENotSupported
  ) {
    return invalid(
      'token_malformed',
      'The bearer token is not a valid JWT. Send the token exactly as your identity provider issued it.',
      err,
    );
  }
  return err;
}
