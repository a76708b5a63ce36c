// Config rules that scope policy to the issuer: with several issuers every rule names one; each issuer appears once.
import { describe, expect, it } from 'vitest';
import { minimalConfig, problemsOf } from '../helpers/config.js';

const issuer = (iss: string) => ({ issuer: iss, audience: 'snapgate', jwksUri: `${iss}/jwks`, algorithms: ['ES256'] });

const twoIssuers = (policy: unknown[]) =>
  minimalConfig({ auth: { issuers: [issuer('https://idp-a.example'), issuer('https://idp-b.example')] }, policy });

/** A policy rule granting `actions` (runtime.start) on `orgs` (Acme-Prod) to callers that `match`. */
const rule = (match: Record<string, unknown>, orgs: string[] | '*' = ['Acme-Prod'], actions = ['runtime.start']) => ({
  match,
  orgs,
  actions,
});

describe('policy scoped to the issuer', () => {
  it('with two issuers, refuses a rule that names no issuer, at policy.<i>.match.iss, saying why', () => {
    const problems = problemsOf(
      twoIssuers([rule({ iss: 'https://idp-a.example', sub: 'svc-billing' }), rule({ sub: 'svc-billing' })]),
    );
    expect(problems, problems.join('\n')).toEqual([expect.stringMatching(/^policy\.1\.match\.iss: .*issuer/)]);
    // The message explains the risk: another issuer's token with the same sub would match.
    expect(problems[0]).toMatch(/same sub/);
  });

  it('with two issuers, accepts rules that each name a configured issuer', () => {
    const problems = problemsOf(
      twoIssuers([
        rule({ iss: 'https://idp-a.example', sub: 'svc-billing' }),
        rule({ iss: 'https://idp-b.example', claims: { scope: 'snaplogic:runtime:start' } }, '*'),
      ]),
    );
    expect(problems).toEqual([]);
  });

  it('refuses a match.iss that names no configured issuer, even with a single issuer', () => {
    const doc = twoIssuers([rule({ iss: 'https://idp-c.example', sub: 'svc-billing' })]);
    expect(problemsOf(doc)).toEqual([expect.stringMatching(/^policy\.0\.match\.iss: .*not .*auth\.issuers/)]);
    const single = { ...doc, auth: { issuers: [issuer('https://idp-a.example')] } };
    expect(problemsOf(single)).toEqual([expect.stringMatching(/^policy\.0\.match\.iss: /)]);
  });

  it('with one issuer, rules need not name it', () => {
    const doc = { ...twoIssuers([rule({ sub: 'svc-billing' })]) };
    doc.auth = { issuers: [issuer('https://idp-a.example')] };
    expect(problemsOf(doc)).toEqual([]);
  });

  it(
    'refuses a duplicate issuer at auth.issuers.<j>.issuer ' + 'instead of letting the later entry replace the earlier',
    () => {
      const doc = twoIssuers([rule({ iss: 'https://idp-a.example', sub: 'svc-billing' })]);
      doc.auth.issuers = [
        issuer('https://idp-a.example'),
        issuer('https://idp-b.example'),
        { ...issuer('https://idp-a.example'), audience: 'other' },
      ];
      expect(problemsOf(doc)).toEqual([expect.stringMatching(/^auth\.issuers\.2\.issuer: .*auth\.issuers\.0/)]);
    },
  );

  it('reports the issuer rules together with every other bad field in one pass', () => {
    const doc = twoIssuers([
      rule({ sub: 'svc-billing' }, ['Nope']),
      rule({ iss: 'https://idp-x.example', sub: 'svc-x' }, ['Acme-Prod'], ['runtime.fly']),
    ]);
    doc.auth.issuers.push(issuer('https://idp-b.example'));
    const problems = problemsOf(doc);
    for (const path of [
      'policy.0.match.iss',
      'policy.0.orgs.0',
      'policy.1.match.iss',
      'policy.1.actions.0',
      'auth.issuers.2.issuer',
    ]) {
      expect(
        problems.some((p) => p.startsWith(`${path}:`)),
        problems.join('\n'),
      ).toBe(true);
    }
  });
});
