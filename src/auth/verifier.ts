// JWT verification with jose: picks the trusted issuer, pins its algorithms, checks iss/aud/exp/nbf, and names the
// check that failed.
import {
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
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
  /**
   * True when every issuer has keys loaded (a remote source without keys tries at most one fetch per
   * cooldown).
   */
  ready(): Promise<boolean>;
  /**
   * The remote JWKS this verifier holds for an issuer configured exactly as `config`: a reload that changes other
   * issuers (or the token cache) hands it to the next verifier with the keys it fetched.
   */
  remoteKeysFor?(config: IssuerConfig): KeySource | undefined;
}

const MAX_TOKEN_LENGTH = 16 * 1024;

interface TrustedIssuer {
  readonly config: IssuerConfig;
  readonly keys: KeySource;
  readonly audiences: readonly string[];
  readonly requiredClaims: readonly string[];
}

type TrustedIssuers = ReadonlyMap<string, TrustedIssuer>;

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

/** A refusal's code, and the detail that tells the caller what to do. */
interface Refusal {
  readonly code: ErrorCode;
  readonly detail: string;
}

const AS_ISSUED = 'Send the token exactly as your identity provider issued it.';
const GET_FRESH = 'Get a fresh token from your identity provider and retry.';

/** The refusals whose detail names nothing from the token or the issuer. */
const refusals = {
  notCompact: {
    code: 'token_malformed',
    detail: `The bearer token is not a compact JWT (header.payload.signature). ${AS_ISSUED}`,
  },
  notDecodable: {
    code: 'token_malformed',
    detail: `The bearer token's header or claims are not valid base64url JSON. ${AS_ISSUED}`,
  },
  notJwt: { code: 'token_malformed', detail: `The bearer token is not a valid JWT. ${AS_ISSUED}` },
  noKid: {
    code: 'token_malformed',
    detail: 'The token header has no kid; this issuer requires one to pick the signing key.',
  },
  issuerUnknown: {
    code: 'token_issuer_untrusted',
    detail:
      "The token's iss claim is missing or names an issuer this gateway does not trust. " +
      'Use a token from your company identity provider.',
  },
  issuerMismatch: {
    code: 'token_issuer_untrusted',
    detail: "The token's iss claim names an issuer this gateway does not trust.",
  },
  noSubject: {
    code: 'token_claim_invalid',
    detail: "The token's sub claim must be a non-empty string naming the caller.",
  },
  expired: { code: 'token_expired', detail: `The token has expired. ${GET_FRESH}` },
  tooOld: {
    code: 'token_claim_invalid',
    detail: `The token's iat claim is older than this issuer allows (maxTokenAge). ${GET_FRESH}`,
  },
  iatInvalid: {
    code: 'token_claim_invalid',
    detail: "The token's iat claim is missing or in the future. Check the issuer's clock, or get a fresh token.",
  },
  notYetValid: {
    code: 'token_not_yet_valid',
    detail:
      "The token is not valid yet (nbf is in the future). Check the caller's clock, or wait until the token is valid.",
  },
  badSignature: {
    code: 'token_signature_invalid',
    detail:
      "The token's signature does not match the issuer's keys. " +
      'Use a token issued by your company identity provider, unmodified.',
  },
  keyUnknown: {
    code: 'token_key_unknown',
    detail:
      "The issuer publishes no single key matching this token's kid and algorithm. If keys were just rotated, " +
      'get a fresh token; otherwise the token was not issued by a trusted provider.',
  },
} as const satisfies Record<string, Refusal>;

function refused(refusal: Refusal, cause?: unknown): GatewayError {
  return new GatewayError(refusal.code, refusal.detail, { cause });
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
  onJwksFetch?: (issuer: string, result: 'ok' | 'error') => void,
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
        ...(onJwksFetch !== undefined ? { onFetch: (result) => onJwksFetch(issuer.issuer, result) } : {}),
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

/** Each configured issuer with its key source, by its exact `iss`. */
async function trustIssuers(
  issuers: readonly IssuerConfig[],
  env: Readonly<Record<string, string | undefined>>,
  log: Logger,
  now: () => number,
  onJwksFetch?: (issuer: string, result: 'ok' | 'error') => void,
  previous?: Pick<TokenVerifier, 'remoteKeysFor'>,
): Promise<TrustedIssuers> {
  const byIssuer = new Map<string, TrustedIssuer>();
  for (const config of issuers) {
    byIssuer.set(config.issuer, {
      config,
      // Carried over, an unchanged issuer keeps its keys through a reload even while its IdP cannot be reached.
      keys: previous?.remoteKeysFor?.(config) ?? (await keySourceFor(config, env, log, now, onJwksFetch)),
      audiences: typeof config.audience === 'string' ? [config.audience] : config.audience,
      requiredClaims: [...new Set(['exp', 'sub', ...config.requiredClaims])],
    });
  }
  return byIssuer;
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
    /** Told the result of every remote JWKS fetch, by the issuer's configured `issuer`. */
    onJwksFetch?: (issuer: string, result: 'ok' | 'error') => void;
    /** The verifier this one replaces: the remote JWKS of issuers configured as they were are reused. */
    previous?: Pick<TokenVerifier, 'remoteKeysFor'>;
  },
): Promise<TokenVerifier> {
  const now = deps.now ?? Date.now;
  const cache =
    deps.cache !== undefined && deps.cache.maxEntries > 0 ? new TokenCache({ ...deps.cache, now }) : undefined;
  const byIssuer = await trustIssuers(issuers, deps.env, deps.log, now, deps.onJwksFetch, deps.previous);
  const check = (token: string): Promise<Principal> => verifyUncached(token, byIssuer, now);
  return {
    verify: cache === undefined ? check : (token) => verifyCached(token, cache, check, byIssuer),
    async ready() {
      const results = await Promise.all([...byIssuer.values()].map((i) => i.keys.ready()));
      return results.every(Boolean);
    },
    remoteKeysFor(config) {
      const trusted = byIssuer.get(config.issuer);
      const same = trusted !== undefined && JSON.stringify(trusted.config) === JSON.stringify(config);
      return same && trusted.keys instanceof RemoteJwks ? trusted.keys : undefined;
    },
  };
}

/** A remembered caller or final refusal answers at once; otherwise `check` decides, and is remembered. */
async function verifyCached(
  token: string,
  cache: TokenCache,
  check: (token: string) => Promise<Principal>,
  byIssuer: TrustedIssuers,
): Promise<Principal> {
  const key = TokenCache.keyOf(token);
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const refusal = cache.refusal(key);
  if (refusal !== undefined) throw refusal;
  try {
    const principal = await check(token);
    // maxTokenAge must hold on hits too: the entry never outlives iat + maxTokenAge.
    cache.set(key, principal, { maxTokenAgeMs: byIssuer.get(principal.iss)?.config.maxTokenAge });
    return principal;
  } catch (err) {
    if (isFinal(err)) cache.refuse(key, err, REJECTION_TTL_MS);
    throw err;
  }
}

async function verifyUncached(token: string, byIssuer: TrustedIssuers, now: () => number): Promise<Principal> {
  const { trusted, algorithms } = screen(token, byIssuer);
  try {
    const options = verifyOptions(trusted, algorithms, new Date(now()));
    const { payload } = await jwtVerify(token, trusted.keys.getKey as JWTVerifyGetKey, options);
    return principalOf(payload, trusted);
  } catch (err) {
    throw translate(err, trusted);
  }
}

/**
 * What is refused before any signature check, from the unverified token: not a compact JWT, an
 * untrusted issuer, an algorithm the issuer may not use, no kid where the issuer requires one.
 */
function screen(token: string, byIssuer: TrustedIssuers): { trusted: TrustedIssuer; algorithms: readonly string[] } {
  if (token.length > MAX_TOKEN_LENGTH || token.split('.').length !== 3) throw refused(refusals.notCompact);
  const { alg, kid, iss } = decodeUnverified(token);
  const trusted = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
  if (trusted === undefined) throw refused(refusals.issuerUnknown);
  const algorithms = trusted.config.algorithms as readonly string[];
  if (alg === undefined || !algorithms.includes(alg)) {
    // The header is unverified input: the detail names what is allowed, never what the token claims.
    throw refused({
      code: 'token_algorithm_not_allowed',
      detail:
        `The token's algorithm is not one this issuer may use (allowed: ${algorithms.join(', ')}). ` +
        'Use a normal token from your identity provider.',
    });
  }
  if (trusted.config.requireKid && kid === undefined) throw refused(refusals.noKid);
  return { trusted, algorithms };
}

function decodeUnverified(token: string): { alg: string | undefined; kid: string | undefined; iss: unknown } {
  try {
    const { alg, kid } = decodeProtectedHeader(token);
    return { alg, kid, iss: decodeJwt(token).iss };
  } catch (err) {
    throw refused(refusals.notDecodable, err);
  }
}

function verifyOptions(trusted: TrustedIssuer, algorithms: readonly string[], currentDate: Date): JWTVerifyOptions {
  const { config } = trusted;
  return {
    issuer: config.issuer,
    audience: [...trusted.audiences],
    algorithms: [...algorithms],
    clockTolerance: config.clockTolerance / 1000,
    requiredClaims: [...trusted.requiredClaims],
    currentDate,
    ...(config.maxTokenAge !== undefined ? { maxTokenAge: config.maxTokenAge / 1000 } : {}),
    ...(config.typ !== undefined ? { typ: config.typ } : {}),
  };
}

function principalOf(payload: JWTPayload, trusted: TrustedIssuer): Principal {
  if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw refused(refusals.noSubject);
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
}

/** Maps jose's errors (by class) to our stable error codes; anything unknown stays a 500. */
function translate(err: unknown, issuer: TrustedIssuer): unknown {
  if (err instanceof GatewayError) return err;
  if (err instanceof KeysUnavailableError) {
    return new GatewayError(
      'jwks_unavailable',
      "The identity provider's signing keys could not be fetched, so the token was not judged. " +
        'Retry shortly; if it persists, tell the platform team.',
      { cause: err, headers: { 'retry-after': '5' } },
    );
  }
  const refusal = joseRefusal(err, issuer);
  return refusal === undefined ? err : refused(refusal, err);
}

function joseRefusal(err: unknown, issuer: TrustedIssuer): Refusal | undefined {
  // jose reports an iat older than maxTokenAge as JWTExpired; the token has not expired, it is too old.
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? refusals.tooOld : refusals.expired;
  if (err instanceof joseErrors.JWTClaimValidationFailed) return claimRefusal(err, issuer);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return refusals.badSignature;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    const allowed = issuer.config.algorithms.join(', ');
    return {
      code: 'token_algorithm_not_allowed',
      detail: `The token's algorithm is not allowed for this issuer (allowed: ${allowed}).`,
    };
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return refusals.keyUnknown;
  }
  const notJwt = [joseErrors.JWTInvalid, joseErrors.JWSInvalid, joseErrors.JOSENotSupported];
  return notJwt.some((kind) => err instanceof kind) ? refusals.notJwt : undefined;
}

/** A claim check that failed, by the claim jose names. */
function claimRefusal(err: joseErrors.JWTClaimValidationFailed, issuer: TrustedIssuer): Refusal {
  switch (err.claim) {
    case 'nbf':
      return refusals.notYetValid;
    case 'aud':
      return {
        code: 'token_audience_invalid',
        detail:
          "The token's aud claim does not name this gateway. " +
          `Request a token for audience ${issuer.audiences.join(' or ')}.`,
      };
    case 'iss':
      return refusals.issuerMismatch;
    case 'iat':
      return refusals.iatInvalid;
    default: {
      const problem = err.reason === 'missing' ? 'missing' : 'invalid';
      return {
        code: 'token_claim_invalid',
        detail: `The token's ${err.claim} claim is ${problem}. Get a token that carries it.`,
      };
    }
  }
}
