// The SnapLogic credentials under attack: a next-password retry that hangs or whose caller hangs up (what the audit
// says the call acted as), concurrent JWT mints (one signature per subject, the mint count exact), the JWKS route
// given hostile If-None-Match headers and HEAD.
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { createKeySet, generateSigningKey } from '../../src/credentials/signing-keys.js';
import type { CredentialStore } from '../../src/credentials/store.js';
import { createUpstreamAuth } from '../../src/credentials/upstream-auth.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { useInProcess } from '../helpers/in-process.js';

const world = useInProcess();

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
