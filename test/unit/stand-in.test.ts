// The SnapLogic stand-in itself (test/helpers/snaplogic-stand-in.ts): every runtime route with its documented shape,
// the per-run state machine, auth failures, recording, the two unknown-outcome scenarios (a resume received and
// applied whose answer never comes; one received but not applied), and Bearer JWTs verified against an issuer's JWKS
// served over HTTP. In-process, loopback only.
import { createServer } from 'node:http';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback, type Listening } from '../helpers/loopback.js';
import { SnapLogicStandIn, newRuuid, tokenFingerprint, type RunState } from '../helpers/snaplogic-stand-in.js';

const BASE = '/api/1/rest/public/runtime';
const ORGS = {
  'Acme-Prod': { username: 'svc-acme@example.com', password: 'acme-pw' },
  'Other-Org': { username: 'svc-other@example.com', password: 'other-pw' },
  'Jwt-Org': { username: 'svc-jwt@example.com', password: 'jwt-pw', jwtOnly: true },
};
type Org = keyof typeof ORGS;

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const authOf = (org: Org) => basic(ORGS[org].username, ORGS[org].password);

interface Answer {
  status: number;
  slStatus: string | null;
  contentType: string | null;
  json: any;
}

async function call(
  standIn: SnapLogicStandIn,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  options: { auth?: string | null; org?: Org; timeoutMs?: number } = {},
): Promise<Answer> {
  const auth = options.auth === undefined ? authOf(options.org ?? 'Acme-Prod') : options.auth;
  const res = await fetch(`${standIn.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(auth !== null ? { authorization: auth } : {}) },
    signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
  });
  const text = await res.text();
  return {
    status: res.status,
    slStatus: res.headers.get('x-sl-statuscode'),
    contentType: res.headers.get('content-type'),
    json: text === '' ? undefined : JSON.parse(text),
  };
}

const start = (s: SnapLogicStandIn, org: string, ruuid: string, o?: Parameters<typeof call>[3]) =>
  call(s, 'POST', `${BASE}/start/${org}/${ruuid}`, o);
const stop = (s: SnapLogicStandIn, org: string, ruuid: string, o?: Parameters<typeof call>[3]) =>
  call(s, 'POST', `${BASE}/stop/${org}/${ruuid}`, o);
const status = (s: SnapLogicStandIn, org: string, ruuid: string, query = '', o?: Parameters<typeof call>[3]) =>
  call(s, 'GET', `${BASE}/${org}/${ruuid}${query}`, o);
const list = (s: SnapLogicStandIn, org: string, query = '', o?: Parameters<typeof call>[3]) =>
  call(s, 'GET', `${BASE}/${org}${query}`, o);

function expectError(a: Answer, code: number): void {
  expect(a.status).toBe(code);
  expect(a.slStatus).toBe(String(code));
  expect(a.contentType).toMatch(/^application\/json/);
  expect(a.json).toEqual({ response_map: { error_list: [{ message: expect.any(String) }] }, http_status_code: code });
}

function expectOk(a: Answer): any {
  expect(a.status).toBe(200);
  expect(a.slStatus).toBe('200');
  expect(a.json.http_status_code).toBe(200);
  return a.json.response_map;
}

async function until(check: () => boolean, ms = 2_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Timed: steps every 20 ms. Manual: runs stay put until `advance()`. Strict: other configured error statuses. */
let timed: SnapLogicStandIn;
let manual: SnapLogicStandIn;
let strict: SnapLogicStandIn;

beforeAll(async () => {
  [timed, manual, strict] = await Promise.all([
    SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 20 }),
    SnapLogicStandIn.start({
      orgs: structuredClone(ORGS),
      transitionMs: 0,
      apiStats: {
        dailyLimit: 500,
        dailyCallUsed: 120,
        concurrentLimit: 4,
        concurrentCallInProgress: 2,
        tasks: Array.from({ length: 12 }, (_, i) => ({
          task_id: `task-${i}`,
          task_name: `Task ${i}`,
          task_path: `/Acme-Prod/projects/ops/Task ${i}`,
          task_owner: 'ops@example.com',
          api_count: i * 10,
        })),
      },
    }),
    SnapLogicStandIn.start({
      orgs: structuredClone(ORGS),
      transitionMs: 0,
      unknownRuuidStatus: 400,
      notSuspendedStatus: 422,
      finishedStatus: 410,
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([timed?.close(), manual?.close(), strict?.close()]);
});

describe('start (resume)', () => {
  it('answers 200, an empty response_map, and moves Suspended → Resuming → Started → Completed on timers', async () => {
    const ruuid = timed.addRun('Acme-Prod');
    expect(ruuid).toMatch(/^[0-9a-f]{24}_[0-9a-f-]{36}$/);
    const a = await start(timed, 'Acme-Prod', ruuid);
    expect(a.json).toEqual({ response_map: {}, http_status_code: 200 });
    expect(a.slStatus).toBe('200');
    expect(timed.run('Acme-Prod', ruuid)?.state).toBe('Resuming');
    await until(() => timed.run('Acme-Prod', ruuid)?.state === 'Completed');
    expect(timed.run('Acme-Prod', ruuid)!.stateLog.map((s) => s.new_state)).toEqual([
      'Suspended',
      'Resuming',
      'Started',
      'Completed',
    ]);
    expect(timed.run('Acme-Prod', ruuid)!.resumes).toBe(1);
  });

  it('a second resume while Resuming gets the not-Suspended error (409 by default) and changes nothing', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    expectOk(await start(manual, 'Acme-Prod', ruuid));
    expectError(await start(manual, 'Acme-Prod', ruuid), 409);
    expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Resuming', resumes: 1 });
  });

  it.each<RunState>(['Started', 'Completed', 'Failed', 'Stopped', 'Stopping', 'Queued'])(
    'start on a %s run answers the configured not-Suspended status',
    async (state) => {
      expectError(await start(manual, 'Acme-Prod', manual.addRun('Acme-Prod', state)), 409);
      expectError(await start(strict, 'Acme-Prod', strict.addRun('Acme-Prod', state)), 422);
    },
  );

  it('an unknown ruuid answers the configured status (404 by default)', async () => {
    expectError(await start(manual, 'Acme-Prod', newRuuid()), 404);
    expectError(await start(strict, 'Acme-Prod', newRuuid()), 400);
  });

  it('a run of another org is unknown in this one', async () => {
    const ruuid = manual.addRun('Other-Org');
    expectError(await start(manual, 'Acme-Prod', ruuid), 404);
    expect(manual.run('Other-Org', ruuid)?.state).toBe('Suspended');
  });

  it('follows the run outcome: Failed through Failing, Suspended again through Suspending', async () => {
    const failing = manual.addRun('Acme-Prod', 'Suspended', newRuuid(), { outcome: 'Failed', reason: 'endpoint down' });
    const again = manual.addRun('Acme-Prod', 'Suspended', newRuuid(), { outcome: 'Suspended' });
    for (const r of [failing, again]) expectOk(await start(manual, 'Acme-Prod', r));
    expect(['Started', 'Failing', 'Failed'].map(() => manual.advance('Acme-Prod', failing))).toEqual([
      'Started',
      'Failing',
      'Failed',
    ]);
    expect([1, 2, 3].map(() => manual.advance('Acme-Prod', again))).toEqual(['Started', 'Suspending', 'Suspended']);
    const detail = expectOk(await status(manual, 'Acme-Prod', failing));
    expect(detail).toMatchObject({
      state: 'Failed',
      reason: 'endpoint down',
      error_list: [{ message: 'endpoint down' }],
    });
    expectOk(await start(manual, 'Acme-Prod', again));
    expect(manual.run('Acme-Prod', again)?.resumes).toBe(2);
  });
});

describe('explicit state control', () => {
  it('advance() steps a run and throws where the run waits for a request or has finished', () => {
    const ruuid = manual.addRun('Acme-Prod', 'Resuming');
    expect(manual.advance('Acme-Prod', ruuid)).toBe('Started');
    expect(manual.advance('Acme-Prod', ruuid)).toBe('Completed');
    expect(() => manual.advance('Acme-Prod', ruuid)).toThrow(/Completed/);
    expect(() => manual.advance('Acme-Prod', manual.addRun('Acme-Prod'))).toThrow(/Suspended/);
    expect(() => manual.advance('Acme-Prod', newRuuid())).toThrow(/no run/);
  });

  it('setState() forces a state and cancels pending timed steps', async () => {
    const ruuid = timed.addRun('Acme-Prod');
    expectOk(await start(timed, 'Acme-Prod', ruuid));
    timed.setState('Acme-Prod', ruuid, 'Suspended');
    await new Promise((r) => setTimeout(r, 80));
    expect(timed.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
  });

  it('a run added in a moving state stays there until moved', async () => {
    const ruuid = timed.addRun('Acme-Prod', 'Started');
    await new Promise((r) => setTimeout(r, 60));
    expect(timed.run('Acme-Prod', ruuid)?.state).toBe('Started');
  });
});

describe('stop', () => {
  it.each<RunState>(['Resuming', 'Started', 'Suspended'])(
    'on a %s run answers 200 and moves Stopping → Stopped',
    async (state) => {
      const ruuid = manual.addRun('Acme-Prod', state);
      const a = await stop(manual, 'Acme-Prod', ruuid);
      expect(a.json).toEqual({ response_map: {}, http_status_code: 200 });
      expect(a.slStatus).toBe('200');
      expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Stopping', stops: 1 });
      expect(manual.advance('Acme-Prod', ruuid)).toBe('Stopped');
    },
  );

  it('stopping a resumed run on timers ends Stopped, never Completed', async () => {
    const ruuid = timed.addRun('Acme-Prod');
    expectOk(await start(timed, 'Acme-Prod', ruuid));
    expectOk(await stop(timed, 'Acme-Prod', ruuid));
    await until(() => timed.run('Acme-Prod', ruuid)?.state === 'Stopped');
    await new Promise((r) => setTimeout(r, 60));
    expect(timed.run('Acme-Prod', ruuid)!.stateLog.map((s) => s.new_state)).toEqual([
      'Suspended',
      'Resuming',
      'Stopping',
      'Stopped',
    ]);
  });

  it('a second stop while Stopping answers 200 and leaves it Stopping', async () => {
    const ruuid = manual.addRun('Acme-Prod', 'Started');
    expectOk(await stop(manual, 'Acme-Prod', ruuid));
    expectOk(await stop(manual, 'Acme-Prod', ruuid));
    expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Stopping', stops: 2 });
    expect(manual.run('Acme-Prod', ruuid)!.stateLog).toHaveLength(2);
  });

  it.each<RunState>(['Completed', 'Failed', 'Stopped'])(
    'on a %s run answers the configured finished status',
    async (state) => {
      expectError(await stop(manual, 'Acme-Prod', manual.addRun('Acme-Prod', state)), 409);
      expectError(await stop(strict, 'Acme-Prod', strict.addRun('Acme-Prod', state)), 410);
    },
  );

  it('an unknown ruuid answers the configured status', async () => {
    expectError(await stop(manual, 'Acme-Prod', newRuuid()), 404);
    expectError(await stop(strict, 'Acme-Prod', newRuuid()), 400);
  });
});

describe('GET runtime/:org/:ruuid', () => {
  const SUMMARY_FIELDS = [
    'ruuid',
    'instance_id',
    'root_ruuid',
    'parent_ruuid',
    'state',
    'state_log',
    'reason',
    'error_list',
    'warning_list',
    'label',
    'path_id',
    'create_time',
    'time_stamp',
    'duration',
    'duration_ms',
    'user_id',
    'invoker',
    'mode',
    'snaplex_label',
    'runtime_label',
    'restart_attempts',
    'documents_count',
    'error_documents_count',
  ];

  it('level=summary carries the documented fields and no snap_map, session_id or export_link', async () => {
    const ruuid = manual.addRun('Acme-Prod', 'Suspended', newRuuid(), { label: 'orders-sync', invoker: 'manual' });
    expectOk(await start(manual, 'Acme-Prod', ruuid));
    const map = expectOk(await status(manual, 'Acme-Prod', ruuid, '?level=summary'));
    expect(Object.keys(map).sort()).toEqual([...SUMMARY_FIELDS].sort());
    expect(map).toMatchObject({
      ruuid,
      state: 'Resuming',
      label: 'orders-sync',
      invoker: 'manual',
      restart_attempts: 1,
      parent_ruuid: null,
      state_log: [
        { new_state: 'Suspended', timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*\+00:00$/) },
        { new_state: 'Resuming', timestamp: expect.any(String) },
      ],
    });
  });

  it('level=detail (and the default) adds snap_map, session_id and export_link', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    for (const query of ['?level=detail', '']) {
      const map = expectOk(await status(manual, 'Acme-Prod', ruuid, query));
      for (const field of [...SUMMARY_FIELDS, 'snap_map', 'session_id', 'export_link']) {
        expect(map).toHaveProperty(field);
      }
      expect(map.state).toBe('Suspended');
    }
  });

  it('level is case-sensitive: anything else is a 400', async () => {
    expectError(await status(manual, 'Acme-Prod', manual.addRun('Acme-Prod'), '?level=Summary'), 400);
  });

  it('an unknown ruuid answers the configured status', async () => {
    expectError(await status(manual, 'Acme-Prod', newRuuid()), 404);
    expectError(await status(strict, 'Acme-Prod', newRuuid()), 400);
  });
});

describe('GET runtime/:org (list)', () => {
  const ENTRY_FIELDS = [
    'pipe_id',
    'has_lints',
    'documents',
    'user_id',
    'ccid',
    'child_has_lints',
    'runtime_path_id',
    'parent_ruuid',
    'subpipes',
    'state_timestamp',
    'error_documents',
    'label',
    'path_id',
    'state',
    'create_time',
    'invoker',
    'duration',
    'cc_label',
    'id',
    'runtime_label',
    'mode',
  ];
  let lister: SnapLogicStandIn;
  const suspended: string[] = [];
  let old: string;
  let completed: string;

  beforeAll(async () => {
    lister = await SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 0 });
    const now = Date.now();
    for (let i = 0; i < 12; i++) {
      suspended.push(lister.addRun('Acme-Prod', 'Suspended', newRuuid(), { createTime: now - 60_000 + i }));
    }
    completed = lister.addRun('Acme-Prod', 'Completed', newRuuid(), { label: 'nightly-load', invoker: 'manual' });
    old = lister.addRun('Acme-Prod', 'Suspended', newRuuid(), { createTime: now - 3 * 3_600_000 });
    lister.addRun('Other-Org');
  });
  afterAll(() => lister?.close());

  it('defaults to the last hour and limit 10, newest first, with the documented entry fields', async () => {
    const map = expectOk(await list(lister, 'Acme-Prod'));
    expect(map).toMatchObject({ total: 13, limit: 10, offset: 0 });
    expect(map.entries).toHaveLength(10);
    for (const e of map.entries) expect(Object.keys(e).sort()).toEqual([...ENTRY_FIELDS].sort());
    expect(map.entries[0].id).toBe(completed);
    expect(map.entries[1].id).toBe(suspended[11]);
    expect(map.entries.map((e: { id: string }) => e.id)).not.toContain(old);
  });

  it('honours limit and offset', async () => {
    const map = expectOk(await list(lister, 'Acme-Prod', '?limit=5&offset=10'));
    expect(map).toMatchObject({ total: 13, limit: 5, offset: 10 });
    expect(map.entries.map((e: { id: string }) => e.id)).toEqual([suspended[2], suspended[1], suspended[0]]);
  });

  it('honours state (one or several) and pipe_name', async () => {
    const s = expectOk(await list(lister, 'Acme-Prod', '?state=Suspended&limit=100'));
    expect(s.total).toBe(12);
    expect(s.entries.every((e: { state: string }) => e.state === 'Suspended')).toBe(true);
    expect(expectOk(await list(lister, 'Acme-Prod', '?state=Completed,Suspended')).total).toBe(13);
    const named = expectOk(await list(lister, 'Acme-Prod', '?pipe_name=nightly-load'));
    expect(named.entries.map((e: { id: string }) => e.id)).toEqual([completed]);
    expect(expectOk(await list(lister, 'Acme-Prod', '?invoker=manual')).total).toBe(1);
  });

  it('honours last_hours and start/end', async () => {
    const now = Date.now();
    expect(expectOk(await list(lister, 'Acme-Prod', '?last_hours=4')).total).toBe(14);
    const window = `?start=${now - 4 * 3_600_000}&end=${now - 2 * 3_600_000}`;
    expect(expectOk(await list(lister, 'Acme-Prod', window)).entries.map((e: { id: string }) => e.id)).toEqual([old]);
  });

  it('lists only the org in the path', async () => {
    expect(expectOk(await list(lister, 'Other-Org', '', { org: 'Other-Org' })).total).toBe(1);
  });

  it.each(['limit=0', 'limit=1001', 'limit=x', 'offset=-1', 'last_hours=0', 'last_hours=1081', 'start=soon'])(
    '%s is a 400 naming the parameter',
    async (query) => {
      const a = await list(lister, 'Acme-Prod', `?${query}`);
      expectError(a, 400);
      expect(a.json.response_map.error_list[0].message).toContain(query.split('=')[0]);
    },
  );
});

describe('GET runtime/api-stats/:org', () => {
  it('answers the meters', async () => {
    const map = expectOk(await call(manual, 'GET', `${BASE}/api-stats/Acme-Prod?date_time=2021-12-31T01:01:01`));
    expect(map).toEqual({
      organization: 'Acme-Prod',
      daily_limit: 500,
      daily_call_used: 120,
      concurrent_limit: 4,
      concurrent_call_in_progress: 2,
    });
  });

  it('/daily answers the day with the top 10 tasks', async () => {
    const map = expectOk(await call(manual, 'GET', `${BASE}/api-stats/Acme-Prod/daily?date=2024-05-01`));
    expect(map).toMatchObject({
      date: '2024-05-01',
      organization: 'Acme-Prod',
      task_count: 12,
      daily_call_used: 120,
      daily_call_available: 380,
    });
    expect(map.top_tasks).toHaveLength(10);
    expect(Object.keys(map.top_tasks[0]).sort()).toEqual([
      'api_count',
      'task_id',
      'task_name',
      'task_owner',
      'task_path',
    ]);
    expect(map.top_tasks[0].api_count).toBe(110);
  });

  it('/concurrent answers what is in progress', async () => {
    const map = expectOk(
      await call(manual, 'GET', `${BASE}/api-stats/Acme-Prod/concurrent?date_time=2024-05-01T10:00:00`),
    );
    expect(map).toMatchObject({
      organization: 'Acme-Prod',
      time_stamp: '2024-05-01T10:00:00',
      concurrent_call_in_progress: 2,
    });
    expect(map.tasks).toHaveLength(12);
  });

  it('defaults: 10,000 a day, 10 concurrent, nothing used', async () => {
    const map = expectOk(await call(timed, 'GET', `${BASE}/api-stats/Acme-Prod/daily`));
    expect(map).toMatchObject({ top_tasks: [], task_count: 0, daily_call_used: 0, daily_call_available: 10_000 });
    expect(map.date).toMatch(/^\d{4}-\d\d-\d\d$/);
  });
});

describe('auth, routing', () => {
  it('a wrong password, a missing header, another org`s credential, a Bearer token: the same generic 401', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    const bad = [basic(ORGS['Acme-Prod'].username, 'nope'), null, authOf('Other-Org'), 'Bearer abc.def.ghi'];
    const answers = await Promise.all(bad.map((auth) => start(manual, 'Acme-Prod', ruuid, { auth })));
    for (const a of answers) {
      expectError(a, 401);
      expect(a.json).toEqual(answers[0]!.json);
    }
    for (const path of [`${BASE}/Acme-Prod`, `${BASE}/Acme-Prod/${ruuid}`, `${BASE}/api-stats/Acme-Prod`]) {
      expectError(await call(manual, 'GET', path, { auth: null }), 401);
    }
    expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Suspended', resumes: 0 });
  });

  it('the org name is case-sensitive', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    expectError(await start(manual, 'acme-prod', ruuid), 401);
    expectError(await list(manual, 'ACME-PROD'), 401);
  });

  it('Basic on a JWT-only org is a 403', async () => {
    expectError(await start(manual, 'Jwt-Org', manual.addRun('Jwt-Org'), { org: 'Jwt-Org' }), 403);
  });

  it('a credential changed with setCredential() replaces the old one', async () => {
    const s = await SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 0 });
    try {
      s.setCredential('Acme-Prod', 'svc-acme@example.com', 'rotated');
      expectError(await list(s, 'Acme-Prod'), 401);
      expectOk(await list(s, 'Acme-Prod', '', { auth: basic('svc-acme@example.com', 'rotated') }));
    } finally {
      await s.close();
    }
  });

  it.each([
    ['GET', '/'],
    ['GET', '/api/1/rest/public/other/Acme-Prod'],
    ['GET', `${BASE}/start/Acme-Prod/x`],
    ['POST', `${BASE}/Acme-Prod`],
    ['DELETE', `${BASE}/Acme-Prod/x`],
    ['POST', `${BASE}/start/Acme-Prod`],
    ['POST', `${BASE}/start/Acme-Prod/x/y`],
    ['GET', `${BASE}/api-stats/Acme-Prod/weekly`],
    ['GET', `${BASE}/Acme-Prod/x/y`],
    ['GET', `${BASE}/Acme-Prod/`],
    ['GET', `${BASE}/%E0%A4%A`],
  ] as const)('%s %s is a 404', async (method, path) => {
    expectError(await call(manual, method, path), 404);
  });
});

describe('recording', () => {
  it('keeps method, path, query, kind and auth user of every request, and counts calls per kind', async () => {
    const s = await SnapLogicStandIn.start({ orgs: structuredClone(ORGS), transitionMs: 0 });
    try {
      const ruuid = s.addRun('Acme-Prod');
      await start(s, 'Acme-Prod', ruuid);
      await stop(s, 'Acme-Prod', ruuid);
      await status(s, 'Acme-Prod', ruuid, '?level=summary');
      await status(s, 'Acme-Prod', ruuid);
      await list(s, 'Acme-Prod', '?state=Suspended&limit=5');
      await call(s, 'GET', `${BASE}/api-stats/Acme-Prod`);
      await call(s, 'GET', `${BASE}/api-stats/Acme-Prod/daily`);
      await call(s, 'GET', '/nowhere', { auth: null });
      expect(s.callCounts()).toEqual({ start: 1, stop: 1, status: 2, list: 1, stats: 2, other: 1 });
      expect(s.startCalls()).toHaveLength(1);
      expect(s.stopCalls()[0]).toMatchObject({ method: 'POST', path: `${BASE}/stop/Acme-Prod/${ruuid}` });
      expect(s.calls('list')[0]).toMatchObject({
        method: 'GET',
        path: `${BASE}/Acme-Prod`,
        query: { state: 'Suspended', limit: '5' },
        authUser: 'svc-acme@example.com',
        authScheme: 'Basic',
      });
      expect(s.calls('status', ruuid).map((r) => r.query)).toEqual([{ level: 'summary' }, {}]);
      expect(s.calls(undefined, ruuid)).toHaveLength(4);
      expect(s.calls('other')[0]).not.toHaveProperty('authUser');
    } finally {
      await s.close();
    }
  });

  it('benchmark mode resumes every ruuid, answers status reads with a Suspended run, and records nothing', async () => {
    const b = await SnapLogicStandIn.start({ orgs: {}, benchmark: { username: 'bench', password: 'pw' } });
    try {
      const auth = basic('bench', 'pw');
      const ruuid = newRuuid();
      expect(expectOk(await start(b, 'Any-Org', ruuid, { auth }))).toEqual({});
      expect(expectOk(await status(b, 'Any-Org', ruuid, '', { auth }))).toMatchObject({ ruuid, state: 'Suspended' });
      expectError(await start(b, 'Any-Org', ruuid, { auth: basic('bench', 'no') }), 401);
      expect(b.received).toHaveLength(0);
    } finally {
      await b.close();
    }
  });
});

describe('faults', () => {
  it('a fault scoped with `on` leaves other kinds of call alone; count bounds it', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    manual.setFault({ kind: 'status', status: 503, count: 1, on: 'start', retryAfter: 3 });
    try {
      expectOk(await status(manual, 'Acme-Prod', ruuid));
      expectError(await start(manual, 'Acme-Prod', ruuid), 503);
      expect(manual.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
      expectOk(await start(manual, 'Acme-Prod', ruuid));
    } finally {
      manual.setFault(undefined);
    }
  });

  it('an unscoped fault applies to every kind of call, as before', async () => {
    manual.setFault({ kind: 'status', status: 502, count: 2 });
    try {
      expectError(await list(manual, 'Acme-Prod'), 502);
      expectError(await call(manual, 'GET', `${BASE}/api-stats/Acme-Prod`), 502);
      expectOk(await list(manual, 'Acme-Prod'));
    } finally {
      manual.setFault(undefined);
    }
  });
});

describe('unknown outcome: the request is received, the answer never comes', () => {
  const timesOut = (p: Promise<unknown>) => expect(p).rejects.toThrow(/abort|timeout/i);

  it('applied: the resume takes effect (Resuming), a status read shows it, a retried resume is refused', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    manual.setFault({ kind: 'unknown-outcome', applied: true, count: 1 });
    try {
      await timesOut(start(manual, 'Acme-Prod', ruuid, { timeoutMs: 150 }));
      expect(manual.startCalls().filter((r) => r.path.endsWith(ruuid))).toHaveLength(1);
      expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Resuming', resumes: 1 });
      // The fault is for writes: the read before a retry is answered, and shows the resume took effect.
      expect(expectOk(await status(manual, 'Acme-Prod', ruuid, '?level=summary')).state).toBe('Resuming');
      expectError(await start(manual, 'Acme-Prod', ruuid), 409);
    } finally {
      manual.setFault(undefined);
    }
  });

  it('not applied: the run stays Suspended, a status read shows it, a retried resume succeeds', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    manual.setFault({ kind: 'unknown-outcome', applied: false, count: 1 });
    try {
      await timesOut(start(manual, 'Acme-Prod', ruuid, { timeoutMs: 150 }));
      expect(manual.calls('start', ruuid)).toHaveLength(1);
      expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Suspended', resumes: 0 });
      expect(expectOk(await status(manual, 'Acme-Prod', ruuid)).state).toBe('Suspended');
      expectOk(await start(manual, 'Acme-Prod', ruuid));
      expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Resuming', resumes: 1 });
    } finally {
      manual.setFault(undefined);
    }
  });

  it('applied, answered late: a client that gives up first misses it; one that waits gets the normal 200', async () => {
    const [early, patient] = [manual.addRun('Acme-Prod'), manual.addRun('Acme-Prod')];
    manual.setFault({ kind: 'unknown-outcome', applied: true, answerAfterMs: 200, count: 2 });
    try {
      await timesOut(start(manual, 'Acme-Prod', early, { timeoutMs: 100 }));
      expect(manual.run('Acme-Prod', early)?.state).toBe('Resuming');
      const t0 = Date.now();
      const a = await start(manual, 'Acme-Prod', patient, { timeoutMs: 2_000 });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
      expect(a.json).toEqual({ response_map: {}, http_status_code: 200 });
      expect(manual.run('Acme-Prod', patient)?.state).toBe('Resuming');
      await new Promise((r) => setTimeout(r, 150)); // the early one's late answer goes to a closed socket, harmlessly
    } finally {
      manual.setFault(undefined);
    }
  });

  it('not applied, answered late: a 504 error, and the run is still Suspended', async () => {
    const ruuid = manual.addRun('Acme-Prod');
    manual.setFault({ kind: 'unknown-outcome', applied: false, answerAfterMs: 100, count: 1 });
    try {
      expectError(await start(manual, 'Acme-Prod', ruuid), 504);
      expect(manual.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    } finally {
      manual.setFault(undefined);
    }
  });

  it('applies to stop too: an applied stop moves the run to Stopping without an answer', async () => {
    const ruuid = manual.addRun('Acme-Prod', 'Started');
    manual.setFault({ kind: 'unknown-outcome', applied: true, count: 1 });
    try {
      await timesOut(stop(manual, 'Acme-Prod', ruuid, { timeoutMs: 150 }));
      expect(manual.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Stopping', stops: 1 });
    } finally {
      manual.setFault(undefined);
    }
  });
});

describe('Bearer JWTs from a registered issuer', () => {
  const ISS = 'https://snapgate.test/issuer';
  const USER = 'svc-jwt@example.com';
  const COOLDOWN_MS = 50;
  const CACHE_MS = 150;
  interface TestKey {
    kid: string;
    alg: 'RS256' | 'ES256';
    privateKey: CryptoKey;
    publicJwk: JWK;
  }
  let rs: TestKey;
  let es: TestKey;
  let rs2: TestKey;
  let ghost: TestKey;
  /** The keys the JWKS server publishes now, and how many times it was fetched. */
  let published: TestKey[] = [];
  let fetches = 0;
  let jwksServer: Listening;
  let s: SnapLogicStandIn;
  let jwksUrl: string;

  async function key(kid: string, alg: 'RS256' | 'ES256'): Promise<TestKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg);
    return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
  }

  /** Every claim SnapLogic requires, valid for `org` for 5 minutes. */
  function claimsFor(org: string): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000);
    return { iss: ISS, aud: s.jwtAudience, sub: USER, org, iat: now, exp: now + 300 };
  }

  /** A token for `org` with every claim SnapLogic requires; `claims` overrides (undefined removes a claim). */
  async function sign(k: TestKey, org: string, claims: Record<string, unknown> = {}): Promise<string> {
    const payload = claimsFor(org);
    for (const [name, value] of Object.entries(claims)) {
      if (value === undefined) delete payload[name];
      else payload[name] = value;
    }
    return new SignJWT(payload).setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' }).sign(k.privateKey);
  }

  const bearer = (token: string) => `Bearer ${token}`;
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** What a wrong Basic password gets: every refused token must get exactly this. */
  let generic401: Answer;

  beforeAll(async () => {
    [rs, es, rs2, ghost] = await Promise.all([
      key('rs-1', 'RS256'),
      key('es-1', 'ES256'),
      key('rs-2', 'RS256'),
      key('ghost', 'RS256'),
    ]);
    published = [rs, es];
    const server = createServer((req, res) => {
      fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: published.map((k) => k.publicJwk) }));
    });
    jwksServer = await listenOnLoopback(server);
    jwksUrl = `http://127.0.0.1:${jwksServer.port}/.well-known/jwks.json`;
    s = await SnapLogicStandIn.start({
      orgs: {
        'Acme-Prod': { ...ORGS['Acme-Prod'], jwtIssuer: { issuerId: ISS, jwksUrl } },
        'Jwt-Org': { ...ORGS['Jwt-Org'], jwtIssuer: { issuerId: ISS, jwksUrl }, jwtUsers: [USER] },
        'Other-Org': { ...ORGS['Other-Org'] },
      },
      transitionMs: 0,
      jwks: { cacheMaxAgeMs: CACHE_MS, cooldownMs: COOLDOWN_MS },
    });
    generic401 = await start(s, 'Acme-Prod', s.addRun('Acme-Prod'), { auth: basic(ORGS['Acme-Prod'].username, 'x') });
    expectError(generic401, 401);
  });

  afterAll(async () => {
    await s?.close();
    await jwksServer?.close();
  });

  function expectGeneric401(a: Answer): void {
    expectError(a, 401);
    expect(a.json).toEqual(generic401.json);
  }

  it('the expected audience is the stand-in`s own origin followed by /api/1/rest/public', () => {
    expect(s.jwtAudience).toBe(`${s.url}/api/1/rest/public`);
  });

  it.each([
    ['RS256', () => rs],
    ['ES256', () => es],
  ])('a valid %s token resumes; the call records jwt, sub and kid, never the token', async (_alg, k) => {
    const ruuid = s.addRun('Acme-Prod');
    const token = await sign(k(), 'Acme-Prod');
    const before = s.received.length;
    expectOk(await start(s, 'Acme-Prod', ruuid, { auth: bearer(token) }));
    expect(s.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Resuming', resumes: 1 });
    const [record] = s.received.slice(before);
    expect(record).toMatchObject({
      auth: 'jwt',
      authScheme: 'Bearer',
      jwt: { kid: k().kid, alg: k().alg, sub: USER, verified: true, fingerprint: tokenFingerprint(token) },
    });
    expect(record!.authUser).toBeUndefined();
    expect(JSON.stringify(record)).not.toContain(token);
    expect(JSON.stringify(record)).not.toContain(token.split('.')[2]);
  });

  it('a Basic call still works on an org with an issuer, and records auth basic', async () => {
    const before = s.received.length;
    expectOk(await list(s, 'Acme-Prod'));
    expect(s.received[before]).toMatchObject({ auth: 'basic', authUser: ORGS['Acme-Prod'].username });
    expect(s.received[before]!.jwt).toBeUndefined();
  });

  const now = () => Math.floor(Date.now() / 1000);
  it.each<[string, () => Promise<string>]>([
    [
      'HS256 (a shared secret, even one named like a published kid)',
      () =>
        new SignJWT(claimsFor('Acme-Prod'))
          .setProtectedHeader({ alg: 'HS256', kid: 'rs-1' })
          .sign(new TextEncoder().encode('a-shared-secret-of-thirty-two-bytes!')),
    ],
    ['alg none', () => Promise.resolve(`${b64({ alg: 'none', kid: 'rs-1' })}.${b64(claimsFor('Acme-Prod'))}.`)],
    ['a wrong iss', () => sign(rs, 'Acme-Prod', { iss: 'https://evil.example' })],
    ['a wrong aud', () => sign(rs, 'Acme-Prod', { aud: 'https://elastic.snaplogic.com/api/1/rest/public' })],
    ['an org claim naming another org', () => sign(rs, 'Acme-Prod', { org: 'Other-Org' })],
    ['an org claim in another case', () => sign(es, 'Acme-Prod', { org: 'acme-prod' })],
    ['no org claim', () => sign(rs, 'Acme-Prod', { org: undefined })],
    ['an expired token', () => sign(rs, 'Acme-Prod', { iat: now() - 600, exp: now() - 300 })],
    ['a token not yet valid (nbf)', () => sign(rs, 'Acme-Prod', { nbf: now() + 300 })],
    ['no iat', () => sign(rs, 'Acme-Prod', { iat: undefined })],
    ['no exp', () => sign(es, 'Acme-Prod', { exp: undefined })],
    ['no sub', () => sign(rs, 'Acme-Prod', { sub: undefined })],
    ['an empty sub', () => sign(rs, 'Acme-Prod', { sub: '' })],
    ['an unknown kid (a key the issuer never published)', () => sign(ghost, 'Acme-Prod')],
    ['a bad signature', async () => `${(await sign(rs, 'Acme-Prod')).slice(0, -4)}AAAA`],
    ['not a JWT', () => Promise.resolve('abc.def.ghi')],
  ])('%s: the generic 401, nothing resumed', async (_name, make) => {
    const ruuid = s.addRun('Acme-Prod');
    const before = s.received.length;
    expectGeneric401(await start(s, 'Acme-Prod', ruuid, { auth: bearer(await make()) }));
    expect(s.run('Acme-Prod', ruuid)).toMatchObject({ state: 'Suspended', resumes: 0 });
    expect(s.received[before]).toMatchObject({ auth: 'jwt', jwt: { verified: false } });
    expect(s.received[before]!.jwt!.sub).toBeUndefined();
  });

  it('a valid token for an org without a registered issuer, or for a user not allowed: the generic 401', async () => {
    expectGeneric401(await list(s, 'Other-Org', '', { auth: bearer(await sign(rs, 'Other-Org')) }));
    const ruuid = s.addRun('Jwt-Org');
    const stranger = await sign(rs, 'Jwt-Org', { sub: 'someone-else@example.com' });
    expectGeneric401(await start(s, 'Jwt-Org', ruuid, { auth: bearer(stranger) }));
    expect(s.run('Jwt-Org', ruuid)?.state).toBe('Suspended');
  });

  it('a JWT-only org: Basic is a 403 (its right password too), a valid JWT resumes', async () => {
    const ruuid = s.addRun('Jwt-Org');
    expectError(await start(s, 'Jwt-Org', ruuid, { org: 'Jwt-Org' }), 403);
    expect(s.run('Jwt-Org', ruuid)?.state).toBe('Suspended');
    expectOk(await start(s, 'Jwt-Org', ruuid, { auth: bearer(await sign(es, 'Jwt-Org')) }));
    expect(s.run('Jwt-Org', ruuid)?.state).toBe('Resuming');
  });

  it('setJwtOnly turns Basic off and on again', async () => {
    s.setJwtOnly('Acme-Prod', true);
    try {
      expectError(await list(s, 'Acme-Prod'), 403);
      expectOk(await list(s, 'Acme-Prod', '', { auth: bearer(await sign(rs, 'Acme-Prod')) }));
    } finally {
      s.setJwtOnly('Acme-Prod', false);
    }
    expectOk(await list(s, 'Acme-Prod'));
  });

  it('setJwtIssuer registers, changes and removes an org`s issuer at runtime', async () => {
    const token = await sign(rs, 'Other-Org');
    expectGeneric401(await list(s, 'Other-Org', '', { auth: bearer(token) }));
    s.setJwtIssuer('Other-Org', { issuerId: ISS, jwksUrl });
    expectOk(await list(s, 'Other-Org', '', { auth: bearer(token) }));
    s.setJwtIssuer('Other-Org', { issuerId: 'https://another.example', jwksUrl }, [USER]);
    expectGeneric401(await list(s, 'Other-Org', '', { auth: bearer(token) }));
    expectOk(
      await list(s, 'Other-Org', '', { auth: bearer(await sign(rs, 'Other-Org', { iss: 'https://another.example' })) }),
    );
    s.setJwtIssuer('Other-Org', undefined);
    expectGeneric401(await list(s, 'Other-Org', '', { auth: bearer(token) }));
    expectOk(await list(s, 'Other-Org', '', { org: 'Other-Org' }));
  });

  it('an unreachable JWKS refuses the token with the generic 401', async () => {
    const closed = await listenOnLoopback(createServer());
    const url = `http://127.0.0.1:${closed.port}/jwks.json`;
    await closed.close();
    s.setJwtIssuer('Other-Org', { issuerId: ISS, jwksUrl: url });
    try {
      expectGeneric401(await list(s, 'Other-Org', '', { auth: bearer(await sign(rs, 'Other-Org')) }));
    } finally {
      s.setJwtIssuer('Other-Org', undefined);
    }
  });

  it('key rotation: a new kid is accepted once published, a removed key refused once the cache expires', async () => {
    const old = await sign(rs, 'Acme-Prod');
    expectOk(await list(s, 'Acme-Prod', '', { auth: bearer(old) }));
    // Published next to the old key: accepted at once (an unknown kid refetches, past the cooldown).
    published = [rs, es, rs2];
    await sleep(COOLDOWN_MS + 20);
    const before = s.received.length;
    expectOk(await list(s, 'Acme-Prod', '', { auth: bearer(await sign(rs2, 'Acme-Prod')) }));
    expect(s.received[before]).toMatchObject({ auth: 'jwt', jwt: { kid: 'rs-2', sub: USER, verified: true } });
    // The old key retired from the JWKS: once the cached set is older than cacheMaxAgeMs it is refetched and
    // the old key's tokens, though unexpired, are refused; the new key keeps working.
    published = [es, rs2];
    await sleep(CACHE_MS + 50);
    const fetchesBefore = fetches;
    expectGeneric401(await list(s, 'Acme-Prod', '', { auth: bearer(old) }));
    expect(fetches).toBeGreaterThan(fetchesBefore);
    expectOk(await list(s, 'Acme-Prod', '', { auth: bearer(await sign(rs2, 'Acme-Prod')) }));
    published = [rs, es];
    await sleep(CACHE_MS + 50);
  });
});
