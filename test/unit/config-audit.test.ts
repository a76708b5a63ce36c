// A config that audits nothing is refused unless it says so with audit.allowUnaudited: true.
import { describe, expect, it } from 'vitest';
import { minimalConfig, problemsOf } from '../helpers/config.js';
import { parseConfig } from '../../src/config/load.js';

const withAudit = (audit: unknown) => minimalConfig(audit === undefined ? {} : { audit });

describe('auditing off is never an accident', () => {
  it.each([
    ['no sinks', { sinks: [] }, 'audit.sinks'],
    ['stdout off and no sinks', { stdout: false }, 'audit.stdout'],
    [
      'no sink required',
      {
        sinks: [
          { type: 'stdout', required: false },
          { type: 'file', path: '/tmp/a.jsonl', required: false },
        ],
      },
      'audit.sinks',
    ],
  ])('refuses %s, saying to add audit.allowUnaudited: true', (_, audit, path) => {
    const problems = problemsOf(withAudit(audit));
    expect(problems, problems.join('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${path.replace('.', '\\.')}: .*allowUnaudited: true`)),
    ]);
  });

  it.each([
    ['no sinks', { sinks: [] }],
    ['stdout off and no sinks', { stdout: false }],
    ['no sink required', { sinks: [{ type: 'stdout', required: false }] }],
  ])('accepts %s with audit.allowUnaudited: true', (_, audit) => {
    const cfg = parseConfig(withAudit({ ...audit, allowUnaudited: true }), 'test');
    expect(cfg.audit.allowUnaudited).toBe(true);
  });

  it('accepts the default (one required stdout sink) and any config with a required sink', () => {
    expect(problemsOf(withAudit(undefined))).toEqual([]);
    expect(
      problemsOf(
        withAudit({
          sinks: [
            { type: 'stdout', required: false },
            { type: 'file', path: '/tmp/a.jsonl' },
          ],
        }),
      ),
    ).toEqual([]);
    // stdout: false is irrelevant when sinks are listed.
    expect(problemsOf(withAudit({ stdout: false, sinks: [{ type: 'stdout' }] }))).toEqual([]);
  });

  it('reports the audit rule together with every other bad field in one pass', () => {
    const doc = withAudit({ sinks: [], onFailure: 'maybe' });
    (doc.orgs['Acme-Prod'] as Record<string, unknown>).password = 'inline';
    const problems = problemsOf(doc);
    for (const path of ['audit.sinks', 'audit.onFailure', 'orgs.Acme-Prod.password']) {
      expect(
        problems.some((p) => p.startsWith(`${path}:`)),
        problems.join('\n'),
      ).toBe(true);
    }
  });
});
