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
