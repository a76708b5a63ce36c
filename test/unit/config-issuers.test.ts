// Config rules that scope policy to the issuer: with several issuers every rule names one, and each issuer appears once.
import { describe, expect, it } from 'vitest';
import { problemsOf } from '../helpers/config.js';

const issuer = (iss: string) => ({ issuer: iss, audience: 'snapgate', jwksUri: `${iss}/jwks`, algorithms: ['ES256'] });

const twoIssuers = (policy: unknown[]) => ({
  auth: { issuers: [issuer('https://idp-a.example'), issuer('https://idp-b.example')] },
  policy,
  orgs: { 'Acme-Prod': { pod: 'https://elastic.snaplogic.com', username: 'env:U', password: 'file:/run/secrets/p' } },
});

describe('policy scoped to the issuer', () => {
  it('with two issuers, refuses a rule that names no issuer, at policy.<i>.match.iss, saying why', () => {
    const problems = problemsOf(
      twoIssuers([
        {
          match: { iss: 'https://idp-a.example', sub: 'svc-billing' },
          orgs: ['Acme-Prod'],
          actions: ['runtime.start'],
        },
        { match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
      ]),
    );
    expect(problems, problems.join('\n')).toEqual([expect.stringMatching(/^policy\.1\.match\.iss: .*issuer/)]);
    // The message explains the risk: another issuer's token with the same sub would match.
    expect(problems[0]).toMatch(/same sub/);
  });

  it('with two issuers, accepts rules that each name a configured issuer', () => {
    const problems = problemsOf(
      twoIssuers([
        {
          match: { iss: 'https://idp-a.example', sub: 'svc-billing' },
          orgs: ['Acme-Prod'],
          actions: ['runtime.start'],
        },
        {
          match: { iss: 'https://idp-b.example', claims: { scope: 'snaplogic:runtime:start' } },
          orgs: '*',
          actions: ['runtime.start'],
        },
      ]),
    );
    expect(problems).toEqual([]);
  });

  it('refuses a match.iss that names no configured issuer, even with a single issuer', () => {
    const doc = twoIssuers([
      { match: { iss: 'https://idp-c.example', sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
    ]);
    expect(problemsOf(doc)).toEqual([expect.stringMatching(/^policy\.0\.match\.iss: .*not .*auth\.issuers/)]);
    const single = { ...doc, auth: { issuers: [issuer('https://idp-a.example')] } };
    expect(problemsOf(single)).toEqual([expect.stringMatching(/^policy\.0\.match\.iss: /)]);
  });

  it('with one issuer, rules need not name it', () => {
    const doc = { ...twoIssuers([{ match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] }]) };
    doc.auth = { issuers: [issuer('https://idp-a.example')] };
    expect(problemsOf(doc)).toEqual([]);
  });

  it('refuses a duplicate issuer at auth.issuers.<j>.issuer instead of letting the later entry replace the earlier', () => {
    const doc = twoIssuers([
      { match: { iss: 'https://idp-a.example', sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
    ]);
    doc.auth.issuers = [
      issuer('https://idp-a.example'),
      issuer('https://idp-b.example'),
      { ...issuer('https://idp-a.example'), audience: 'other' },
    ];
    expect(problemsOf(doc)).toEqual([expect.stringMatching(/^auth\.issuers\.2\.issuer: .*auth\.issuers\.0/)]);
  });

  it('reports the issuer rules together with every other bad field in one pass', () => {
    const doc = twoIssuers([
      { match: { sub: 'svc-billing' }, orgs: ['Nope'], actions: ['runtime.start'] },
      { match: { iss: 'https://idp-x.example', sub: 'svc-x' }, orgs: ['Acme-Prod'], actions: ['runtime.fly'] },
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
