// The SnapLogic credentials under attack: a next-password retry that hangs or whose caller hangs up (what the audit
// says the call acted as), concurrent JWT mints (one signature per subject, the mint count exact), the JWKS route
// given hostile If-None-Match headers and HEAD.
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { createKeySet, generateSigningKey } from '../../src/credentials/signing-keys.js';
import type { CredentialStore } from '../../src/credentials/store.js';
import { createUpstreamAuth } from '../../src/credentials/upstream-auth.js';
import { testSecrets } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { useInProcess } from '../helpers/in-process.js';

const world = useInProcess();
const ORG = 'Acme-Prod';
const NEXT_PASSWORD = 'acme-next-attack-Pa55word!';
recordSecret(NEXT_PASSWORD);
const rotating = { nextPassword: 'env:ACME_SL_NEXT_PASSWORD' };
const env = { ACME_SL_NEXT_PASSWORD: NEXT_PASSWORD };
const nextBasic = `Basic ${Buffer.from(`${testSecrets.ACME_SL_USER}:${NEXT_PASSWORD}`).toString('base64')}`;

describe('the retry with the next password', () => {
  it('that SnapLogic never answers: the outcome names the next password as the credential it may have run under', async () => {
    const gw = await world.app({ orgs: { [ORG]: rotating }, env, upstream: { headersTimeout: '300ms' } });
    world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, NEXT_PASSWORD);
    world.standIn.onRequest = (req) => {
      if (req.headers.authorization === nextBasic) world.standIn.setFault({ kind: 'hang', count: 1 });
    };
    try {
      const reply = await gw.resume(ORG, world.standIn.addRun(ORG), { token: await world.signer.mint() });
      expect(reply.status, reply.text).toBe(504);
      const events = gw.audit.of(reply.requestId);
      expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
      expect(events[1]!.upstreamIdentity).toEqual({ type: 'basic', name: 'default', nextPassword: true });
    } finally {
      world.standIn.onRequest = undefined;
      world.standIn.setFault(undefined);
      world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
    }
  });
});

describe('concurrent first calls of a jwt org', () => {
  it('count one mint per signature, whatever else is signed while a shared one is awaited', async () => {
    const key = await generateSigningKey('ES256');
    recordSecret(key.privatePem.split('\n').slice(1, -2).join(''));
    const keys = createKeySet([{ secret: key.privatePem, state: 'active' }]);
    const store = { keys: () => keys } as unknown as CredentialStore;
    const jwtOrg = (user: string) => ({ credentials: 'jwt', user, pod: world.standIn.url, identities: [] });
    const config = {
      orgs: { 'Org-A': jwtOrg('a@example.com'), 'Org-B': jwtOrg('b@example.com') },
      signing: { issuer: 'snapgate-attack', lifetime: 300_000 },
    } as unknown as Pick<Config, 'orgs' | 'signing'>;
    const counted: string[] = [];
    const auth = createUpstreamAuth(config, store, { onMint: (org) => counted.push(org) });
    // A's second call shares A's signature; B's is signed while it waits.
    const [a1, a2, b] = await Promise.all([
      auth.forCall('Org-A', undefined),
      auth.forCall('Org-A', undefined),
      auth.forCall('Org-B', undefined),
    ]);
    expect(a2.authorization).toBe(a1.authorization);
    expect(b.authorization).not.toBe(a1.authorization);
    expect(auth.minted()).toBe(2);
    expect(counted.sort()).toEqual(['Org-A', 'Org-B']);
  });
});

describe('the JWKS route under hostile conditional requests', () => {
  async function jwksApp() {
    const key = await generateSigningKey('ES256');
    recordSecret(key.privatePem.split('\n').slice(1, -2).join(''));
    return world.app({
      orgs: { [ORG]: { credentials: 'jwt', user: 'svc@acme.example', username: undefined, password: undefined } },
      signing: { issuer: 'snapgate-attack', keys: [{ key: 'env:KEY_A', state: 'active' }] },
      env: { KEY_A: key.privatePem },
    });
  }
  const path = '/.well-known/jwks.json';

  it('answers HEAD as GET without a body, and a weak or listed validator with 304', async () => {
    const gw = await jwksApp();
    const get = await gw.app.request(path);
    expect(get.status).toBe(200);
    const etag = get.headers.get('etag')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    const head = await gw.app.request(path, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(etag);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, ` W/"x" ,W/${etag} `, '*']) {
      const r = await gw.app.request(path, { headers: { 'if-none-match': inm } });
      expect(r.status, inm).toBe(304);
      expect(r.headers.get('etag')).toBe(etag);
    }
  });

  it('a flood of different or huge If-None-Match values gets the whole JWKS each time', async () => {
    const gw = await jwksApp();
    const body = await (await gw.app.request(path)).text();
    const values = [
      ...Array.from({ length: 500 }, (_, i) => `"v${i}"`),
      ','.repeat(8_000),
      `"${'a'.repeat(8_000)}"`,
      'W/',
      '"',
      '\u00ff\u00fe',
    ];
    for (const inm of values) {
      const r = await gw.app.request(path, { headers: { 'if-none-match': inm } });
      expect(r.status, inm.slice(0, 20)).toBe(200);
      expect(await r.text()).toBe(body);
    }
  });
});

describe('an Idempotency-Key call whose current password gets 401', () => {
  it('resumes once with the next password; a replay with the key sends nothing more', async () => {
    const gw = await world.app({ orgs: { [ORG]: rotating }, env });
    world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, NEXT_PASSWORD);
    try {
      const ruuid = world.standIn.addRun(ORG);
      const token = await world.signer.mint();
      const headers = { 'idempotency-key': `fallback-${ruuid.slice(0, 8)}` };
      const before = world.standIn.startCalls().length;
      const first = await gw.resume(ORG, ruuid, { token, headers });
      expect(first.status, first.text).toBe(200);
      expect(world.standIn.startCalls().length - before).toBe(2);
      const replay = await gw.resume(ORG, ruuid, { token, headers });
      expect(replay.status, replay.text).toBe(200);
      expect(replay.text).toBe(first.text);
      expect(world.standIn.startCalls().length - before).toBe(2);
      const outcomes = gw.audit.of(first.requestId).filter((e) => e.type === 'outcome');
      expect(outcomes).toHaveLength(1);
      expect(outcomes[0]!.upstreamIdentity).toEqual({ type: 'basic', name: 'default', nextPassword: true });
    } finally {
      world.standIn.setCredential(ORG, testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
    }
  });
});
