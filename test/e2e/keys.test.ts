// Key sources and their failure modes: JWKS outages (503, never 401), stale-if-error, refetch bounds, JWKS file, PEM key, HMAC secret.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  baseConfig,
  startTestStandIn,
  startTestGateway,
  tempDir,
  testSecrets,
  type TestGateway,
} from '../helpers/gateway.js';
import { resume, send } from '../helpers/http.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

let standIn: SnapLogicStandIn;
let issuer: TokenIssuer;
const open: TestGateway[] = [];

async function gatewayWith(issuers: unknown[], env: Record<string, string> = testSecrets): Promise<TestGateway> {
  const gw = await startTestGateway(baseConfig(standIn, issuer, { auth: { issuers } }), env);
  open.push(gw);
  return gw;
}

beforeAll(async () => {
  standIn = await startTestStandIn();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.close()));
  await issuer?.close();
});

afterAll(async () => {
  await standIn.close();
});

describe('remote JWKS', () => {
  it('answers 503 jwks_unavailable (not 401) while the JWKS cannot be fetched, and recovers by itself', async () => {
    issuer = await TokenIssuer.start();
    issuer.mode = 'error';
    // Without keys, a fetch is tried at most once per cooldown: 1 s here, so recovery is seen within it.
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        jwks: { cooldown: '1s' },
      },
    ]);
    const jwt = await issuer.mint({ sub: 'svc-billing' });
    const before = standIn.received.length;

    const res = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), jwt);
    expect(res.status, res.text).toBe(503);
    expect(res.json.code).toBe('jwks_unavailable');
    expect(res.headers['retry-after']).toBe('5');
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(standIn.received.length).toBe(before);
    expect(gw.audit.at(-1)).toMatchObject({ decision: 'unavailable', reason: 'jwks_unavailable' });
    const ready = await send(gw.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    // The callers' port says not ready; which check fails is on the admin listener.
    expect(ready.json).toEqual({ status: 'not_ready' });

    issuer.mode = 'up';
    await new Promise((r) => setTimeout(r, 1_100));
    const ok = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), jwt);
    expect(ok.status, ok.text).toBe(200);
    expect((await send(gw.url, 'GET', '/readyz')).status).toBe(200);
  });

  it('answers 503 within the JWKS timeout when the JWKS endpoint hangs', async () => {
    issuer = await TokenIssuer.start();
    issuer.mode = 'hang';
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        jwks: { timeout: '300ms' },
      },
    ]);
    const started = Date.now();
    const res = await resume(
      gw.url,
      'Acme-Prod',
      standIn.addRun('Acme-Prod'),
      await issuer.mint({ sub: 'svc-billing' }),
    );
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('keeps serving the last good keys when a refresh fails (stale-if-error)', async () => {
    issuer = await TokenIssuer.start();
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        jwks: { cacheMaxAge: '50ms', cooldown: '10ms' },
      },
    ]);
    expect(
      (await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), await issuer.mint({ sub: 'svc-billing' })))
        .status,
    ).toBe(200);
    issuer.mode = 'error';
    await new Promise((r) => setTimeout(r, 100));
    const fetchesBefore = issuer.jwksFetches;
    const res = await resume(
      gw.url,
      'Acme-Prod',
      standIn.addRun('Acme-Prod'),
      await issuer.mint({ sub: 'svc-billing' }),
    );
    expect(res.status, res.text).toBe(200);
    expect(issuer.jwksFetches).toBeGreaterThan(fetchesBefore);
    expect(gw.logs.some((l) => l.msg === 'jwks fetch failed' && l.keptLastGood === true)).toBe(true);
  });

  it('answers a repeated bad token the same way, and accepts a token whose key is published after it was first refused', async () => {
    issuer = await TokenIssuer.start();
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        jwks: { cooldown: '1s' },
      },
    ]);
    // A forged signature is a final answer for that token (remembered by hash for a few seconds).
    const forged = await issuer.mint({ sub: 'svc-billing' }, { forgeWithUnpublishedKey: true });
    const first = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), forged);
    const again = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), forged);
    expect([first.status, again.status]).toEqual([401, 401]);
    expect(first.json.code).toBe('token_signature_invalid');
    expect(again.text).toBe(first.text);
    expect(again.headers['www-authenticate']).toBe(first.headers['www-authenticate']);

    // An unknown kid is not final: once the IdP publishes the key, the same token works.
    const early = await issuer.mint({ sub: 'svc-billing' }, { nextKey: true });
    const refused = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), early);
    expect(refused.status).toBe(401);
    expect(refused.json.code).toBe('token_key_unknown');
    await issuer.rotate();
    await new Promise((r) => setTimeout(r, 1_100)); // the unknown-kid refetch cooldown
    const accepted = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), early);
    expect(accepted.status, accepted.text).toBe(200);
  });

  it('bounds refetches caused by made-up kids (no fetch storm)', async () => {
    issuer = await TokenIssuer.start();
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        jwks: { cooldown: '30s' },
      },
    ]);
    expect(
      (await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), await issuer.mint({ sub: 'svc-billing' })))
        .status,
    ).toBe(200);
    const before = issuer.jwksFetches;
    for (let i = 0; i < 25; i++) {
      const res = await resume(
        gw.url,
        'Acme-Prod',
        standIn.addRun('Acme-Prod'),
        await issuer.mint({ sub: 'svc-billing' }, { kid: `made-up-${i}` }),
      );
      expect(res.status).toBe(401);
    }
    expect(issuer.jwksFetches - before).toBeLessThanOrEqual(3);
  });

  it('fetches the JWKS once for many concurrent first requests (single flight)', async () => {
    issuer = await TokenIssuer.start();
    const gw = await gatewayWith([
      { issuer: issuer.issuer, audience: 'snapgate', jwksUri: issuer.jwksUri, algorithms: ['ES256'] },
    ]);
    const jwt = await issuer.mint({ sub: 'svc-billing' });
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), jwt)),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(issuer.jwksFetches).toBe(1);
  });
});

describe('static key sources', () => {
  it('verifies with a local JWKS file', async () => {
    issuer = await TokenIssuer.start();
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const dir = tempDir();
    const file = join(dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'file-key', alg: 'RS256' }] }));
    const gw = await gatewayWith([
      { issuer: 'https://file-idp', audience: 'snapgate', jwksFile: file, algorithms: ['RS256'] },
    ]);
    const jwt = await new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
      .setProtectedHeader({ alg: 'RS256', kid: 'file-key' })
      .setIssuer('https://file-idp')
      .setExpirationTime('5m')
      .sign(privateKey);
    expect((await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), jwt)).status).toBe(200);
  });

  it('verifies with a PEM public key and refuses an algorithm outside the pinned list', async () => {
    issuer = await TokenIssuer.start();
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const gw = await gatewayWith([
      {
        issuer: 'https://pem-idp',
        audience: 'snapgate',
        publicKey: await exportSPKI(publicKey),
        algorithms: ['ES256'],
      },
    ]);
    const mint = (alg: string, key: Parameters<SignJWT['sign']>[0]) =>
      new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
        .setProtectedHeader({ alg })
        .setIssuer('https://pem-idp')
        .setExpirationTime('5m')
        .sign(key);
    expect(
      (await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), await mint('ES256', privateKey))).status,
    ).toBe(200);
    const rs = await generateKeyPair('RS256');
    const wrongAlg = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), await mint('RS256', rs.privateKey));
    expect(wrongAlg.status).toBe(401);
    expect(wrongAlg.json.code).toBe('token_algorithm_not_allowed');
  });

  it('verifies HS256 only with an explicitly configured shared secret reference', async () => {
    issuer = await TokenIssuer.start();
    const env = { ...testSecrets, IDP_HMAC: 'a-long-shared-secret-for-hmac-tokens-0123456789' };
    const gw = await gatewayWith(
      [{ issuer: 'https://hmac-idp', audience: 'snapgate', secret: 'env:IDP_HMAC', algorithms: ['HS256'] }],
      env,
    );
    const mint = (secret: string) =>
      new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('https://hmac-idp')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(secret));
    expect((await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), await mint(env.IDP_HMAC))).status).toBe(200);
    const forged = await resume(
      gw.url,
      'Acme-Prod',
      standIn.addRun('Acme-Prod'),
      await mint('another-secret-entirely-0123456789abcdef'),
    );
    expect(forged.status).toBe(401);
    expect(forged.json.code).toBe('token_signature_invalid');
    expect(gw.logLines.join('\n')).not.toContain(env.IDP_HMAC);
  });

  it('honours the configured clock tolerance for exp', async () => {
    issuer = await TokenIssuer.start();
    const gw = await gatewayWith([
      {
        issuer: issuer.issuer,
        audience: 'snapgate',
        jwksUri: issuer.jwksUri,
        algorithms: ['ES256'],
        clockTolerance: '60s',
      },
    ]);
    const recentlyExpired = await issuer.mint({ sub: 'svc-billing' }, { expiresIn: -20 });
    expect((await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), recentlyExpired)).status).toBe(200);
    const longExpired = await issuer.mint({ sub: 'svc-billing' }, { expiresIn: -120 });
    expect((await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), longExpired)).json.code).toBe(
      'token_expired',
    );
  });
});
