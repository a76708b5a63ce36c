import { describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { createPolicy } from '../../src/policy/policy.js';

const principal = (sub: string, claims: Record<string, unknown> = {}, iss = 'https://idp'): Principal => ({
  iss,
  sub,
  claims: { iss, sub, ...claims },
});

describe('policy', () => {
  it('denies everything when there are no rules', () => {
    expect(createPolicy([]).allows(principal('svc'), 'runtime.start', 'Acme-Prod')).toBe(false);
  });

  it('grants by sub on listed orgs and listed actions only', () => {
    const policy = createPolicy([{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }]);
    expect(policy.allows(principal('svc-billing'), 'runtime.start', 'Acme-Prod')).toBe(true);
    expect(policy.allows(principal('svc-billing'), 'runtime.stop', 'Acme-Prod')).toBe(false);
    expect(policy.allows(principal('svc-billing'), 'runtime.start', 'Other')).toBe(false);
    expect(policy.allows(principal('svc-billing'), 'runtime.start', 'acme-prod')).toBe(false);
    expect(policy.allows(principal('svc-other'), 'runtime.start', 'Acme-Prod')).toBe(false);
  });

  it('matches scope as a space-delimited string and array claims by membership', () => {
    const policy = createPolicy([
      {
        match: { claims: { scope: 'snaplogic:runtime:start', groups: ['data-eng', 'platform'] } },
        orgs: '*',
        actions: ['runtime.start'],
      },
    ]);
    expect(
      policy.allows(
        principal('a', { scope: 'openid snaplogic:runtime:start', groups: ['platform'] }),
        'runtime.start',
        'Any',
      ),
    ).toBe(true);
    expect(policy.allows(principal('a', { scope: 'openid', groups: ['platform'] }), 'runtime.start', 'Any')).toBe(
      false,
    );
    expect(policy.allows(principal('a', { scope: 'snaplogic:runtime:start' }), 'runtime.start', 'Any')).toBe(false);
    // "scope" substring tricks do not match.
    expect(
      policy.allows(
        principal('a', { scope: 'snaplogic:runtime:start-all', groups: 'platform' }),
        'runtime.start',
        'Any',
      ),
    ).toBe(false);
  });

  it('reads nested claims by dotted path, preferring an exact key', () => {
    const policy = createPolicy([
      { match: { claims: { 'realm_access.roles': 'resumer' } }, orgs: ['X'], actions: ['runtime.start'] },
    ]);
    expect(policy.allows(principal('a', { realm_access: { roles: ['resumer'] } }), 'runtime.start', 'X')).toBe(true);
    expect(policy.allows(principal('a', { realm_access: { roles: ['viewer'] } }), 'runtime.start', 'X')).toBe(false);
  });

  it('pins a rule to an issuer when it names one', () => {
    const policy = createPolicy([
      { match: { iss: 'https://idp-a', sub: 'svc' }, orgs: ['X'], actions: ['runtime.start'] },
    ]);
    expect(policy.allows(principal('svc', {}, 'https://idp-a'), 'runtime.start', 'X')).toBe(true);
    expect(policy.allows(principal('svc', {}, 'https://idp-b'), 'runtime.start', 'X')).toBe(false);
  });
});
