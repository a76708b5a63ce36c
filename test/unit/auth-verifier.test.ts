// The verifier with real signed tokens and a PEM key: iat age, maxTokenAge on cache hits, what a 401 detail may say.
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuerConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { createTokenVerifier } from '../../src/auth/verifier.js';

const ISS = 'https://pem-idp';
let privateKey: CryptoKey;
let publicPem: string;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  privateKey = pair.privateKey;
  publicPem = await exportSPKI(pair.publicKey);
});

function issuerConfig(overrides: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    issuer: ISS,
    audience: 'snapgate',
    algorithms: ['ES256'],
    publicKey: publicPem,
    requiredClaims: [],
    clockTolerance: 0,
    requireKid: false,
    jwks: { timeout: 1_000, cooldown: 30_000, cacheMaxAge: 600_000, maxStale: 3_600_000 },
    ...overrides,
  };
}

/** A token signed with the test key; times in seconds since the epoch. */
function mint(claims: { iat?: number; exp: number }, header: { alg: string } = { alg: 'ES256' }): Promise<string> {
  const jwt = new SignJWT({ sub: 'svc-billing', aud: 'snapgate', ...claims }).setProtectedHeader(header).setIssuer(ISS);
  return jwt.sign(privateKey);
}

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const outcome = await p.then(
    (value) => ({ value }),
    (err: unknown) => ({ err }),
  );
  if (!('err' in outcome)) throw new Error(`expected a refusal, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.err).toBeInstanceOf(GatewayError);
  return outcome.err as GatewayError;
}

const log = createLogger({ level: 'error', write: () => undefined });

describe('token age (maxTokenAge)', () => {
  it('refuses a token whose iat is older than maxTokenAge with token_claim_invalid, not token_expired', async () => {
    const verifier = await createTokenVerifier([issuerConfig({ maxTokenAge: 600_000 })], { env: {}, log });
    const now = Math.floor(Date.now() / 1000);
    const err = await refusal(verifier.verify(await mint({ iat: now - 3_600, exp: now + 300 })));
    expect(err.code, err.detail).toBe('token_claim_invalid');
    expect(err.detail).toContain('iat');
  });

  it(
    'a cached token stops being accepted once iat + maxTokenAge has passed, ' + 'though exp and maxTtl are later',
    async () => {
      let now = Date.now();
      const verifier = await createTokenVerifier([issuerConfig({ maxTokenAge: 60_000 })], {
        env: {},
        log,
        cache: { maxEntries: 100, maxTtlMs: 600_000 },
        now: () => now,
      });
      const t = Math.floor(now / 1000);
      const token = await mint({ iat: t, exp: t + 3_600 });
      expect((await verifier.verify(token)).sub).toBe('svc-billing');
      now += 30_000;
      expect((await verifier.verify(token)).sub).toBe('svc-billing');
      now += 31_000;
      const err = await refusal(verifier.verify(token));
      expect(err.code).toBe('token_claim_invalid');
    },
  );

  it('a refused too-old token stays refused on the cached path', async () => {
    const verifier = await createTokenVerifier([issuerConfig({ maxTokenAge: 60_000 })], {
      env: {},
      log,
      cache: { maxEntries: 100, maxTtlMs: 600_000 },
    });
    const t = Math.floor(Date.now() / 1000);
    const token = await mint({ iat: t - 120, exp: t + 3_600 });
    expect((await refusal(verifier.verify(token))).code).toBe('token_claim_invalid');
    expect((await refusal(verifier.verify(token))).code).toBe('token_claim_invalid');
  });
});

describe('algorithm refusals', () => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

  it('never echoes the unverified alg from the token header, and names the allowed algorithms', async () => {
    const verifier = await createTokenVerifier([issuerConfig({ algorithms: ['ES256', 'ES384'] })], { env: {}, log });
    const t = Math.floor(Date.now() / 1000);
    const hostileAlg = 'X-<script>alert(1)</script>';
    const claims = b64({ iss: ISS, sub: 'svc-billing', aud: 'snapgate', exp: t + 300 });
    const forged = `${b64({ alg: hostileAlg, typ: 'JWT' })}.${claims}.c2ln`;
    const err = await refusal(verifier.verify(forged));
    expect(err.code).toBe('token_algorithm_not_allowed');
    expect(err.detail).not.toContain('script');
    expect(err.detail).not.toContain('X-');
    expect(err.detail).toContain('ES256, ES384');

    const rs = await generateKeyPair('RS256');
    const rsToken = await new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer(ISS)
      .setExpirationTime(t + 300)
      .sign(rs.privateKey);
    const rsErr = await refusal(verifier.verify(rsToken));
    expect(rsErr.code).toBe('token_algorithm_not_allowed');
    expect(rsErr.detail).not.toContain('RS256');
  });
});
