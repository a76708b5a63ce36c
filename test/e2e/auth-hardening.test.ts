// Auth hardening through the real gateway: readiness does not hammer a dead IdP, stale keys expire, 401 bodies never
// echo the token's alg.
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, testSecrets, type TestGateway } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { sleep } from '../helpers/wait.js';
import { closedAfterEach, useStandInAndFreshIssuer } from '../helpers/world.js';

const world = useStandInAndFreshIssuer();
const open = closedAfterEach();

async function gatewayWith(issuers: unknown[]): Promise<TestGateway> {
  const gw = await startTestGateway(baseConfig(world.standIn, world.issuer, { auth: { issuers } }), testSecrets);
  open.push(gw);
  return gw;
}

describe('readiness while the identity provider is down', () => {
  it('20 /readyz calls cost at most one JWKS fetch per cooldown and one warning', async () => {
    world.issuer.mode = 'error';
    const gw = await gatewayWith([world.issuer.configEntry({ jwks: { cooldown: '30s' } })]);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await send(gw.url, 'GET', '/readyz')).status);
    const res = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }));
    expect(res.status, res.text).toBe(503);
    expect(res.json.code).toBe('jwks_unavailable');
    expect(statuses).toEqual(Array(20).fill(503));
    const warnings = gw.logs.filter((l) => l.level === 'warn' && l.msg === 'jwks fetch failed');
    expect(world.issuer.jwksFetches, `${world.issuer.jwksFetches} JWKS fetches`).toBe(1);
    expect(warnings.length, `${warnings.length} warnings`).toBe(1);
  });
});

describe('stale keys expire', () => {
  it(
    'serves the last good keys while the JWKS cannot be refreshed, ' +
      'for maxStale; then 503 jwks_unavailable until a fetch succeeds',
    async () => {
      const idp = world.issuer;
      const gw = await gatewayWith([
        idp.configEntry({ jwks: { cacheMaxAge: '50ms', cooldown: '20ms', maxStale: '600ms' } }),
      ]);
      // A fresh token per call, so the verified-token cache never answers for the keys.
      const call = async () =>
        resumeNewRun(gw.url, world.standIn, await idp.mint({ sub: 'svc-billing', jti: crypto.randomUUID() }));
      const first = await call();
      expect(first.status, `${first.text} ${JSON.stringify(gw.logs.filter((l) => l.level === 'error'))}`).toBe(200);
      const lastGood = Date.now();
      idp.mode = 'error';
      await sleep(150);
      const stale = await call();
      expect(stale.status, `stale-if-error: ${stale.text}`).toBe(200);

      await sleep(Math.max(0, lastGood + 700 - Date.now()));
      const expired = await call();
      expect(expired.status, `keys older than maxStale: ${expired.text}`).toBe(503);
      expect(expired.json.code).toBe('jwks_unavailable');
      expect((await send(gw.url, 'GET', '/readyz')).status).toBe(503);
      expect(gw.logs.filter((l) => l.msg === 'jwks keys dropped: older than maxStale')).toHaveLength(1);

      // Without keys, fetches are paced by the cooldown and at least 1 s apart.
      idp.mode = 'up';
      await sleep(1_050);
      const back = await call();
      expect(back.status, back.text).toBe(200);
    },
  );
});

describe('401 bodies', () => {
  it('never echo the unverified alg from the token header', async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const gw = await gatewayWith([
      {
        issuer: 'https://pem-idp',
        audience: 'snapgate',
        publicKey: await exportSPKI(publicKey),
        algorithms: ['ES256'],
      },
    ]);
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const exp = Math.floor(Date.now() / 1000) + 300;
    const claims = b64({ iss: 'https://pem-idp', sub: 'svc-billing', aud: 'snapgate', exp });
    const hostile = `${b64({ alg: 'ZZ-hostile-alg-value' })}.${claims}.c2ln`;
    const rs = await generateKeyPair('RS256');
    const rsToken = await new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer('https://pem-idp')
      .setExpirationTime(exp)
      .sign(rs.privateKey);
    for (const [token, alg] of [
      [hostile, 'ZZ-hostile-alg-value'],
      [rsToken, 'RS256'],
    ] as const) {
      const res = await resumeNewRun(gw.url, world.standIn, token);
      expect(res.status, res.text).toBe(401);
      expect(res.json.code).toBe('token_algorithm_not_allowed');
      expect(res.text, 'the body echoes the token header alg').not.toContain(alg);
      expect(JSON.stringify(res.headers)).not.toContain(alg);
      expect(res.json.detail).toContain('ES256');
    }
  });
});
