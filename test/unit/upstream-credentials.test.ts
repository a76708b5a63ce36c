// The SnapLogic credential of each call, in process against the stand-in over loopback: a jwt org's token (exact
// claims, kid, reuse, the caller's token never sent), the JWKS snapgate serves (public members only, Cache-Control,
// ETag), callers mapped to their own SnapLogic identity in both modes, and a Basic password rotated through a next
// one without a failed call. The stand-in fetches snapgate's JWKS over HTTP, as SnapLogic does.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/credentials/signing-keys.js';
import { problemsOf, minimalConfig } from '../helpers/config.js';
import { testSecrets } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { DATA_ENG, expectProblem, ISSUER, useInProcess, type InProcessApp } from '../helpers/in-process.js';
import { tokenFingerprint } from '../helpers/snaplogic-stand-in.js';

const world = useInProcess();
const ORG = 'Acme-Prod';
const SL_USER = 'svc-snapgate@acme.example';
const SIGNING_ISSUER = 'snapgate-in-process';
const NEXT_PASSWORD = 'acme-next-Pa55word!';
const BILLING_PASSWORD = 'acme-billing-Pa55word!';
for (const s of [NEXT_PASSWORD, BILLING_PASSWORD]) recordSecret(s);

let keyA: Awaited<ReturnType<typeof generateSigningKey>>;
let keyB: Awaited<ReturnType<typeof generateSigningKey>>;
let keyR: Awaited<ReturnType<typeof generateSigningKey>>;

/** The app whose JWKS the stand-in fetches: set by each test that builds a jwt app. */
let current: InProcessApp | undefined;
let jwksServer: Server;
let jwksUrl: string;

beforeAll(async () => {
  [keyA, keyB, keyR] = await Promise.all([
    generateSigningKey('ES256'),
    generateSigningKey('ES256'),
    generateSigningKey('RS256'),
  ]);
  for (const k of [keyA, keyB, keyR]) recordSecret(k.privatePem.split('\n').slice(1, -2).join(''));
  // SnapLogic's side of the JWKS URL: the app's own route, answered over HTTP.
  jwksServer = createServer((req, res) => {
    if (current === undefined) return void res.writeHead(503).end();
    void Promise.resolve(current.app.request(req.url ?? '/')).then(async (r) => {
      res.writeHead(r.status, Object.fromEntries(r.headers));
      res.end(Buffer.from(await r.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
});

const signing = (keys: { env: string; state: string; kid?: string }[], extra: Record<string, unknown> = {}) => ({
  issuer: SIGNING_ISSUER,
  keys: keys.map((k) => ({ key: `env:${k.env}`, state: k.state, ...(k.kid !== undefined ? { kid: k.kid } : {}) })),
  ...extra,
});
const keyEnv = () => ({ KEY_A: keyA.privatePem, KEY_B: keyB.privatePem, KEY_R: keyR.privatePem });
const jwtOrg = (extra: Record<string, unknown> = {}) => ({
  credentials: 'jwt',
  user: SL_USER,
  username: undefined,
  password: undefined,
  ...extra,
});

/** A jwt Acme-Prod signing with key A (B as next), registered at the stand-in and JWT-only. */
async function jwtApp(orgExtra: Record<string, unknown> = {}, signingExtra: Record<string, unknown> = {}) {
  const gw = await world.app({
    orgs: { [ORG]: jwtOrg(orgExtra) },
    signing: signing(
      [
        { env: 'KEY_A', state: 'active' },
        { env: 'KEY_B', state: 'next' },
      ],
      signingExtra,
    ),
    env: keyEnv(),
  });
  current = gw;
  world.standIn.setJwtIssuer(ORG, { issuerId: SIGNING_ISSUER, jwksUrl });
  world.standIn.setJwtOnly(ORG, true);
  return gw;
}

function resetStandIn(): void {
  world.standIn.setJwtIssuer(ORG, undefined);
  world.standIn.setJwtOnly(ORG, false);
  world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
}

async function metric(gw: InProcessApp, name: string): Promise<string[]> {
  const text = await gw.metrics.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(name));
}

describe('a jwt org', () => {
  it('sends a Bearer JWT snapgate signed (kid A, sub = the org user), never the caller token; reused', async () => {
    const gw = await jwtApp();
    try {
      const token = await world.signer.mint();
      const before = world.standIn.received.length;
      const first = await gw.resume(ORG, world.standIn.addRun(ORG), { token });
      const second = await gw.resume(ORG, world.standIn.addRun(ORG), { token });
      expect([first.status, second.status], first.text).toEqual([200, 200]);
      const calls = world.standIn.received.slice(before);
      expect(calls.map((c) => c.auth)).toEqual(['jwt', 'jwt']);
      expect(calls.map((c) => c.jwt?.kid)).toEqual([keyA.kid, keyA.kid]);
      expect(calls.map((c) => c.jwt?.sub)).toEqual([SL_USER, SL_USER]);
      expect(calls.every((c) => c.jwt?.verified)).toBe(true);
      expect(calls[0]!.jwt!.fingerprint).not.toBe(tokenFingerprint(token));
      // One signature for both calls: the token is reused until 80% of its lifetime.
      expect(calls[1]!.jwt!.fingerprint).toBe(calls[0]!.jwt!.fingerprint);
      expect(await metric(gw, 'snapgate_jwt_minted_total{')).toEqual([`snapgate_jwt_minted_total{org="${ORG}"} 1`]);
      for (const e of gw.audit.of(first.requestId)) {
        expect(e.upstreamIdentity, e.type).toEqual({ type: 'jwt', name: 'default', user: SL_USER });
      }
    } finally {
      resetStandIn();
    }
  });

  it('is refused with a generic 401 when the org has not registered snapgate: 502 naming the registration', async () => {
    const gw = await jwtApp();
    world.standIn.setJwtIssuer(ORG, { issuerId: 'someone-else', jwksUrl });
    try {
      const ruuid = world.standIn.addRun(ORG);
      const reply = await gw.resume(ORG, ruuid, { token: await world.signer.mint() });
      expectProblem(reply, 502, 'upstream_credentials_rejected');
      expect(reply.json.detail).toMatch(/JWT issuer registration/);
      expect(world.standIn.run(ORG, ruuid)?.state).toBe('Suspended');
      const warning = gw.logs.find((l) => String(l.msg).startsWith("SnapLogic rejected snapgate's JWT"));
      expect(warning).toMatchObject({ org: ORG, credentialType: 'jwt', user: SL_USER, upstreamStatus: 401 });
    } finally {
      resetStandIn();
    }
  });

  it('after key B becomes active (A retired), tokens carry kid B and the stand-in accepts them', async () => {
    const gw = await world.app({
      orgs: { [ORG]: jwtOrg() },
      signing: signing([
        { env: 'KEY_A', state: 'retired' },
        { env: 'KEY_B', state: 'active' },
      ]),
      env: keyEnv(),
    });
    current = gw;
    world.standIn.setJwtIssuer(ORG, { issuerId: SIGNING_ISSUER, jwksUrl });
    try {
      const before = world.standIn.received.length;
      const reply = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      expect(reply.status, reply.text).toBe(200);
      expect(world.standIn.received.slice(before).map((c) => c.jwt?.kid)).toEqual([keyB.kid]);
    } finally {
      resetStandIn();
    }
  });
});

describe('the JWKS snapgate serves', () => {
  const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

  it('holds next, active and retired public keys only, with Cache-Control, an ETag and 304', async () => {
    const gw = await world.app({
      orgs: { [ORG]: jwtOrg() },
      signing: signing(
        [
          { env: 'KEY_R', state: 'retired' },
          { env: 'KEY_A', state: 'active' },
          { env: 'KEY_B', state: 'next', kid: 'b-next' },
        ],
        { jwks: { path: '/keys/jwks.json', maxAge: '90s' } },
      ),
      env: keyEnv(),
    });
    const res = await gw.app.request('/keys/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=90');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await res.text();
    const body = JSON.parse(text) as { keys: Record<string, unknown>[] };
    expect(body.keys.map((k) => [k.kid, k.alg, k.kty, k.use])).toEqual([
      [keyR.kid, 'RS256', 'RSA', 'sig'],
      [keyA.kid, 'ES256', 'EC', 'sig'],
      ['b-next', 'ES256', 'EC', 'sig'],
    ]);
    for (const key of body.keys) {
      for (const m of privateMembers) expect(Object.hasOwn(key, m), `member ${m}`).toBe(false);
    }
    // Not even as text (a nested copy, another spelling of the member).
    for (const m of privateMembers) expect(text).not.toMatch(new RegExp(`"${m}"\\s*:`));
    const etag = res.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const again = await gw.app.request('/keys/jwks.json', { headers: { 'if-none-match': etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    // The default path is not served when another is configured, and the JWKS leaves no audit event.
    expect((await gw.app.request('/.well-known/jwks.json')).status).toBe(404);
    expect(gw.audit.events.filter((e) => e.requestId === etag)).toEqual([]);
    const logText = gw.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const k of [keyA, keyB, keyR]) expect(logText).not.toContain(k.privatePem.split('\n')[1]);
  });
});

describe('callers mapped to their own SnapLogic identity', () => {
  it('jwt: a mapped caller gets its user as sub, an unmapped one the org user; the audit names each', async () => {
    const gw = await jwtApp({
      identities: [{ match: { iss: ISSUER, claims: { groups: 'data-eng' } }, user: 'data-eng@acme.example' }],
    });
    try {
      const before = world.standIn.received.length;
      const mapped = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint(DATA_ENG) });
      const unmapped = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      expect([mapped.status, unmapped.status]).toEqual([200, 200]);
      expect(world.standIn.received.slice(before).map((c) => c.jwt?.sub)).toEqual(['data-eng@acme.example', SL_USER]);
      expect(gw.audit.of(mapped.requestId).map((e) => e.upstreamIdentity)).toEqual([
        { type: 'jwt', name: 'data-eng@acme.example', user: 'data-eng@acme.example' },
        { type: 'jwt', name: 'data-eng@acme.example', user: 'data-eng@acme.example' },
      ]);
      expect(gw.audit.of(unmapped.requestId)[0]!.upstreamIdentity).toEqual({
        type: 'jwt',
        name: 'default',
        user: SL_USER,
      });
      expect(await metric(gw, 'snapgate_jwt_minted_total{')).toEqual([`snapgate_jwt_minted_total{org="${ORG}"} 2`]);
    } finally {
      resetStandIn();
    }
  });

  it('basic: a mapped caller uses its own stored set; the audit names the set, never its user or password', async () => {
    world.standIn.setUser(ORG, 'svc-billing@acme.example', BILLING_PASSWORD);
    const gw = await world.app({
      orgs: {
        [ORG]: {
          identities: [
            {
              name: 'billing',
              match: { iss: ISSUER, sub: 'svc-billing' },
              username: 'env:BILLING_SL_USER',
              password: 'env:BILLING_SL_PASSWORD',
            },
          ],
        },
      },
      env: { BILLING_SL_USER: 'svc-billing@acme.example', BILLING_SL_PASSWORD: BILLING_PASSWORD },
    });
    try {
      const before = world.standIn.received.length;
      const mapped = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      const unmapped = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint(DATA_ENG) });
      expect([mapped.status, unmapped.status], mapped.text).toEqual([200, 200]);
      expect(world.standIn.received.slice(before).map((c) => c.authUser)).toEqual([
        'svc-billing@acme.example',
        testSecrets.ACME_SL_USER,
      ]);
      expect(gw.audit.of(mapped.requestId)[1]!.upstreamIdentity).toEqual({ type: 'basic', name: 'billing' });
      expect(gw.audit.of(unmapped.requestId)[1]!.upstreamIdentity).toEqual({ type: 'basic', name: 'default' });
      expect(JSON.stringify(gw.audit.events)).not.toContain('svc-billing@acme.example');
    } finally {
      world.standIn.setUser(ORG, 'svc-billing@acme.example', undefined);
    }
  });
});

describe('a Basic password rotated through nextPassword', () => {
  const rotating = { nextPassword: 'env:ACME_SL_NEXT_PASSWORD' };
  const env = { ACME_SL_NEXT_PASSWORD: NEXT_PASSWORD };

  it('a 401 to the current password is retried once with the next: the call succeeds, next is promoted', async () => {
    const gw = await world.app({ orgs: { [ORG]: rotating }, env });
    world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, NEXT_PASSWORD);
    try {
      const ruuid = world.standIn.addRun(ORG);
      const before = world.standIn.startCalls().length;
      const reply = await gw.resume(ORG, ruuid, { token: await world.signer.mint() });
      expect(reply.status, reply.text).toBe(200);
      // Two calls reached SnapLogic (the 401 and the retry); the run was resumed once.
      expect(world.standIn.startCalls().length - before).toBe(2);
      expect(world.standIn.run(ORG, ruuid)?.state).not.toBe('Suspended');
      expect(gw.logs.filter((l) => String(l.msg).startsWith('SnapLogic answered 401 to the current password'))).toEqual(
        [expect.objectContaining({ level: 'warn', org: ORG, identity: 'default' })],
      );
      expect(await metric(gw, 'snapgate_credential_fallbacks_total{')).toEqual([
        `snapgate_credential_fallbacks_total{org="${ORG}",identity="default"} 1`,
      ]);
      const [attempt, outcome] = gw.audit.of(reply.requestId);
      expect(attempt!.upstreamIdentity).toEqual({ type: 'basic', name: 'default' });
      expect(outcome!.upstreamIdentity).toEqual({ type: 'basic', name: 'default', nextPassword: true });

      // Promoted: the next call goes out with the next password first, one call.
      const mid = world.standIn.startCalls().length;
      const again = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      expect(again.status).toBe(200);
      expect(world.standIn.startCalls().length - mid).toBe(1);
      expect(gw.audit.of(again.requestId)[0]!.upstreamIdentity).toEqual({
        type: 'basic',
        name: 'default',
        nextPassword: true,
      });
      expect(await metric(gw, 'snapgate_credential_fallbacks_total{')).toEqual([
        `snapgate_credential_fallbacks_total{org="${ORG}",identity="default"} 1`,
      ]);
    } finally {
      resetStandIn();
    }
  });

  it('while the current password still works, the next one is never sent', async () => {
    const gw = await world.app({ orgs: { [ORG]: rotating }, env });
    const before = world.standIn.startCalls().length;
    const reply = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
    expect(reply.status).toBe(200);
    expect(world.standIn.startCalls().length - before).toBe(1);
    expect(await metric(gw, 'snapgate_credential_fallbacks_total{')).toEqual([]);
  });

  it('both refused: 502 upstream_credentials_rejected, the run untouched, nothing promoted', async () => {
    const gw = await world.app({ orgs: { [ORG]: rotating }, env });
    world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, 'a-third-password');
    try {
      const ruuid = world.standIn.addRun(ORG);
      const before = world.standIn.startCalls().length;
      const reply = await gw.resume(ORG, ruuid, { token: await world.signer.mint() });
      expectProblem(reply, 502, 'upstream_credentials_rejected');
      expect(world.standIn.startCalls().length - before).toBe(2);
      expect(world.standIn.run(ORG, ruuid)?.state).toBe('Suspended');
      // Not promoted: the next call tries the current password first again.
      const mid = world.standIn.startCalls().length;
      const again = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      expectProblem(again, 502, 'upstream_credentials_rejected');
      expect(world.standIn.startCalls().length - mid).toBe(2);
      const sent = world.standIn.startCalls().slice(mid);
      expect(sent[0]!.headers.authorization).not.toBe(sent[1]!.headers.authorization);
    } finally {
      resetStandIn();
    }
  });
});

describe('config', () => {
  const pod = 'https://elastic.snaplogic.com';
  const withOrg = (org: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    minimalConfig({ orgs: { [ORG]: { pod, ...org } }, ...extra });
  const keys = { issuer: 'snapgate', keys: [{ key: 'env:K', state: 'active' }] };

  it('a jwt org needs user and the signing section, and stores no password', () => {
    expect(problemsOf(withOrg({ credentials: 'jwt', username: 'env:U', password: 'env:P' }))).toEqual([
      expect.stringMatching(/^orgs\.Acme-Prod\.user: is required with credentials: jwt/),
      expect.stringMatching(/^orgs\.Acme-Prod\.username: is for credentials: basic/),
      expect.stringMatching(/^orgs\.Acme-Prod\.password: is for credentials: basic/),
      expect.stringMatching(/^orgs\.Acme-Prod\.credentials: jwt needs the signing section/),
    ]);
    expect(problemsOf(withOrg({ credentials: 'jwt', user: SL_USER }, { signing: keys }))).toEqual([]);
  });

  it('a basic org needs username and password; identities need what their mode needs, each name once', () => {
    expect(problemsOf(withOrg({ username: 'env:U' }))).toEqual([
      expect.stringMatching(/^orgs\.Acme-Prod\.password: is required with credentials: basic/),
    ]);
    const problems = problemsOf(
      withOrg({
        username: 'env:U',
        password: 'env:P',
        identities: [
          { match: { sub: 'a' }, user: 'x@y' },
          { name: 'default', match: { sub: 'b' }, username: 'env:U2', password: 'env:P2' },
          { name: 'two', match: { sub: 'c' }, username: 'env:U3', password: 'env:P3' },
          { name: 'two', match: { sub: 'd' }, username: 'env:U4', password: 'env:P4' },
        ],
      }),
    );
    expect(problems).toHaveLength(6);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.0\.name: is required with credentials: basic/),
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.0\.password: is required/),
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.0\.user: is for credentials: jwt/),
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.0\.username: is required/),
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.1\.name: "default" names the org's own/),
        expect.stringMatching(/^orgs\.Acme-Prod\.identities\.3\.name: repeats the identity of identities\.2/),
      ]),
    );
  });

  it('signing: exactly one active key, a lifetime from 1s to 1h, secret references only, a JWKS path of its own', () => {
    const problems = problemsOf(
      withOrg(
        { credentials: 'jwt', user: SL_USER },
        {
          signing: {
            issuer: 'snapgate',
            lifetime: '2h',
            keys: [
              { key: 'env:K1', state: 'next' },
              { key: '-----BEGIN PRIVATE KEY-----', state: 'retired' },
            ],
            jwks: { path: '/api/1/keys' },
          },
        },
      ),
    );
    expect(problems).toHaveLength(4);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^signing\.lifetime: must be from 1s to 1h/),
        expect.stringMatching(/^signing\.keys: must hold exactly one key with state: active/),
        expect.stringMatching(/^signing\.keys\.1\.key: must be a secret reference/),
        expect.stringMatching(/^signing\.jwks\.path: must not be under \/api\//),
      ]),
    );
    expect(problems.join('\n')).not.toContain('BEGIN PRIVATE KEY');
  });

  it("an identity's match names a configured issuer, and its own listener takes no other listener's port", () => {
    expect(
      problemsOf(
        withOrg(
          {
            credentials: 'jwt',
            user: SL_USER,
            identities: [{ match: { iss: 'https://nope', sub: 'a' }, user: 'b@c' }],
          },
          { signing: { ...keys, jwks: { port: 8080 } } },
        ),
      ).sort(),
    ).toEqual([
      expect.stringMatching(/^orgs\.Acme-Prod\.identities\.0\.match\.iss: names an issuer that is not configured/),
      expect.stringMatching(/^signing\.jwks\.port: is the port of the server listener/),
    ]);
  });
});
