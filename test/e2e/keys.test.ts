// Key sources and their failure modes: JWKS outages (503, never 401), stale-if-error, refetch bounds, JWKS file, PEM
// key, HMAC secret.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, tempDir, testSecrets, type TestGateway } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { sleep } from '../helpers/wait.js';
import { closedAfterEach, useStandInAndFreshIssuer } from '../helpers/world.js';

const world = useStandInAndFreshIssuer();
const open = closedAfterEach();

async function gatewayWith(issuers: unknown[], env: Record<string, string> = testSecrets): Promise<TestGateway> {
  const gw = await startTestGateway(baseConfig(world.standIn, world.issuer, { auth: { issuers } }), env);
  open.push(gw);
  return gw;
}

/** Resumes a fresh Acme-Prod run through `gw` with `token`. */
const call = (gw: TestGateway, token: string) => resumeNewRun(gw.url, world.standIn, token);

/** A token for svc-billing from `iss`, signed with `key` (`alg`, and `kid` when given), valid for 5 minutes. */
async function signed(iss: string, alg: string, key: Parameters<SignJWT['sign']>[0], kid?: string): Promise<string> {
  const token = await new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
    .setProtectedHeader(kid === undefined ? { alg } : { alg, kid })
    .setIssuer(iss)
    .setExpirationTime('5m')
    .sign(key);
  recordSecret(token);
  return token;
}

describe('remote JWKS', () => {
  it('answers 503 jwks_unavailable (not 401) while the JWKS cannot be fetched, and recovers by itself', async () => {
    world.issuer.mode = 'error';
    // Without keys, a fetch is tried at most once per cooldown: 1 s here, so recovery is seen within it.
    const gw = await gatewayWith([world.issuer.configEntry({ jwks: { cooldown: '1s' } })]);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const before = world.standIn.received.length;

    const res = await call(gw, jwt);
    expect(res.status, res.text).toBe(503);
    expect(res.json.code).toBe('jwks_unavailable');
    expect(res.headers['retry-after']).toBe('5');
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(world.standIn.received.length).toBe(before);
    expect(gw.audit.at(-1)).toMatchObject({ decision: 'unavailable', reason: 'jwks_unavailable' });
    const ready = await send(gw.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    // The callers' port says not ready; which check fails is on the admin listener.
    expect(ready.json).toEqual({ status: 'not_ready' });

    world.issuer.mode = 'up';
    await sleep(1_100);
    const ok = await call(gw, jwt);
    expect(ok.status, ok.text).toBe(200);
    expect((await send(gw.url, 'GET', '/readyz')).status).toBe(200);
  });

  it('answers 503 within the JWKS timeout when the JWKS endpoint hangs', async () => {
    world.issuer.mode = 'hang';
    const gw = await gatewayWith([world.issuer.configEntry({ jwks: { timeout: '300ms' } })]);
    const started = Date.now();
    const res = await call(gw, await world.issuer.mint({ sub: 'svc-billing' }));
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('keeps serving the last good keys when a refresh fails (stale-if-error)', async () => {
    const gw = await gatewayWith([world.issuer.configEntry({ jwks: { cacheMaxAge: '50ms', cooldown: '10ms' } })]);
    expect((await call(gw, await world.issuer.mint({ sub: 'svc-billing' }))).status).toBe(200);
    world.issuer.mode = 'error';
    await sleep(100);
    const fetchesBefore = world.issuer.jwksFetches;
    const res = await call(gw, await world.issuer.mint({ sub: 'svc-billing' }));
    expect(res.status, res.text).toBe(200);
    expect(world.issuer.jwksFetches).toBeGreaterThan(fetchesBefore);
    expect(gw.logs.some((l) => l.msg === 'jwks fetch failed' && l.keptLastGood === true)).toBe(true);
  });

  it(
    'answers a repeated bad token the same way, ' +
      'and accepts a token whose key is published after it was first refused',
    async () => {
      const gw = await gatewayWith([world.issuer.configEntry({ jwks: { cooldown: '1s' } })]);
      // A forged signature is a final answer for that token (remembered by hash for a few seconds).
      const forged = await world.issuer.mint({ sub: 'svc-billing' }, { forgeWithUnpublishedKey: true });
      const first = await call(gw, forged);
      const again = await call(gw, forged);
      expect([first.status, again.status]).toEqual([401, 401]);
      expect(first.json.code).toBe('token_signature_invalid');
      expect(again.text).toBe(first.text);
      expect(again.headers['www-authenticate']).toBe(first.headers['www-authenticate']);

      // An unknown kid is not final: once the IdP publishes the key, the same token works.
      const early = await world.issuer.mint({ sub: 'svc-billing' }, { nextKey: true });
      const refused = await call(gw, early);
      expect(refused.status).toBe(401);
      expect(refused.json.code).toBe('token_key_unknown');
      await world.issuer.rotate();
      await sleep(1_100); // the unknown-kid refetch cooldown
      const accepted = await call(gw, early);
      expect(accepted.status, accepted.text).toBe(200);
    },
  );

  it('bounds refetches caused by made-up kids (no fetch storm)', async () => {
    const gw = await gatewayWith([world.issuer.configEntry({ jwks: { cooldown: '30s' } })]);
    expect((await call(gw, await world.issuer.mint({ sub: 'svc-billing' }))).status).toBe(200);
    const before = world.issuer.jwksFetches;
    for (let i = 0; i < 25; i++) {
      const res = await call(gw, await world.issuer.mint({ sub: 'svc-billing' }, { kid: `made-up-${i}` }));
      expect(res.status).toBe(401);
    }
    expect(world.issuer.jwksFetches - before).toBeLessThanOrEqual(3);
  });

  it('fetches the JWKS once for many concurrent first requests (single flight)', async () => {
    const gw = await gatewayWith([world.issuer.configEntry()]);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const replies = await Promise.all(Array.from({ length: 20 }, () => call(gw, jwt)));
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(world.issuer.jwksFetches).toBe(1);
  });
});

describe('static key sources', () => {
  it('verifies with a local JWKS file', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const dir = tempDir();
    const file = join(dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'file-key', alg: 'RS256' }] }));
    const gw = await gatewayWith([
      { issuer: 'https://file-idp', audience: 'snapgate', jwksFile: file, algorithms: ['RS256'] },
    ]);
    expect((await call(gw, await signed('https://file-idp', 'RS256', privateKey, 'file-key'))).status).toBe(200);
  });

  it('verifies with a PEM public key and refuses an algorithm outside the pinned list', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const gw = await gatewayWith([
      {
        issuer: 'https://pem-idp',
        audience: 'snapgate',
        publicKey: await exportSPKI(publicKey),
        algorithms: ['ES256'],
      },
    ]);
    expect((await call(gw, await signed('https://pem-idp', 'ES256', privateKey))).status).toBe(200);
    const rs = await generateKeyPair('RS256');
    const wrongAlg = await call(gw, await signed('https://pem-idp', 'RS256', rs.privateKey));
    expect(wrongAlg.status).toBe(401);
    expect(wrongAlg.json.code).toBe('token_algorithm_not_allowed');
  });

  it('verifies HS256 only with an explicitly configured shared secret reference', async () => {
    const env = { ...testSecrets, IDP_HMAC: 'a-long-shared-secret-for-hmac-tokens-0123456789' };
    const gw = await gatewayWith(
      [{ issuer: 'https://hmac-idp', audience: 'snapgate', secret: 'env:IDP_HMAC', algorithms: ['HS256'] }],
      env,
    );
    const mint = (secret: string) => signed('https://hmac-idp', 'HS256', new TextEncoder().encode(secret));
    expect((await call(gw, await mint(env.IDP_HMAC))).status).toBe(200);
    const forged = await call(gw, await mint('another-secret-entirely-0123456789abcdef'));
    expect(forged.status).toBe(401);
    expect(forged.json.code).toBe('token_signature_invalid');
    expect(gw.logLines.join('\n')).not.toContain(env.IDP_HMAC);
  });

  it('honours the configured clock tolerance for exp', async () => {
    const gw = await gatewayWith([world.issuer.configEntry({ clockTolerance: '60s' })]);
    const recentlyExpired = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: -20 });
    expect((await call(gw, recentlyExpired)).status).toBe(200);
    const longExpired = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: -120 });
    expect((await call(gw, longExpired)).json.code).toBe('token_expired');
  });
});
