import { describe, expect, it } from 'vitest';
import {
  errorCodeForPath,
  invokers,
  matchRuntimePath,
  MAX_QUERY_VALUE_LENGTH,
  RESERVED_FIRST_SEGMENTS,
  runStates,
  runtimeActions,
  runtimeCalls,
  upstreamPath,
  validateQuery,
  type QueryCheck,
  type RuntimeCall,
  type RuntimeCallId,
} from '../../src/snaplogic/runtime-api.js';
import type { RequestTarget } from '../../src/snaplogic/target.js';

const P = '/api/1/rest/public/runtime';
const ORG = 'Acme-Prod';
const RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';
const { list, status, start, stop, stats } = runtimeCalls;
const daily = runtimeCalls['stats.daily'];
const concurrent = runtimeCalls['stats.concurrent'];

const check = (c: RuntimeCall, query: string, org = ORG): QueryCheck =>
  validateQuery(c, new URLSearchParams(query), org);
const forwarded = (c: RuntimeCall, query: string): string => {
  const result = check(c, query);
  if (!result.ok) throw new Error(`refused ${query}: ${JSON.stringify(result.problem)}`);
  return result.query;
};
const refused = (c: RuntimeCall, query: string, org = ORG) => {
  const result = check(c, query, org);
  if (result.ok) throw new Error(`accepted ${query} as ${JSON.stringify(result.query)}`);
  return result.problem;
};

describe('the runtime call table', () => {
  it('lists every call with its action, method, path, kind and whether it names a run', () => {
    const rows = Object.values(runtimeCalls).map((c) => [c.id, c.action, c.method, c.pattern, c.kind, c.targetsRun]);
    expect(rows).toEqual([
      ['start', 'runtime.start', 'POST', `${P}/start/{org}/{ruuid}`, 'write', true],
      ['stop', 'runtime.stop', 'POST', `${P}/stop/{org}/{ruuid}`, 'write', true],
      ['list', 'runtime.list', 'GET', `${P}/{org}`, 'read', false],
      ['status', 'runtime.status', 'GET', `${P}/{org}/{ruuid}`, 'read', true],
      ['stats', 'runtime.stats', 'GET', `${P}/api-stats/{org}`, 'read', false],
      ['stats.daily', 'runtime.stats', 'GET', `${P}/api-stats/{org}/daily`, 'read', false],
      ['stats.concurrent', 'runtime.stats', 'GET', `${P}/api-stats/{org}/concurrent`, 'read', false],
    ]);
  });

  it('documents each call’s query parameters, in forwarding order', () => {
    const names = (id: RuntimeCallId) => runtimeCalls[id].query.map((q) => q.name);
    expect(names('start')).toEqual([]);
    expect(names('stop')).toEqual([]);
    expect(names('status')).toEqual(['level']);
    expect(names('list')).toEqual([
      'state',
      'invoker',
      'pipe_name',
      'project_path',
      'plex_label',
      'cc_label',
      'user_id',
      'last_hours',
      'start',
      'end',
      'limit',
      'offset',
      'level',
    ]);
    expect(names('stats')).toEqual(['date_time']);
    expect(names('stats.daily')).toEqual(['date', 'date_time']);
    expect(names('stats.concurrent')).toEqual(['date_time']);
  });

  it('covers every action and is frozen', () => {
    expect(new Set(Object.values(runtimeCalls).map((c) => c.action))).toEqual(new Set(runtimeActions));
    expect(Object.isFrozen(runtimeCalls)).toBe(true);
    expect(Object.isFrozen(list)).toBe(true);
    expect(Object.isFrozen(list.query)).toBe(true);
  });
});

describe('matchRuntimePath: every call', () => {
  const cases: Array<[string, string, RuntimeCallId, string | undefined]> = [
    ['POST', `${P}/start/${ORG}/${RUUID}`, 'start', RUUID],
    ['POST', `${P}/stop/${ORG}/${RUUID}`, 'stop', RUUID],
    ['GET', `${P}/${ORG}`, 'list', undefined],
    ['GET', `${P}/${ORG}/${RUUID}`, 'status', RUUID],
    ['GET', `${P}/api-stats/${ORG}`, 'stats', undefined],
    ['GET', `${P}/api-stats/${ORG}/daily`, 'stats.daily', undefined],
    ['GET', `${P}/api-stats/${ORG}/concurrent`, 'stats.concurrent', undefined],
  ];

  it.each(cases)('%s %s → %s', (method, path, id, ruuid) => {
    const match = matchRuntimePath(method, path);
    expect(match).toEqual(
      ruuid === undefined
        ? { ok: true, call: runtimeCalls[id], org: ORG }
        : { ok: true, call: runtimeCalls[id], org: ORG, ruuid },
    );
  });

  it.each(cases)('%s %s with the other method → 405 naming the allowed one', (method, path) => {
    const other = method === 'GET' ? 'POST' : 'GET';
    expect(matchRuntimePath(other, path)).toMatchObject({ ok: false, reason: 'method_not_allowed', allow: [method] });
    expect(matchRuntimePath('DELETE', path)).toMatchObject({ reason: 'method_not_allowed', allow: [method] });
  });

  it('compares methods exactly and does not serve HEAD', () => {
    expect(matchRuntimePath('get', `${P}/${ORG}`)).toMatchObject({ reason: 'method_not_allowed', allow: ['GET'] });
    expect(matchRuntimePath('HEAD', `${P}/${ORG}`)).toMatchObject({ reason: 'method_not_allowed' });
  });
});

describe('matchRuntimePath: the keyword segments win over {org}', () => {
  it('start, stop and api-stats as a first segment are never an org', () => {
    // What would be a list of org "start" or a status of org "stop" is a malformed start/stop/api-stats path.
    expect(matchRuntimePath('GET', `${P}/start`)).toMatchObject({ reason: 'method_not_allowed', allow: ['POST'] });
    expect(matchRuntimePath('GET', `${P}/stop/${RUUID}`)).toMatchObject({ reason: 'method_not_allowed' });
    expect(matchRuntimePath('POST', `${P}/start/${RUUID}`)).toMatchObject({ reason: 'invalid_path' });
    expect(matchRuntimePath('GET', `${P}/api-stats`)).toMatchObject({ reason: 'invalid_path' });
    expect(matchRuntimePath('GET', `${P}/api-stats/${ORG}/${RUUID}`)).toMatchObject({ reason: 'invalid_path' });
    expect(RESERVED_FIRST_SEGMENTS).toEqual(['start', 'stop', 'api-stats']);
  });

  it('an org named like a keyword is still the org of a keyword call', () => {
    expect(matchRuntimePath('POST', `${P}/start/stop/${RUUID}`)).toMatchObject({ ok: true, call: start, org: 'stop' });
    expect(matchRuntimePath('POST', `${P}/stop/start/${RUUID}`)).toMatchObject({ ok: true, call: stop, org: 'start' });
    expect(matchRuntimePath('GET', `${P}/api-stats/api-stats`)).toMatchObject({ ok: true, call: stats });
    expect(matchRuntimePath('GET', `${P}/api-stats/daily/daily`)).toMatchObject({
      ok: true,
      call: daily,
      org: 'daily',
    });
  });

  it('keywords are case-sensitive, like orgs: Start and API-STATS are orgs', () => {
    expect(matchRuntimePath('GET', `${P}/Start`)).toMatchObject({ ok: true, call: list, org: 'Start' });
    expect(matchRuntimePath('GET', `${P}/API-STATS/${RUUID}`)).toMatchObject({ ok: true, call: status });
  });

  it('daily and concurrent are literal: another third segment is no call', () => {
    expect(matchRuntimePath('GET', `${P}/api-stats/${ORG}/Daily`)).toMatchObject({ reason: 'invalid_path' });
    expect(matchRuntimePath('GET', `${P}/api-stats/${ORG}/daily/x`)).toMatchObject({ reason: 'invalid_path' });
  });

  it('a first segment such as constructor or __proto__ is an org, not a lookup into an object', () => {
    expect(matchRuntimePath('GET', `${P}/constructor`)).toMatchObject({ ok: true, call: list, org: 'constructor' });
    // Not a valid org (it starts with "_"), but refused as one, not looked up.
    expect(matchRuntimePath('GET', `${P}/__proto__`)).toMatchObject({ reason: 'invalid_org', call: list });
    expect(matchRuntimePath('GET', `${P}/toString/${RUUID}`)).toMatchObject({ ok: true, call: status });
  });
});

describe('matchRuntimePath: refusals', () => {
  it('a path outside the runtime prefix is unknown (404)', () => {
    for (const path of ['/', '/api/1/rest/public', `${P}x/${ORG}`, `/api/1/rest/public/runtimes/${ORG}`, '/health']) {
      expect(matchRuntimePath('GET', path), path).toMatchObject({ ok: false, reason: 'unknown_path' });
    }
  });

  const malformed: Array<[string, string]> = [
    ['GET', P],
    ['GET', `${P}/`],
    ['GET', `${P}/${ORG}/`],
    ['GET', `${P}//${ORG}`],
    ['GET', `${P}/${ORG}/${RUUID}/extra`],
    ['GET', `${P}/${ORG}/..`],
    ['GET', `${P}/./${ORG}`],
    ['GET', `${P}/Other/../${ORG}`],
    ['POST', `${P}/start/${ORG}`],
    ['POST', `${P}/start`],
    ['POST', `${P}/start/${ORG}/${RUUID}/extra`],
    ['POST', `${P}/start//${ORG}/${RUUID}`],
    ['POST', `${P}/stop/../start/${ORG}`],
    ['GET', `${P}/api-stats/`],
    ['GET', `${P}/api-stats/${ORG}/daily/`],
  ];

  it.each(malformed)('%s %s → invalid_path (400)', (method, path) => {
    const match = matchRuntimePath(method, path);
    expect(match).toMatchObject({ ok: false, reason: 'invalid_path' });
    expect(match).not.toHaveProperty('call');
  });

  const badOrgs = ['Acme%20Prod', 'Acme..Prod', '-Acme', 'A'.repeat(101), 'Acme%2F..%2Fstop', 'Acme%00Prod', '%41cme'];

  it.each(badOrgs)('org %s → invalid_org (400) naming the call, for every call', (org) => {
    const paths: Array<[string, string, RuntimeCall]> = [
      ['POST', `${P}/start/${org}/${RUUID}`, start],
      ['POST', `${P}/stop/${org}/${RUUID}`, stop],
      ['GET', `${P}/${org}`, list],
      ['GET', `${P}/${org}/${RUUID}`, status],
      ['GET', `${P}/api-stats/${org}`, stats],
      ['GET', `${P}/api-stats/${org}/daily`, daily],
      ['GET', `${P}/api-stats/${org}/concurrent`, concurrent],
    ];
    for (const [method, path, c] of paths) {
      expect(matchRuntimePath(method, path), path).toMatchObject({ ok: false, reason: 'invalid_org', call: c });
    }
  });

  it.each(['not-a-ruuid', `${RUUID}x`, `${RUUID}%2F..`, RUUID.replace('_', '-'), '%2e%2e'])(
    'ruuid %s → invalid_ruuid (400) naming the call and the org',
    (ruuid) => {
      for (const [method, path, c] of [
        ['POST', `${P}/start/${ORG}/${ruuid}`, start],
        ['POST', `${P}/stop/${ORG}/${ruuid}`, stop],
        ['GET', `${P}/${ORG}/${ruuid}`, status],
      ] as const) {
        expect(matchRuntimePath(method, path), path).toMatchObject({ reason: 'invalid_ruuid', call: c, org: ORG });
      }
    },
  );

  it('checks the method before the shape and the names, as today’s start route does', () => {
    expect(matchRuntimePath('GET', `${P}/start/bad..org/x`)).toMatchObject({ reason: 'method_not_allowed' });
    expect(matchRuntimePath('POST', `${P}/${ORG}/a/b/c`)).toMatchObject({
      reason: 'method_not_allowed',
      allow: ['GET'],
    });
  });

  it('maps each refusal to its error code', () => {
    expect(errorCodeForPath('unknown_path')).toBe('not_found');
    expect(errorCodeForPath('method_not_allowed')).toBe('method_not_allowed');
    expect(errorCodeForPath('invalid_path')).toBe('invalid_path');
    expect(errorCodeForPath('invalid_org')).toBe('invalid_path');
    expect(errorCodeForPath('invalid_ruuid')).toBe('invalid_path');
  });
});

describe('upstreamPath', () => {
  it('builds SnapLogic’s path for every call', () => {
    expect(upstreamPath(start, { org: ORG, ruuid: RUUID })).toBe(`${P}/start/${ORG}/${RUUID}`);
    expect(upstreamPath(stop, { org: ORG, ruuid: RUUID })).toBe(`${P}/stop/${ORG}/${RUUID}`);
    expect(upstreamPath(status, { org: ORG, ruuid: RUUID })).toBe(`${P}/${ORG}/${RUUID}`);
    expect(upstreamPath(list, { org: ORG })).toBe(`${P}/${ORG}`);
    expect(upstreamPath(stats, { org: ORG })).toBe(`${P}/api-stats/${ORG}`);
    expect(upstreamPath(daily, { org: ORG })).toBe(`${P}/api-stats/${ORG}/daily`);
    expect(upstreamPath(concurrent, { org: ORG })).toBe(`${P}/api-stats/${ORG}/concurrent`);
  });

  it('round-trips every matched path', () => {
    for (const path of [`${P}/start/a.b_c/${RUUID}`, `${P}/x/${RUUID}`, `${P}/api-stats/y/daily`, `${P}/z`]) {
      const match = matchRuntimePath(path.includes('/start/') ? 'POST' : 'GET', path);
      if (!match.ok) throw new Error(`${path}: ${match.reason}`);
      expect(upstreamPath(match.call, match)).toBe(path);
    }
  });

  it('takes today’s RequestTarget as it is', () => {
    const target: RequestTarget = { action: 'runtime.start', org: ORG, ruuid: RUUID };
    expect(upstreamPath(start, target)).toBe(`${P}/start/${ORG}/${RUUID}`);
  });

  it('refuses a target that does not fit the call', () => {
    expect(() => upstreamPath(start, { org: ORG })).toThrow('targets a run');
    expect(() => upstreamPath(list, { org: ORG, ruuid: RUUID })).toThrow('not a run');
    expect(() => upstreamPath(list, { org: 'a/../b' })).toThrow('org');
    expect(() => upstreamPath(status, { org: ORG, ruuid: '../x' })).toThrow('ruuid');
  });
});

describe('validateQuery: list', () => {
  it('forwards nothing for an empty query', () => {
    expect(forwarded(list, '')).toBe('');
  });

  it('forwards every parameter in the table’s order, re-encoded, whatever the caller’s order', () => {
    const query =
      'level=detail&offset=20&limit=0100&end=2000&start=1000&last_hours=24&user_id=a%2Bb%40x.com&cc_label=jcc-1' +
      '&plex_label=Cloud+Plex&project_path=%2FAcme-Prod%2Fprojects%2FBilling+Jobs&pipe_name=P%26Q%3D1' +
      '&invoker=triggered&state=Suspended';
    expect(forwarded(list, query)).toBe(
      'state=Suspended&invoker=triggered&pipe_name=P%26Q%3D1&project_path=%2FAcme-Prod%2Fprojects%2FBilling%20Jobs' +
        '&plex_label=Cloud%20Plex&cc_label=jcc-1&user_id=a%2Bb%40x.com&last_hours=24&start=1000&end=2000' +
        '&limit=100&offset=20&level=detail',
    );
  });

  it.each(runStates)('accepts state=%s', (state) => {
    expect(forwarded(list, `state=${state}`)).toBe(`state=${state}`);
  });

  it.each(['suspended', 'SUSPENDED', 'Running', 'Suspended,Failed', 'Suspended ', ' Suspended'])(
    'refuses state=%s (case-sensitive, one state)',
    (state) => {
      const problem = refused(list, `state=${encodeURIComponent(state)}`);
      expect(problem.parameter).toBe('state');
      expect(problem.detail).toContain('Queued, NoUpdate, Prepared, Started');
      expect(problem.detail).toContain('one value');
    },
  );

  it.each(invokers)('accepts invoker=%s', (invoker) => {
    expect(forwarded(list, `invoker=${invoker}`)).toBe(`invoker=${invoker}`);
  });

  it.each(['Triggered', 'ultra', 'nested_pipeline', 'manual,scheduled'])('refuses invoker=%s', (invoker) => {
    expect(refused(list, `invoker=${invoker}`)).toEqual({
      parameter: 'invoker',
      detail: 'invoker must be one of triggered, scheduled, always_on, manual (case-sensitive, one value).',
    });
  });

  it.each(['summary', 'detail'])('accepts level=%s', (level) => {
    expect(forwarded(list, `level=${level}`)).toBe(`level=${level}`);
  });

  it.each(['Summary', 'DETAIL', 'full'])('refuses level=%s', (level) => {
    expect(refused(list, `level=${level}`).parameter).toBe('level');
  });
});

describe('validateQuery: list integers', () => {
  const bounds: Array<[string, string[], string[]]> = [
    ['last_hours', ['1', '24', '1080', '01'], ['0', '1081', '-1', '1.5', '1e3', '+1', ' 1', '0x10', 'one', '1_0']],
    ['limit', ['1', '1000', '10'], ['0', '1001', '-5', '2.0', '10abc']],
    ['offset', ['0', '1', '9007199254740991'], ['-1', '0.5', '9007199254740992', '99999999999999999']],
    ['start', ['0', '1700000000000', '9007199254740991'], ['-1', '1.7e12', '17000000000000000', '1700000000000.5']],
    ['end', ['0', '1700000000000'], ['-1', '1.5', 'now']],
  ];

  for (const [name, good, bad] of bounds) {
    it.each(good)(`accepts ${name}=%s`, (value) => {
      expect(forwarded(list, `${name}=${value}`)).toBe(`${name}=${String(Number(value))}`);
    });
    it.each(bad)(`refuses ${name}=%s`, (value) => {
      const problem = refused(list, `${name}=${encodeURIComponent(value)}`);
      expect(problem.parameter).toBe(name);
      expect(problem.detail).toMatch(new RegExp(`^${name} must be a whole number from \\d`));
    });
  }

  it('says the range where there is one', () => {
    expect(refused(list, 'last_hours=1081').detail).toBe(
      'last_hours must be a whole number from 1 to 1080, in decimal digits.',
    );
    expect(refused(list, 'limit=1001').detail).toBe('limit must be a whole number from 1 to 1000, in decimal digits.');
    expect(refused(list, 'offset=-1').detail).toBe('offset must be a whole number from 0, in decimal digits.');
  });

  it('accepts start equal to end and refuses start after end', () => {
    expect(forwarded(list, 'start=5&end=5')).toBe('start=5&end=5');
    expect(forwarded(list, 'end=6&start=5')).toBe('start=5&end=6');
    expect(refused(list, 'start=6&end=5')).toEqual({
      parameter: 'end',
      detail: 'end must not be before start (both are Unix times in milliseconds).',
    });
    // Compared as numbers, not strings.
    expect(forwarded(list, 'start=9&end=10')).toBe('start=9&end=10');
  });
});

describe('validateQuery: list text and project_path', () => {
  const texts = ['pipe_name', 'plex_label', 'cc_label', 'user_id'];

  it.each(texts)('%s: accepts up to the bound and refuses one more', (name) => {
    const max = 'a'.repeat(MAX_QUERY_VALUE_LENGTH);
    expect(forwarded(list, `${name}=${max}`)).toBe(`${name}=${max}`);
    expect(refused(list, `${name}=${max}a`)).toEqual({
      parameter: name,
      detail: expect.stringContaining(`1 to ${MAX_QUERY_VALUE_LENGTH} characters`),
    });
  });

  it.each(texts)('%s: refuses control characters', (name) => {
    for (const control of ['%00', '%0A', '%0D', '%09', '%1B', '%7F', '%C2%85', '%E2%80%A8', '%E2%80%A9']) {
      expect(refused(list, `${name}=a${control}b`).parameter, control).toBe(name);
    }
  });

  it('keeps unicode and spaces in names, percent-encoded', () => {
    expect(forwarded(list, 'pipe_name=Rechnung%20%C3%BCber+alles')).toBe('pipe_name=Rechnung%20%C3%BCber%20alles');
  });

  it('user_id is printable with no whitespace', () => {
    expect(forwarded(list, 'user_id=svc.billing%40acme.com')).toBe('user_id=svc.billing%40acme.com');
    expect(refused(list, 'user_id=svc%20billing').detail).toContain('no whitespace');
  });

  it.each(['/Acme-Prod/shared', '/Acme-Prod/projects/Billing', '/Acme-Prod/projects/Billing Jobs (2)'])(
    'accepts project_path=%s',
    (path) => {
      expect(forwarded(list, `project_path=${encodeURIComponent(path)}`)).toBe(
        `project_path=${encodeURIComponent(path)}`,
      );
    },
  );

  it.each([
    '/Other-Org/shared',
    '/acme-prod/shared',
    '/Other-Org/projects/Billing',
    'Acme-Prod/shared',
    '/Acme-Prod',
    '/Acme-Prod/',
    '/Acme-Prod/projects',
    '/Acme-Prod/projects/',
    '/Acme-Prod/projects/..',
    '/Acme-Prod/projects/.',
    '/Acme-Prod/projects/a/b',
    '/Acme-Prod/projects/../../Other-Org/shared',
    '/Acme-Prod/shared/x',
    '/Acme-Prod/Shared',
    '/Acme-Prod/other/Billing',
    '//Acme-Prod/shared',
    '/Acme-Prod/projects/x\\..\\..\\Other-Org\\shared',
    '/Acme-Prod/projects/a?b',
    '/Acme-Prod/projects/a#b',
  ])('refuses project_path=%s', (path) => {
    expect(refused(list, `project_path=${encodeURIComponent(path)}`)).toEqual({
      parameter: 'project_path',
      detail:
        'project_path must be /Acme-Prod/projects/{project} or /Acme-Prod/shared (the org of the path; no \\, ? or # ' +
        'in the project).',
    });
  });

  it('bounds project_path and refuses control characters in it', () => {
    const long = `/Acme-Prod/projects/${'p'.repeat(MAX_QUERY_VALUE_LENGTH)}`;
    expect(refused(list, `project_path=${long}`).parameter).toBe('project_path');
    expect(refused(list, 'project_path=%2FAcme-Prod%2Fprojects%2Fa%0Ab').parameter).toBe('project_path');
  });
});

describe('validateQuery: status, start and stop', () => {
  it('status takes level only', () => {
    expect(forwarded(status, '')).toBe('');
    expect(forwarded(status, 'level=summary')).toBe('level=summary');
    expect(forwarded(status, 'level=detail')).toBe('level=detail');
    expect(refused(status, 'level=Detail').parameter).toBe('level');
    expect(refused(status, 'limit=10')).toEqual({
      parameter: 'limit',
      detail: `Unknown query parameter. ${P}/{org}/{ruuid} accepts level.`,
    });
  });

  it.each([start, stop])('$id takes no query parameters at all', (c) => {
    expect(forwarded(c, '')).toBe('');
    for (const query of ['level=summary', 'x=1', 'a', '=1']) {
      expect(refused(c, query).detail, query).toBe(`${c.pattern} takes no query parameters.`);
    }
  });
});

describe('validateQuery: api-stats', () => {
  it.each([stats, concurrent])('$id takes date_time as YYYY-MM-DDTHH:MM:SS', (c) => {
    expect(forwarded(c, '')).toBe('');
    expect(forwarded(c, 'date_time=2021-12-31T01:01:01')).toBe('date_time=2021-12-31T01%3A01%3A01');
    expect(forwarded(c, 'date_time=2024-02-29T23:59:59')).toBe('date_time=2024-02-29T23%3A59%3A59');
    for (const bad of [
      '2021-12-31',
      '2021-12-31 01:01:01',
      '2021-12-31T01:01',
      '2021-12-31T01:01:01Z',
      '2021-12-31T01:01:01.000',
      '2021-12-31T01:01:01+01:00',
      '2021-13-01T00:00:00',
      '2021-02-29T00:00:00',
      '2021-04-31T00:00:00',
      '2021-12-00T00:00:00',
      '2021-12-31T24:00:00',
      '2021-12-31T23:60:00',
      '2021-12-31T23:59:60',
      '21-12-31T01:01:01',
      'yesterday',
    ]) {
      expect(refused(c, `date_time=${encodeURIComponent(bad)}`), bad).toEqual({
        parameter: 'date_time',
        detail: 'date_time must be a date and time as YYYY-MM-DDTHH:MM:SS.',
      });
    }
    expect(refused(c, 'date=2021-12-31').parameter).toBe('date');
  });

  it('daily takes date as YYYY-MM-DD, or the older date_time, not both', () => {
    expect(forwarded(daily, 'date=2021-12-31')).toBe('date=2021-12-31');
    expect(forwarded(daily, 'date=2000-02-29')).toBe('date=2000-02-29');
    expect(forwarded(daily, 'date_time=2021-12-31T00:00:00')).toBe('date_time=2021-12-31T00%3A00%3A00');
    for (const bad of ['2021-12-31T00:00:00', '2021-1-1', '2100-02-29', '2021-12-32', '20211231']) {
      expect(refused(daily, `date=${bad}`), bad).toEqual({
        parameter: 'date',
        detail: 'date must be a date as YYYY-MM-DD.',
      });
    }
    expect(refused(daily, 'date=2021-12-31&date_time=2021-12-31T00:00:00')).toEqual({
      parameter: 'date_time',
      detail: 'Give the day as date (YYYY-MM-DD) or as the older date_time, not both.',
    });
  });

  it('stats refuses list parameters', () => {
    expect(refused(stats, 'limit=10')).toEqual({
      parameter: 'limit',
      detail: `Unknown query parameter. ${P}/api-stats/{org} accepts date_time.`,
    });
  });
});

describe('validateQuery: unknown, repeated and empty parameters', () => {
  it('refuses an unknown parameter, naming it and what is accepted', () => {
    const problem = refused(list, 'limit=10&org_wide=true');
    expect(problem.parameter).toBe('org_wide');
    expect(problem.detail).toBe(
      `Unknown query parameter. ${P}/{org} accepts state, invoker, pipe_name, project_path, plex_label, cc_label, ` +
        'user_id, last_hours, start, end, limit, offset, level.',
    );
  });

  it('parameter names are case-sensitive', () => {
    expect(refused(list, 'Limit=10').parameter).toBe('Limit');
  });

  it('names the first problem in the caller’s order', () => {
    expect(refused(list, 'limit=0&bogus=1').parameter).toBe('limit');
    expect(refused(list, 'bogus=1&limit=0').parameter).toBe('bogus');
  });

  it('shows an unknown name printable and bounded', () => {
    expect(refused(list, 'a%0Ab=1').parameter).toBe('a\uFFFDb');
    const long = refused(list, `${'x'.repeat(500)}=1`).parameter;
    expect(long).toBe(`${'x'.repeat(64)}…`);
    expect(refused(list, '=1').parameter).toBe('');
  });

  it.each(['level=summary&level=summary', 'limit=1&limit=2', 'state=Suspended&state=Failed', 'offset=0&offset='])(
    'refuses a repeated parameter: %s',
    (query) => {
      const problem = refused(list, query);
      expect(problem.detail).toBe(`${problem.parameter} is given more than once; give it once.`);
    },
  );

  it.each(list.query.map((q) => q.name))('refuses an empty %s', (name) => {
    for (const query of [`${name}=`, name]) {
      const problem = refused(list, query);
      expect(problem.parameter).toBe(name);
      expect(problem.detail).toMatch(new RegExp(`^${name} is empty; it must be `));
    }
  });

  it.each([
    ['status', 'level', status],
    ['stats', 'date_time', stats],
    ['stats.daily', 'date', daily],
    ['stats.concurrent', 'date_time', concurrent],
  ] as const)('%s refuses an empty %s', (_id, name, c) => {
    expect(refused(c, `${name}=`).parameter).toBe(name);
  });

  it('refuses any value over the bound, enum or not, without echoing it', () => {
    const long = 'S'.repeat(MAX_QUERY_VALUE_LENGTH + 1);
    for (const name of ['state', 'limit', 'project_path', 'level']) {
      const problem = refused(list, `${name}=${long}`);
      expect(problem.parameter).toBe(name);
      expect(problem.detail).not.toContain(long.slice(0, 20));
    }
  });
});
