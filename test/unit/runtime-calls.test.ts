// Every SnapLogic runtime call through the whole request path, in process against the SnapLogic stand-in (issue 12):
// start, stop, status, list and api-stats (with /daily and /concurrent), each authorized per action, validated (path
// and query), rate limited per action group and audited like the resume; and the run guard of writes: Idempotency-Key
// replay / 409 / 422 / 400, the run lock (run_busy), and the state read before a retry after an unknown outcome.
// In process there is no Redis: the run lock and the key records are this process's own (`shared: false`).
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import {
  basicFor,
  expectNoSecrets,
  expectProblem,
  ISSUER,
  onlyDecision,
  useInProcess,
  type InProcessApp,
  type Reply,
} from '../helpers/in-process.js';
import type { PathKind, ReceivedRequest } from '../helpers/snaplogic-stand-in.js';

const world = useInProcess();
const RUNTIME = '/api/1/rest/public/runtime';
const ORG = 'Acme-Prod';
/**
 * What a lease adds to the calls it covers: the audit attempt's ack (1 s), each call's wait for a connection
 * (upstream.queueTimeout, 2 s; twice on a retry) and a 2 s margin. A bound, not the exact lease.
 */
const LEASE_SLACK_S = 7;

const ACTIONS = ['runtime.start', 'runtime.stop', 'runtime.status', 'runtime.list', 'runtime.stats'] as const;
type Action = (typeof ACTIONS)[number];

const operator = { match: { sub: ['svc-ops', 'svc-ops-2'] }, orgs: [ORG, 'Other-Org'], actions: [...ACTIONS] };
const reader = { match: { sub: 'svc-dash' }, orgs: [ORG], actions: ['runtime.status', 'runtime.list'] };
/** Every action on every org, so that an unknown org is refused for being unknown, not for the grant. */
const root = { match: { sub: 'svc-root' }, orgs: '*', actions: [...ACTIONS] };
/** A caller granted exactly one action, and one granted every action but that one. */
const only = (action: Action) => ({ match: { sub: `only:${action}` }, orgs: [ORG], actions: [action] });
const allBut = (action: Action) => ({
  match: { sub: `not:${action}` },
  orgs: '*',
  actions: ACTIONS.filter((a) => a !== action),
});
const matrixPolicy = [...ACTIONS.flatMap((a) => [only(a), allBut(a)]), root];

/** One runtime call of SnapLogic's (the same path on snapgate and upstream). */
interface CallCase {
  name: string;
  action: Action;
  method: 'GET' | 'POST';
  kind: PathKind;
  targetsRun: boolean;
  path: (org: string, ruuid: string) => string;
}
const CALLS: readonly CallCase[] = [
  {
    name: 'start',
    action: 'runtime.start',
    method: 'POST',
    kind: 'start',
    targetsRun: true,
    path: (o, r) => `${RUNTIME}/start/${o}/${r}`,
  },
  {
    name: 'stop',
    action: 'runtime.stop',
    method: 'POST',
    kind: 'stop',
    targetsRun: true,
    path: (o, r) => `${RUNTIME}/stop/${o}/${r}`,
  },
  {
    name: 'status',
    action: 'runtime.status',
    method: 'GET',
    kind: 'status',
    targetsRun: true,
    path: (o, r) => `${RUNTIME}/${o}/${r}`,
  },
  {
    name: 'list',
    action: 'runtime.list',
    method: 'GET',
    kind: 'list',
    targetsRun: false,
    path: (o) => `${RUNTIME}/${o}`,
  },
  {
    name: 'stats',
    action: 'runtime.stats',
    method: 'GET',
    kind: 'stats',
    targetsRun: false,
    path: (o) => `${RUNTIME}/api-stats/${o}`,
  },
  {
    name: 'stats daily',
    action: 'runtime.stats',
    method: 'GET',
    kind: 'stats',
    targetsRun: false,
    path: (o) => `${RUNTIME}/api-stats/${o}/daily`,
  },
  {
    name: 'stats concurrent',
    action: 'runtime.stats',
    method: 'GET',
    kind: 'stats',
    targetsRun: false,
    path: (o) => `${RUNTIME}/api-stats/${o}/concurrent`,
  },
];
const WRITES = CALLS.filter((c) => c.method === 'POST');

const start = (ruuid: string, org = ORG) => `${RUNTIME}/start/${org}/${ruuid}`;
const stop = (ruuid: string, org = ORG) => `${RUNTIME}/stop/${org}/${ruuid}`;
const status = (ruuid: string, org = ORG) => `${RUNTIME}/${org}/${ruuid}`;
const list = (query = '', org = ORG) => `${RUNTIME}/${org}${query === '' ? '' : `?${query}`}`;
/** A fresh Idempotency-Key header (a quoted sf-string, as the draft requires). */
const freshKey = () => ({ 'idempotency-key': `"${randomUUID()}"` });

/** Sends a call and returns its reply with every request the stand-in received meanwhile. */
async function counted(call: () => Promise<Reply>): Promise<[Reply, ReceivedRequest[]]> {
  const before = world.standIn.received.length;
  const reply = await call();
  return [reply, world.standIn.received.slice(before)];
}

/** The types and actions of one request's audit events, in order. */
function trail(gw: InProcessApp, reply: Reply): Array<[AuditEvent['type'], AuditEvent['action']]> {
  return gw.audit.of(reply.requestId).map((e) => [e.type, e.action]);
}

/**
 * Holds the next request of `kind` at the stand-in (received, not answered) until `release()`: a call in flight, for
 * the 409s of a second one.
 */
function holdNext(kind: PathKind): { arrived: Promise<void>; release: () => void } {
  let release!: () => void;
  let arrive!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const arrived = new Promise<void>((resolve) => (arrive = resolve));
  world.standIn.onRequest = (req) => {
    if (req.kind !== kind) return undefined;
    world.standIn.onRequest = undefined;
    arrive();
    return gate;
  };
  return { arrived, release };
}

/** The longest one call to SnapLogic can take with the app's upstream timeouts (connect + headers + body), in s. */
function longestCallS(gw: InProcessApp): number {
  const u = gw.config.upstream;
  return (u.connectTimeout + u.headersTimeout + u.bodyTimeout) / 1000;
}

function retryAfterOf(reply: Reply): number {
  const value = reply.headers.get('retry-after');
  expect(value, 'Retry-After').toMatch(/^\d+$/);
  return Number(value);
}

// -----------------------------------------------------------------------------------------------------------------

describe('every action, allowed and denied', () => {
  it.each(CALLS)(
    '$name: allowed for a caller granted $action alone, forwarded once with the org credential',
    async (c) => {
      const gw = await world.app({ policy: matrixPolicy });
      const ruuid = world.standIn.addRun(ORG, 'Suspended');
      const token = await world.signer.mint({ sub: `only:${c.action}` });

      const [reply, received] = await counted(() => gw.send(c.method, c.path(ORG, ruuid), { token }));

      expect(reply.status, reply.text).toBe(200);
      expect(reply.json).toMatchObject({ http_status_code: 200 });
      expect(reply.headers.get('x-sl-statuscode')).toBe('200');
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ method: c.method, path: c.path(ORG, ruuid), kind: c.kind, query: {} });
      expect(received[0]!.headers.authorization).toBe(basicFor(ORG));
      expect(received[0]!.headers['x-request-id']).toBe(reply.requestId);
      const events = gw.audit.of(reply.requestId);
      expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
      for (const e of events) {
        expect(e).toMatchObject({
          action: c.action,
          org: ORG,
          ruuid: c.targetsRun ? ruuid : null,
          caller: { iss: ISSUER, sub: `only:${c.action}` },
        });
      }
      expect(events[1]).toMatchObject({ decision: 'allowed', status: 200, upstreamStatus: 200 });
    },
  );

  it.each(CALLS)('$name: 403 for a caller granted every other action, nothing forwarded', async (c) => {
    const gw = await world.app({ policy: matrixPolicy });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const token = await world.signer.mint({ sub: `not:${c.action}` });

    const [reply, received] = await counted(() => gw.send(c.method, c.path(ORG, ruuid), { token }));

    expectProblem(reply, 403, 'forbidden');
    expect(reply.json.detail).toContain(c.action);
    expect(received).toEqual([]);
    expect(world.standIn.run(ORG, ruuid)!.state).toBe('Suspended');
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      action: c.action,
      org: ORG,
      ruuid: c.targetsRun ? ruuid : null,
      decision: 'forbidden',
      reason: 'forbidden',
      status: 403,
    });
  });

  it.each(CALLS)('$name: a forbidden action and an unknown org get the same 403', async (c) => {
    const gw = await world.app({ policy: matrixPolicy });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const denied = await world.signer.mint({ sub: `not:${c.action}` });
    const everything = await world.signer.mint({ sub: 'svc-root' });

    const [forbidden, sentForbidden] = await counted(() =>
      gw.send(c.method, c.path(ORG, ruuid), { token: denied, requestId: null }),
    );
    const [unknown, sentUnknown] = await counted(() =>
      gw.send(c.method, c.path('No-Such-Org', ruuid), { token: everything, requestId: null }),
    );

    expectProblem(forbidden, 403, 'forbidden');
    expectProblem(unknown, 403, 'forbidden');
    const shape = (r: Reply) => ({
      status: r.status,
      code: r.json.code,
      title: r.json.title,
      type: r.json.type,
      detail: r.json.detail,
      keys: Object.keys(r.json as object).sort(),
    });
    expect(shape(unknown)).toEqual(shape(forbidden));
    expect([...sentForbidden, ...sentUnknown]).toEqual([]);
  });

  it('per action: a read-only caller [status, list] reads; an operator does all five', async () => {
    const gw = await world.app({ policy: [operator, reader] });
    const dash = await world.signer.mint({ sub: 'svc-dash' });
    const ops = await world.signer.mint({ sub: 'svc-ops' });

    for (const c of CALLS) {
      const ruuid = world.standIn.addRun(ORG, 'Suspended');
      const [byReader, readerSent] = await counted(() => gw.send(c.method, c.path(ORG, ruuid), { token: dash }));
      if (c.action === 'runtime.status' || c.action === 'runtime.list') {
        expect(byReader.status, `${c.name}: ${byReader.text}`).toBe(200);
        expect(readerSent.map((r) => r.kind)).toEqual([c.kind]);
      } else {
        expectProblem(byReader, 403, 'forbidden');
        expect(readerSent, c.name).toEqual([]);
      }
      const [byOperator, operatorSent] = await counted(() => gw.send(c.method, c.path(ORG, ruuid), { token: ops }));
      expect(byOperator.status, `${c.name}: ${byOperator.text}`).toBe(200);
      expect(operatorSent.map((r) => r.kind)).toEqual([c.kind]);
    }
  });

  it('lists a suspended run, reads its status, resumes it and watches it move on', async () => {
    const gw = await world.app({ policy: [operator] });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const ops = await world.signer.mint({ sub: 'svc-ops' });

    const suspended = await gw.send('GET', list('state=Suspended&limit=1000'), { token: ops });
    expect(suspended.status, suspended.text).toBe(200);
    expect(suspended.json.response_map.entries.map((e: { id: string }) => e.id)).toContain(ruuid);
    const before = await gw.send('GET', `${status(ruuid)}?level=summary`, { token: ops });
    expect(before.json.response_map).toMatchObject({ ruuid, state: 'Suspended' });
    expect(before.json.response_map.snap_map).toBeUndefined();
    const resumed = await gw.send('POST', start(ruuid), { token: ops });
    expect(resumed.status, resumed.text).toBe(200);
    const after = await gw.send('GET', `${status(ruuid)}?level=detail`, { token: ops });
    expect(['Resuming', 'Started', 'Completed']).toContain(after.json.response_map.state);
    expect(after.json.response_map.snap_map).toBeDefined();
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('query validation', () => {
  it('forwards every documented list parameter, canonical and in the documented order', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    // The caller's order, integers with leading zeros, a space as `+` and one as %20.
    const query = [
      'level=summary',
      'offset=0005',
      'limit=010',
      'end=2000',
      'start=1000',
      'last_hours=0024',
      'user_id=svc%40example.com',
      'cc_label=node+1',
      'plex_label=cloud%20plex',
      `project_path=%2F${ORG}%2Fprojects%2Fops`,
      'pipe_name=my+pipe',
      'invoker=scheduled',
      'state=Suspended',
    ].join('&');

    const [reply, received] = await counted(() => gw.send('GET', list(query), { token: ops }));

    expect(reply.status, reply.text).toBe(200);
    expect(received).toHaveLength(1);
    expect(received[0]!.path).toBe(`${RUNTIME}/${ORG}`);
    // Object key order is the order of the query the stand-in received.
    expect(Object.entries(received[0]!.query)).toEqual([
      ['state', 'Suspended'],
      ['invoker', 'scheduled'],
      ['pipe_name', 'my pipe'],
      ['project_path', `/${ORG}/projects/ops`],
      ['plex_label', 'cloud plex'],
      ['cc_label', 'node 1'],
      ['user_id', 'svc@example.com'],
      ['last_hours', '24'],
      ['start', '1000'],
      ['end', '2000'],
      ['limit', '10'],
      ['offset', '5'],
      ['level', 'summary'],
    ]);
    expect(reply.json.response_map).toMatchObject({ limit: 10, offset: 5 });
  });

  it.each([
    ['state', 'Suspended', 'Suspended'],
    ['state', 'Resuming', 'Resuming'],
    ['invoker', 'always_on', 'always_on'],
    ['invoker', 'manual', 'manual'],
    ['pipe_name', 'Nightly%20load%20(v2)', 'Nightly load (v2)'],
    ['project_path', `/${ORG}/shared`, `/${ORG}/shared`],
    ['project_path', `/${ORG}/projects/finance`, `/${ORG}/projects/finance`],
    ['plex_label', 'cloud-plex', 'cloud-plex'],
    ['cc_label', 'cloud-plex-node-1', 'cloud-plex-node-1'],
    ['user_id', 'svc@example.com', 'svc@example.com'],
    ['last_hours', '1', '1'],
    ['last_hours', '1080', '1080'],
    ['start', '0', '0'],
    ['end', '1767225600000', '1767225600000'],
    ['limit', '1', '1'],
    ['limit', '1000', '1000'],
    ['offset', '0', '0'],
    ['offset', '00042', '42'],
    ['level', 'summary', 'summary'],
    ['level', 'detail', 'detail'],
  ])('list accepts %s=%s, forwarding %s', async (name, value, forwarded) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send('GET', list(`${name}=${value}`), { token: ops }));
    expect(reply.status, reply.text).toBe(200);
    expect(received.map((r) => r.query)).toEqual([{ [name]: forwarded }]);
  });

  it.each([
    ['state', 'suspended'],
    ['state', 'Suspended,Started'],
    ['state', ''],
    ['invoker', 'cron'],
    ['pipe_name', 'x'.repeat(257)],
    ['pipe_name', 'a%0Ab'],
    ['project_path', '/Other-Org/projects/ops'],
    ['project_path', `/${ORG}/projects/..`],
    ['project_path', `/${ORG}/projects/a/b`],
    ['project_path', `${ORG}/shared`],
    ['plex_label', 'a%01b'],
    ['cc_label', ''],
    ['user_id', 'svc%20ops@example.com'],
    ['last_hours', '0'],
    ['last_hours', '1081'],
    ['last_hours', '1.5'],
    ['last_hours', '-1'],
    ['start', '-1'],
    ['start', '1e3'],
    ['end', 'now'],
    ['end', '99999999999999999'],
    ['limit', '0'],
    ['limit', '1001'],
    ['limit', '0x10'],
    ['limit', '+5'],
    ['offset', '-1'],
    ['offset', '1.0'],
    ['level', 'Summary'],
    ['level', 'full'],
  ])('list refuses %s=%j: 400 invalid_query naming it, nothing forwarded', async (name, value) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send('GET', list(`limit=5&${name}=${value}`), { token: ops }));
    expectProblem(reply, 400, 'invalid_query');
    expect(reply.json.parameter).toBe(name);
    expect(reply.json.detail).toContain(name);
    expect(received).toEqual([]);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      action: 'runtime.list',
      org: ORG,
      reason: 'invalid_query',
      decision: 'invalid_request',
    });
  });

  it.each([
    ['limit=5&limit=6', 'limit'],
    ['start=2000&end=1000', 'end'],
    ['org_wide=true', 'org_wide'],
    ['Limit=5', 'Limit'],
    ['state=Suspended&foo=', 'foo'],
    ['level=summary&token=abc', 'token'],
  ])('list refuses %s (repeated, crossed or unknown), naming %s, never forwarding it', async (query, parameter) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send('GET', list(query), { token: ops }));
    expectProblem(reply, 400, 'invalid_query');
    expect(reply.json.parameter).toBe(parameter);
    expect(received).toEqual([]);
  });

  it('status takes level=summary|detail (or none), case-sensitive, and nothing else', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');

    for (const [query, forwarded] of [
      ['', {}],
      ['?level=summary', { level: 'summary' }],
      ['?level=detail', { level: 'detail' }],
    ] as const) {
      const [reply, received] = await counted(() => gw.send('GET', `${status(ruuid)}${query}`, { token: ops }));
      expect(reply.status, reply.text).toBe(200);
      expect(received.map((r) => r.query)).toEqual([forwarded]);
    }
    for (const [query, parameter] of [
      ['level=Summary', 'level'],
      ['level=', 'level'],
      ['level=summary&level=detail', 'level'],
      ['limit=5', 'limit'],
      ['detail=1', 'detail'],
    ]) {
      const [reply, received] = await counted(() => gw.send('GET', `${status(ruuid)}?${query}`, { token: ops }));
      expectProblem(reply, 400, 'invalid_query');
      expect(reply.json.parameter, query).toBe(parameter);
      expect(received, query).toEqual([]);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({ action: 'runtime.status', org: ORG, ruuid });
    }
  });

  it.each([
    ['api-stats', 'date_time=2026-12-01T10:00:00', { date_time: '2026-12-01T10:00:00' }],
    ['api-stats', '', {}],
    ['api-stats/daily', 'date=2026-12-01', { date: '2026-12-01' }],
    ['api-stats/daily', 'date=2024-02-29', { date: '2024-02-29' }],
    ['api-stats/daily', 'date_time=2026-12-01T00:00:00', { date_time: '2026-12-01T00:00:00' }],
    ['api-stats/concurrent', 'date_time=2026-12-31T23:59:59', { date_time: '2026-12-31T23:59:59' }],
    ['api-stats/concurrent', '', {}],
  ])('%s accepts %j', async (route, query, forwarded) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const path = `${RUNTIME}/${route.replace('api-stats', `api-stats/${ORG}`)}${query === '' ? '' : `?${query}`}`;
    const [reply, received] = await counted(() => gw.send('GET', path, { token: ops }));
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json.response_map.organization).toBe(ORG);
    expect(received.map((r) => [r.kind, r.query])).toEqual([['stats', forwarded]]);
  });

  it.each([
    ['api-stats', 'date_time=2026-02-30T10:00:00', 'date_time'],
    ['api-stats', 'date_time=2026-12-01T10:00:00Z', 'date_time'],
    ['api-stats', 'date_time=2026-12-01T24:00:00', 'date_time'],
    ['api-stats', 'date_time=2026-12-01', 'date_time'],
    ['api-stats', 'date=2026-12-01', 'date'],
    ['api-stats/daily', 'date=2026-13-01', 'date'],
    ['api-stats/daily', 'date=2026-02-29', 'date'],
    ['api-stats/daily', 'date=2026-12-01T00:00:00', 'date'],
    ['api-stats/daily', 'date=2026-12-01&date_time=2026-12-01T00:00:00', 'date_time'],
    ['api-stats/daily', 'day=2026-12-01', 'day'],
    ['api-stats/concurrent', 'date_time=2026-12-01T10:00', 'date_time'],
    ['api-stats/concurrent', 'date=2026-12-01', 'date'],
  ])('%s refuses %s, naming %s', async (route, query, parameter) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const path = `${RUNTIME}/${route.replace('api-stats', `api-stats/${ORG}`)}?${query}`;
    const [reply, received] = await counted(() => gw.send('GET', path, { token: ops }));
    expectProblem(reply, 400, 'invalid_query');
    expect(reply.json.parameter).toBe(parameter);
    expect(received).toEqual([]);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({ action: 'runtime.stats', org: ORG, ruuid: null });
  });

  it.each(WRITES)('$name takes no query: any parameter is 400, nothing forwarded, the run unchanged', async (c) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    for (const [query, parameter] of [
      ['level=summary', 'level'],
      ['force=true', 'force'],
      ['x=', 'x'],
    ]) {
      const [reply, received] = await counted(() => gw.send('POST', `${c.path(ORG, ruuid)}?${query}`, { token: ops }));
      expectProblem(reply, 400, 'invalid_query');
      expect(reply.json.parameter).toBe(parameter);
      expect(reply.json.detail).toContain('takes no query parameters');
      expect(received).toEqual([]);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({ action: c.action, org: ORG, ruuid });
    }
    expect(world.standIn.run(ORG, ruuid)).toMatchObject({ state: 'Suspended', resumes: 0, stops: 0 });
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('paths and methods', () => {
  it.each([
    ['POST', list(), 'GET'],
    ['POST', status('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5'), 'GET'],
    ['DELETE', list(), 'GET'],
    ['PUT', `${RUNTIME}/api-stats/${ORG}`, 'GET'],
    ['POST', `${RUNTIME}/api-stats/${ORG}/daily`, 'GET'],
    ['POST', `${RUNTIME}/api-stats/${ORG}/concurrent`, 'GET'],
    ['GET', start('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5'), 'POST'],
    ['GET', stop('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5'), 'POST'],
    ['PATCH', start('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5'), 'POST'],
  ])('%s %s: 405 with Allow: %s, nothing forwarded', async (method, path, allow) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send(method, path, { token: ops }));
    expectProblem(reply, 405, 'method_not_allowed');
    expect(reply.headers.get('allow')).toBe(allow);
    expect(received).toEqual([]);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({ reason: 'method_not_allowed', status: 405 });
  });

  it.each([
    ['POST', start('not-a-ruuid'), 'runtime.start', ORG],
    ['POST', stop('52e99318640a9a03d8681d0d_e74cbd53'), 'runtime.stop', ORG],
    ['GET', status('52E99318640A9A03D8681D0D-e74cbd53-806e-464a-8190-52226c49bff5'), 'runtime.status', ORG],
    ['POST', start('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5', '-Acme'), 'runtime.start', null],
    [
      'POST',
      stop('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5', 'a'.repeat(101)),
      'runtime.stop',
      null,
    ],
    ['GET', list('', '_Acme'), 'runtime.list', null],
    ['GET', `${RUNTIME}/api-stats/-Acme`, 'runtime.stats', null],
    ['GET', `${RUNTIME}/api-stats/-Acme/daily`, 'runtime.stats', null],
    [
      'GET',
      status('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5', 'Acme~Prod'),
      'runtime.status',
      null,
    ],
  ])('%s %s: 400 invalid_path, its decision naming %s (org %s)', async (method, path, action, org) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send(method, path, { token: ops }));
    expectProblem(reply, 400, 'invalid_path');
    expect(received).toEqual([]);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({ action, org, ruuid: null, reason: 'invalid_path' });
  });

  it.each([
    ['GET', `${RUNTIME}/${ORG}/52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5/extra`],
    ['POST', `${RUNTIME}/start/${ORG}`],
    ['POST', `${RUNTIME}/stop/${ORG}/52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5/x`],
    ['GET', `${RUNTIME}/api-stats/${ORG}/weekly`],
    ['GET', `${RUNTIME}/api-stats`],
    ['GET', `${RUNTIME}/`],
  ])('%s %s: no call has this shape, 400 invalid_path', async (method, path) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const [reply, received] = await counted(() => gw.send(method, path, { token: ops }));
    expectProblem(reply, 400, 'invalid_path');
    expect(received).toEqual([]);
  });

  it('start/stop/{ruuid} is a resume on the (unknown) org "stop", not a stop', async () => {
    const gw = await world.app({ policy: [root] });
    const token = await world.signer.mint({ sub: 'svc-root' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const [reply, received] = await counted(() => gw.send('POST', start(ruuid, 'stop'), { token }));
    expectProblem(reply, 403, 'forbidden');
    expect(received).toEqual([]);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({ action: 'runtime.start', org: 'stop', ruuid });
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('limits per action group', () => {
  it('without rateLimit.reads, reads are not limited: many reads, and the resume quota is untouched', async () => {
    const gw = await world.app({ policy: [operator], orgs: { [ORG]: { rateLimit: { limit: 2, window: '60s' } } } });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const runs = [1, 2, 3].map(() => world.standIn.addRun(ORG, 'Suspended'));

    for (let n = 1; n <= 8; n++) {
      const path = n % 2 === 0 ? status(runs[0]!) : list();
      const read = await gw.send('GET', path, { token: ops });
      expect(read.status, `read ${n}: ${read.text}`).toBe(200);
      // Not limited, so no RateLimit fields (which would describe the writes' bucket).
      expect(read.headers.get('ratelimit-policy')).toBeNull();
      expect(read.headers.get('ratelimit')).toBeNull();
    }

    // The writes' two are all still there.
    for (const [n, ruuid] of runs.slice(0, 2).entries()) {
      const resume = await gw.send('POST', start(ruuid), { token: ops });
      expect(resume.status, resume.text).toBe(200);
      expect(resume.headers.get('ratelimit-policy')).toMatch(/^"org-rate";q=2;w=60;pk=/);
      expect(resume.headers.get('ratelimit')).toMatch(new RegExp(`^"org-rate";r=${1 - n};t=\\d+;pk=`));
    }
    const [thirdResume, sentResume] = await counted(() => gw.send('POST', start(runs[2]!), { token: ops }));
    expectProblem(thirdResume, 429, 'quota_exceeded');
    expect(thirdResume.json.detail).not.toContain('for reads');
    expect(sentResume).toEqual([]);
    expect(world.standIn.run(ORG, runs[2]!)!.state).toBe('Suspended');
    // Reads still go once the writes are spent.
    expect((await gw.send('GET', status(runs[2]!), { token: ops })).status).toBe(200);
  });

  it('reads: { limit: 1 }: the second read (of any kind) is 429 with Retry-After; resumes still go', async () => {
    const gw = await world.app({
      policy: [operator],
      orgs: { [ORG]: { rateLimit: { limit: 2, window: '60s', reads: { limit: 1, window: '60s' } } } },
    });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');

    const first = await gw.send('GET', status(ruuid), { token: ops });
    expect(first.status, first.text).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toMatch(/^"org-rate";q=1;w=60;pk=/);
    expect(first.headers.get('ratelimit')).toMatch(/^"org-rate";r=0;t=\d+;pk=/);
    for (const path of [status(ruuid), list(), `${RUNTIME}/api-stats/${ORG}/daily`]) {
      const [refused, sent] = await counted(() => gw.send('GET', path, { token: ops }));
      expectProblem(refused, 429, 'quota_exceeded');
      expect(retryAfterOf(refused)).toBeGreaterThanOrEqual(1);
      expect(retryAfterOf(refused)).toBeLessThanOrEqual(60);
      expect(refused.headers.get('ratelimit-policy')).toMatch(/q=1;w=60/);
      expect(refused.json['violated-policies']).toEqual(['org-rate']);
      expect(sent).toEqual([]);
      expect(onlyDecision(gw.audit, refused)).toMatchObject({ decision: 'rate_limited', reason: 'quota_exceeded' });
    }

    const resume = await gw.send('POST', start(ruuid), { token: ops });
    expect(resume.status, resume.text).toBe(200);
    expect(resume.headers.get('ratelimit-policy')).toMatch(/^"org-rate";q=2;w=60;pk=/);
    expect(resume.headers.get('ratelimit')).toMatch(/^"org-rate";r=1;t=\d+;pk=/);
    const stopped = await gw.send('POST', stop(ruuid), { token: ops });
    expect(stopped.status, stopped.text).toBe(200);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('stop', ruuid)).toHaveLength(1);
  });

  it('a rateLimit with only reads limits reads and leaves resumes unlimited', async () => {
    const gw = await world.app({
      policy: [operator],
      orgs: { [ORG]: { rateLimit: { reads: { limit: 1, window: '60s' } } } },
    });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    expect((await gw.send('GET', status(ruuid), { token: ops })).status).toBe(200);
    expectProblem(await gw.send('GET', status(ruuid), { token: ops }), 429, 'quota_exceeded');
    for (const run of [ruuid, world.standIn.addRun(ORG, 'Suspended'), world.standIn.addRun(ORG, 'Suspended')]) {
      const resumed = await gw.send('POST', start(run), { token: ops });
      expect(resumed.status, resumed.text).toBe(200);
      expect(resumed.headers.get('ratelimit-policy')).toBeNull();
    }
  });

  it('an org without limits answers reads without RateLimit fields', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const read = await gw.send('GET', list(), { token: ops });
    expect(read.status, read.text).toBe(200);
    expect(read.headers.get('ratelimit-policy')).toBeNull();
    expect(read.headers.get('ratelimit')).toBeNull();
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('audit per action and the reads mode', () => {
  /** One allowed call of each kind, on runs of their own, by the operator. */
  async function everyCall(gw: InProcessApp, token: string): Promise<Array<[CallCase, Reply]>> {
    const out: Array<[CallCase, Reply]> = [];
    for (const c of CALLS) {
      const ruuid = world.standIn.addRun(ORG, 'Suspended');
      const reply = await gw.send(c.method, c.path(ORG, ruuid), { token });
      expect(reply.status, `${c.name}: ${reply.text}`).toBe(200);
      out.push([c, reply]);
    }
    return out;
  }

  it('reads: all (the default): every allowed call leaves its attempt and outcome, naming its action', async () => {
    const gw = await world.app({ policy: [operator] });
    expect(gw.config.audit.reads).toBe('all');
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    for (const [c, reply] of await everyCall(gw, ops)) {
      expect(trail(gw, reply), c.name).toEqual([
        ['attempt', c.action],
        ['outcome', c.action],
      ]);
      const [attempt, outcome] = gw.audit.of(reply.requestId);
      expect(outcome!.attemptId).toBe(attempt!.id);
    }
  });

  it('reads: denied: allowed reads leave nothing, refused ones a decision; writes keep attempt + outcome', async () => {
    const gw = await world.app({ policy: [operator, reader], audit: { reads: 'denied' } });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const dash = await world.signer.mint({ sub: 'svc-dash' });
    for (const [c, reply] of await everyCall(gw, ops)) {
      const expected: Array<[string, string]> =
        c.method === 'POST'
          ? [
              ['attempt', c.action],
              ['outcome', c.action],
            ]
          : [];
      expect(trail(gw, reply), c.name).toEqual(expected);
    }
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const forbidden = await gw.send('GET', `${RUNTIME}/api-stats/${ORG}`, { token: dash });
    expectProblem(forbidden, 403, 'forbidden');
    expect(onlyDecision(gw.audit, forbidden)).toMatchObject({ action: 'runtime.stats', decision: 'forbidden' });
    const badQuery = await gw.send('GET', `${status(ruuid)}?level=Summary`, { token: dash });
    expectProblem(badQuery, 400, 'invalid_query');
    expect(onlyDecision(gw.audit, badQuery)).toMatchObject({ action: 'runtime.status', reason: 'invalid_query' });
    const anonymous = await gw.send('GET', list());
    expectProblem(anonymous, 401, 'token_missing');
    expect(onlyDecision(gw.audit, anonymous)).toMatchObject({ action: 'runtime.list', org: ORG });
    const deniedStop = await gw.send('POST', stop(ruuid), { token: dash });
    expectProblem(deniedStop, 403, 'forbidden');
    expect(onlyDecision(gw.audit, deniedStop)).toMatchObject({ action: 'runtime.stop' });
  });

  it('reads: denied: a read refused by its limit leaves a decision', async () => {
    const gw = await world.app({
      policy: [operator],
      audit: { reads: 'denied' },
      orgs: { [ORG]: { rateLimit: { limit: 5, window: '60s', reads: { limit: 1, window: '60s' } } } },
    });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ok = await gw.send('GET', list(), { token: ops });
    expect(ok.status).toBe(200);
    expect(gw.audit.of(ok.requestId)).toEqual([]);
    const limited = await gw.send('GET', list(), { token: ops });
    expectProblem(limited, 429, 'quota_exceeded');
    expect(onlyDecision(gw.audit, limited)).toMatchObject({ action: 'runtime.list', decision: 'rate_limited' });
  });

  it('reads: none: reads leave nothing, allowed or refused; writes leave attempt + outcome or a decision', async () => {
    const gw = await world.app({ policy: [operator, reader], audit: { reads: 'none' } });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const dash = await world.signer.mint({ sub: 'svc-dash' });
    for (const [c, reply] of await everyCall(gw, ops)) {
      expect(trail(gw, reply).length, c.name).toBe(c.method === 'POST' ? 2 : 0);
    }
    const before = gw.audit.events.length;
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    expectProblem(await gw.send('GET', `${RUNTIME}/api-stats/${ORG}`, { token: dash }), 403, 'forbidden');
    expectProblem(await gw.send('GET', list('limit=0'), { token: dash }), 400, 'invalid_query');
    expectProblem(await gw.send('GET', status(ruuid)), 401, 'token_missing');
    expect(gw.audit.events.length).toBe(before);

    const deniedStart = await gw.send('POST', start(ruuid), { token: dash });
    expectProblem(deniedStart, 403, 'forbidden');
    expect(onlyDecision(gw.audit, deniedStart)).toMatchObject({ action: 'runtime.start' });
  });

  it.each(['all', 'denied', 'none'] as const)('reads: %s: a write always writes its attempt ahead', async (mode) => {
    const gw = await world.app({ policy: [operator], audit: { reads: mode } });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    for (const c of WRITES) {
      const ruuid = world.standIn.addRun(ORG, 'Suspended');
      // The attempt is in the trail before SnapLogic sees the call.
      let attemptedFirst = false;
      world.standIn.onRequest = () => {
        attemptedFirst = gw.audit.attempts.some((e) => e.ruuid === ruuid && e.action === c.action);
      };
      const reply = await gw.send('POST', c.path(ORG, ruuid), { token: ops, headers: freshKey() });
      expect(reply.status, reply.text).toBe(200);
      expect(attemptedFirst, c.name).toBe(true);
      expect(trail(gw, reply)).toEqual([
        ['attempt', c.action],
        ['outcome', c.action],
      ]);
    }
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('Idempotency-Key', () => {
  it.each(WRITES)('$name: a retry gets the stored answer, marked, without a second call', async (c) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();

    const first = await gw.send('POST', c.path(ORG, ruuid), { token: ops, headers: key });
    expect(first.status, first.text).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await gw.send('POST', c.path(ORG, ruuid), { token: ops, headers: key });

    expect(again.status, again.text).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.text).toBe(first.text);
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(again.headers.get('x-sl-statuscode')).toBe('200');
    expect(again.requestId).toBe(again.sentRequestId);
    // In process there is no Redis to degrade from: no degraded markers.
    expect(again.headers.get('x-snapgate-idempotency-degraded')).toBeNull();
    expect(again.headers.get('x-snapgate-run-lock-degraded')).toBeNull();
    expect(again.headers.get('x-snapgate-replay-body-omitted')).toBeNull();
    expect(world.standIn.calls(c.kind, ruuid)).toHaveLength(1);
    expect(trail(gw, first)).toEqual([
      ['attempt', c.action],
      ['outcome', c.action],
    ]);
    expect(gw.audit.of(first.requestId)[0]).toMatchObject({ idempotency: 'new' });
    expect(onlyDecision(gw.audit, again)).toMatchObject({ action: c.action, ruuid, idempotency: 'replayed' });
  });

  it("replays SnapLogic's refusal too (a resume of a run that is not Suspended: its 409 and body)", async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Started');
    const key = freshKey();
    const first = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(first.status, first.text).toBe(409);
    expect(first.json.response_map.error_list[0].message).toContain('not Suspended');
    world.standIn.setState(ORG, ruuid, 'Suspended');
    const again = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(again.status).toBe(409);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.run(ORG, ruuid)!.state).toBe('Suspended');
  });

  it('an answer over the stored cap replays without its body, its size in X-Snapgate-Replay-Body-Omitted', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();
    const bytes = gw.config.idempotency.maxBodyBytes + 1_000;
    world.standIn.setFault({ kind: 'large', bytes, count: 1, on: 'start' });
    const first = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(first.status).toBe(200);
    expect(Buffer.byteLength(first.text)).toBe(bytes);
    const again = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('x-snapgate-replay-body-omitted')).toBe(String(bytes));
    expect(again.text).toBe('');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('the same key for another run or another action: 422, nothing forwarded', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const other = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();
    const first = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(first.status, first.text).toBe(200);

    for (const path of [start(other), stop(ruuid), stop(other), start(ruuid, 'Other-Org')]) {
      const [reply, received] = await counted(() => gw.send('POST', path, { token: ops, headers: key }));
      expectProblem(reply, 422, 'idempotency_key_mismatch');
      expect(reply.headers.get('idempotent-replayed')).toBeNull();
      expect(received, path).toEqual([]);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({ decision: 'conflict' });
    }
    expect(world.standIn.run(ORG, other)).toMatchObject({ state: 'Suspended', resumes: 0, stops: 0 });
    // The key still replays its own call.
    const again = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it.each([
    ['a bare key with a space', 'abc def'],
    ['a bare key starting with a dash', '-abc'],
    ['a bare key with a comma', 'a,b'],
    ['a bare key of 256 characters', 'k'.repeat(256)],
    ['the empty string', '""'],
    ['256 characters', `"${'k'.repeat(256)}"`],
    ['a control character', '"a\u0001b"'],
    ['a tab inside', '"a\tb"'],
    ['DEL', '"a\u007fb"'],
    ['a non-ASCII character', '"caf\u00e9"'],
    ['single quotes', "'abc'"],
    ['no closing quote', '"abc'],
    ['a bad escape', '"a\\nb"'],
    ['parameters', '"abc";v=1'],
    ['two strings (a repeated header)', '"a", "b"'],
  ])('a key with %s: 400 idempotency_key_invalid, nothing forwarded', async (_what, value) => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    for (const path of [start(ruuid), stop(ruuid)]) {
      const [reply, received] = await counted(() =>
        gw.send('POST', path, { token: ops, headers: { 'idempotency-key': value } }),
      );
      expectProblem(reply, 400, 'idempotency_key_invalid');
      expect(reply.json.detail).toContain('Idempotency-Key');
      expect(received).toEqual([]);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({ reason: 'idempotency_key_invalid', ruuid });
    }
    expect(world.standIn.run(ORG, ruuid)).toMatchObject({ state: 'Suspended', resumes: 0, stops: 0 });
  });

  it('a key of 255 characters, with escapes, or bare (as Stripe clients send it) is accepted', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const quoted255 = `"${'q'.repeat(255)}"`;
    for (const value of [quoted255, '"a \\"quoted\\" key"', 'b'.repeat(255), randomUUID(), 'a.b_c~d:e/f+g=h-i']) {
      const ruuid = world.standIn.addRun(ORG, 'Suspended');
      const reply = await gw.send('POST', stop(ruuid), { token: ops, headers: { 'idempotency-key': value } });
      expect(reply.status, `${value}: ${reply.text}`).toBe(200);
      expect(world.standIn.calls('stop', ruuid)).toHaveLength(1);
    }
  });

  it('a bare key and its quoted form are the same key', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = randomUUID();
    const bare = await gw.send('POST', start(ruuid), { token: ops, headers: { 'idempotency-key': key } });
    expect(bare.status, bare.text).toBe(200);
    const quoted = await gw.send('POST', start(ruuid), { token: ops, headers: { 'idempotency-key': `"${key}"` } });
    expect(quoted.headers.get('idempotent-replayed')).toBe('true');
    expect(quoted.text).toBe(bare.text);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('an empty Idempotency-Key, on an org that requires none, is a malformed key (400), not "missing"', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    expect(gw.config.orgs[ORG]!.requireIdempotencyKey).toBe(false);
    for (const value of ['', '   ']) {
      const [reply, received] = await counted(() =>
        gw.send('POST', start(ruuid), { token: ops, headers: { 'idempotency-key': value } }),
      );
      expectProblem(reply, 400, 'idempotency_key_invalid');
      // This org requires no key: the answer must not say that it does.
      expect(reply.json.detail).not.toContain('requires an Idempotency-Key');
      expect(received).toEqual([]);
    }
  });

  it('an org that requires a key refuses writes without one (400), nothing forwarded; reads need none', async () => {
    const gw = await world.app({ policy: [operator], orgs: { [ORG]: { requireIdempotencyKey: true } } });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');

    for (const [path, action] of [
      [start(ruuid), 'runtime.start'],
      [stop(ruuid), 'runtime.stop'],
    ]) {
      const [reply, received] = await counted(() => gw.send('POST', path!, { token: ops }));
      expectProblem(reply, 400, 'idempotency_key_missing');
      expect(reply.json.detail).toContain('requires an Idempotency-Key');
      expect(received).toEqual([]);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({ action, reason: 'idempotency_key_missing' });
      const blank = await gw.send('POST', path!, { token: ops, headers: { 'idempotency-key': '  ' } });
      expect(blank.status).toBe(400);
      expect(['idempotency_key_missing', 'idempotency_key_invalid']).toContain(blank.json.code);
    }
    expect(world.standIn.calls(undefined, ruuid)).toEqual([]);

    const read = await gw.send('GET', status(ruuid), { token: ops });
    expect(read.status, read.text).toBe(200);
    const keyed = await gw.send('POST', start(ruuid), { token: ops, headers: freshKey() });
    expect(keyed.status, keyed.text).toBe(200);
    // Another org of the same gateway does not require one.
    const elsewhere = world.standIn.addRun('Other-Org', 'Suspended');
    const unkeyed = await gw.send('POST', start(elsewhere, 'Other-Org'), { token: ops });
    expect(unkeyed.status, unkeyed.text).toBe(200);
  });

  it('keys are scoped to the caller: the same key sent by another caller is a call of its own', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ops2 = await world.signer.mint({ sub: 'svc-ops-2' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const other = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();

    expect((await gw.send('POST', start(ruuid), { token: ops, headers: key })).status).toBe(200);
    // Not a 422 (the first caller's record is not this caller's), not a replay of the first caller's answer.
    const theirs = await gw.send('POST', start(other), { token: ops2, headers: key });
    expect(theirs.status, theirs.text).toBe(200);
    expect(theirs.headers.get('idempotent-replayed')).toBeNull();
    expect(world.standIn.calls('start', other)).toHaveLength(1);
    // Each caller's key is bound to that caller's own call.
    const crossed = await gw.send('POST', start(ruuid), { token: ops2, headers: key });
    expectProblem(crossed, 422, 'idempotency_key_mismatch');
    const mine = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(mine.status).toBe(200);
    expect(mine.headers.get('idempotent-replayed')).toBe('true');
    const yours = await gw.send('POST', start(other), { token: ops2, headers: key });
    expect(yours.headers.get('idempotent-replayed')).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('start', other)).toHaveLength(1);
  });

  it('a stored answer carries no secret: no Set-Cookie, no authorization, only allow-listed headers', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();
    const first = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(first.status).toBe(200);
    // SnapLogic sent a session cookie; neither the answer nor its replay passes it on.
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    const again = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    for (const reply of [first, again]) {
      expect(reply.headers.get('set-cookie')).toBeNull();
      expect(reply.headers.get('authorization')).toBeNull();
      expect(reply.headers.get('www-authenticate')).toBeNull();
    }
    const names = [...again.headers.keys()];
    expect(names).toEqual(
      expect.arrayContaining(['content-type', 'x-sl-statuscode', 'idempotent-replayed', 'x-request-id']),
    );
    const allowed = ['content-type', 'content-language', 'x-sl-statuscode', 'idempotent-replayed', 'x-request-id'];
    expect(names.filter((n) => !allowed.includes(n) && n !== 'content-length' && n !== 'cache-control')).toEqual([]);
    expect(again.text).not.toContain(basicFor(ORG).slice(6));
    expect(again.text).not.toContain(ops);
    expectNoSecrets();
  });

  it('the same key while its first call is in flight: 409 idempotency_key_in_use with Retry-After', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();
    const hold = holdNext('start');
    const first = gw.send('POST', start(ruuid), { token: ops, headers: key });
    try {
      await hold.arrived;
      const [busy, received] = await counted(() => gw.send('POST', start(ruuid), { token: ops, headers: key }));
      expectProblem(busy, 409, 'idempotency_key_in_use');
      // When the record's lease ends: bounded by the upstream timeouts (twice the longest call, and a margin).
      expect(retryAfterOf(busy)).toBeGreaterThanOrEqual(1);
      expect(retryAfterOf(busy)).toBeLessThanOrEqual(2 * longestCallS(gw) + LEASE_SLACK_S);
      expect(received).toEqual([]);
      expect(onlyDecision(gw.audit, busy)).toMatchObject({ decision: 'conflict', reason: 'idempotency_key_in_use' });
    } finally {
      hold.release();
    }
    expect((await first).status).toBe(200);
    const after = await gw.send('POST', start(ruuid), { token: ops, headers: key });
    expect(after.headers.get('idempotent-replayed')).toBe('true');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('one write of a run at a time: a second resume or stop, with no key or another, is 409 run_busy', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const free = world.standIn.addRun(ORG, 'Suspended');
    const hold = holdNext('start');
    const first = gw.send('POST', start(ruuid), { token: ops });
    try {
      await hold.arrived;
      for (const [path, headers] of [
        [start(ruuid), {}],
        [start(ruuid), freshKey()],
        [stop(ruuid), {}],
        [stop(ruuid), freshKey()],
      ] as const) {
        const [busy, received] = await counted(() => gw.send('POST', path, { token: ops, headers }));
        expectProblem(busy, 409, 'run_busy');
        // When the lock's lease ends, bounded by the longest call and a margin.
        expect(retryAfterOf(busy)).toBeGreaterThanOrEqual(1);
        expect(retryAfterOf(busy)).toBeLessThanOrEqual(longestCallS(gw) + LEASE_SLACK_S);
        expect(received).toEqual([]);
        expect(onlyDecision(gw.audit, busy)).toMatchObject({ reason: 'run_busy', decision: 'conflict', ruuid });
      }
      // Reads of that run, and writes of another, are not held up.
      expect((await gw.send('GET', status(ruuid), { token: ops })).status).toBe(200);
      expect((await gw.send('POST', start(free), { token: ops })).status).toBe(200);
    } finally {
      hold.release();
    }
    expect((await first).status).toBe(200);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    expect(world.standIn.calls('stop', ruuid)).toHaveLength(0);
    // Just after SnapLogic accepted it, the run stays closed to resumes for runLock.holdAfterResume: a duplicate
    // sent right after the first is refused, not forwarded.
    const holdS = gw.config.runLock.holdAfterResume / 1000;
    expect(holdS).toBeGreaterThan(0);
    const [duplicate, sentDuplicate] = await counted(() => gw.send('POST', start(ruuid), { token: ops }));
    expectProblem(duplicate, 409, 'run_busy');
    expect(retryAfterOf(duplicate)).toBeLessThanOrEqual(Math.ceil(holdS));
    expect(sentDuplicate).toEqual([]);
    // The lock itself was released with the answer: a stop of the resumed run goes at once.
    const [next, received] = await counted(() => gw.send('POST', stop(ruuid), { token: ops }));
    expect(next.status, next.text).toBe(200);
    expect(received.map((r) => r.kind)).toEqual(['stop']);
  });

  it('after an upstream error the lock is released into the hold: a resume waits it out, a stop goes', async () => {
    const gw = await world.app({ policy: [operator] });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    world.standIn.setFault({ kind: 'status', status: 500, count: 1, on: 'start' });
    const failed = await gw.send('POST', start(ruuid), { token: ops });
    expect(failed.status).toBe(500);
    // A 500 may or may not have resumed it: a blind resume right after is held back.
    expectProblem(await gw.send('POST', start(ruuid), { token: ops }), 409, 'run_busy');
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
    // A 4xx is a definite refusal: no hold after it.
    const other = world.standIn.addRun(ORG, 'Suspended');
    world.standIn.setFault({ kind: 'status', status: 400, count: 1, on: 'start' });
    expect((await gw.send('POST', start(other), { token: ops })).status).toBe(400);
    const retried = await gw.send('POST', start(other), { token: ops });
    expect(retried.status, retried.text).toBe(200);
    expect(world.standIn.calls('start', other)).toHaveLength(2);
    const stopped = await gw.send('POST', stop(ruuid), { token: ops });
    expect(stopped.status, stopped.text).toBe(200);
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('a retry after an unknown outcome', () => {
  // undici's headers timer ticks about every half second: each first call takes up to ~1 s, so they go together.
  const timeouts = { upstream: { headersTimeout: '250ms' } };

  /** First calls that SnapLogic receives and never answers in time (`applied` or not), sent together: each 504. */
  async function unknownOutcomes(
    gw: InProcessApp,
    token: string,
    applied: boolean,
    calls: ReadonlyArray<readonly [string, Record<string, string>]>,
  ): Promise<void> {
    world.standIn.setFault({ kind: 'unknown-outcome', applied, count: calls.length });
    const before = world.standIn.received.length;
    const replies = await Promise.all(calls.map(([path, headers]) => gw.send('POST', path, { token, headers })));
    for (const reply of replies) {
      expectProblem(reply, 504, 'upstream_timeout');
      expect(trail(gw, reply).map(([type]) => type)).toEqual(['attempt', 'outcome']);
    }
    expect(world.standIn.received.length - before).toBe(calls.length);
    world.standIn.setFault(undefined);
  }

  it('each retry whose state read reached SnapLogic keeps its rate quota: retries cannot read for free', async () => {
    const gw = await world.app({
      policy: [operator],
      ...timeouts,
      orgs: { [ORG]: { rateLimit: { limit: 3, window: '60s' } } },
    });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const ruuid = world.standIn.addRun(ORG, 'Suspended');
    const key = freshKey();
    await unknownOutcomes(gw, ops, true, [[start(ruuid), key]]);
    const codes: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      codes.push((await gw.send('POST', start(ruuid), { token: ops, headers: key })).json.code);
    }
    expect(codes).toEqual(['run_state_conflict', 'run_state_conflict', 'quota_exceeded']);
    expect(world.standIn.calls('status', ruuid)).toHaveLength(2);
    expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
  });

  it('not applied (the run still Suspended): the retry reads the state, then forwards once more', async () => {
    const gw = await world.app({ policy: [operator], ...timeouts });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const resumed = world.standIn.addRun(ORG, 'Suspended');
    const stopped = world.standIn.addRun(ORG, 'Suspended');
    const unreadable = world.standIn.addRun(ORG, 'Suspended');
    const [k1, k2, k3] = [freshKey(), freshKey(), freshKey()];
    await unknownOutcomes(gw, ops, false, [
      [start(resumed), k1],
      [stop(stopped), k2],
      [start(unreadable), k3],
    ]);
    for (const ruuid of [resumed, stopped, unreadable]) {
      expect(world.standIn.run(ORG, ruuid)).toMatchObject({ state: 'Suspended', resumes: 0, stops: 0 });
    }

    const [retry, received] = await counted(() => gw.send('POST', start(resumed), { token: ops, headers: k1 }));
    expect(retry.status, retry.text).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(received.map((r) => [r.kind, r.query])).toEqual([
      ['status', { level: 'summary' }],
      ['start', {}],
    ]);
    expect(received[0]!.path).toBe(status(resumed));
    expect(received[0]!.headers.authorization).toBe(basicFor(ORG));
    expect(world.standIn.calls('start', resumed)).toHaveLength(2);
    expect(world.standIn.calls('status', resumed)).toHaveLength(1);
    expect(world.standIn.run(ORG, resumed)!.resumes).toBe(1);
    expect(gw.audit.of(retry.requestId)).toMatchObject([
      { type: 'attempt', action: 'runtime.start', idempotency: 'retry', runState: 'Suspended' },
      { type: 'outcome', action: 'runtime.start', status: 200 },
    ]);
    // Now done: the next retry is a replay.
    const third = await gw.send('POST', start(resumed), { token: ops, headers: k1 });
    expect(third.headers.get('idempotent-replayed')).toBe('true');
    expect(world.standIn.calls('start', resumed)).toHaveLength(2);

    const stopRetry = await gw.send('POST', stop(stopped), { token: ops, headers: k2 });
    expect(stopRetry.status, stopRetry.text).toBe(200);
    expect(world.standIn.calls('stop', stopped)).toHaveLength(2);
    expect(world.standIn.calls('status', stopped)).toHaveLength(1);
    expect(world.standIn.run(ORG, stopped)!.stops).toBe(1);

    // The state cannot be read: 502, nothing forwarded; the record stays unknown, so the next retry reads again.
    world.standIn.setFault({ kind: 'status', status: 500, count: 1, on: 'status' });
    const [blind, sentBlind] = await counted(() => gw.send('POST', start(unreadable), { token: ops, headers: k3 }));
    expectProblem(blind, 502, 'run_state_unavailable');
    expect(retryAfterOf(blind)).toBeGreaterThanOrEqual(1);
    expect(sentBlind.map((r) => r.kind)).toEqual(['status']);
    const [later, sentLater] = await counted(() => gw.send('POST', start(unreadable), { token: ops, headers: k3 }));
    expect(later.status, later.text).toBe(200);
    expect(sentLater.map((r) => r.kind)).toEqual(['status', 'start']);
    expect(world.standIn.calls('start', unreadable)).toHaveLength(2);
  });

  it('applied (the run moved on): 409 run_state_conflict naming the state, never a second resume or stop', async () => {
    const gw = await world.app({ policy: [operator], ...timeouts });
    const ops = await world.signer.mint({ sub: 'svc-ops' });
    const moved = world.standIn.addRun(ORG, 'Suspended');
    const resuming = world.standIn.addRun(ORG, 'Suspended');
    const started = world.standIn.addRun(ORG, 'Suspended');
    const stopping = world.standIn.addRun(ORG, 'Suspended');
    const unkeyed = world.standIn.addRun(ORG, 'Suspended');
    const keys = new Map([moved, resuming, started, stopping].map((r) => [r, freshKey()]));
    await unknownOutcomes(gw, ops, true, [
      [start(moved), keys.get(moved)!],
      [start(resuming), keys.get(resuming)!],
      [start(started), keys.get(started)!],
      [stop(stopping), keys.get(stopping)!],
      [start(unkeyed), {}],
    ]);
    // `moved` went its way (Resuming → Started → Completed); the others are held where a slower run would be.
    world.standIn.setState(ORG, resuming, 'Resuming');
    world.standIn.setState(ORG, started, 'Started');
    world.standIn.setState(ORG, stopping, 'Stopping');

    for (const [ruuid, path, action, kind] of [
      [moved, start(moved), 'runtime.start', 'start'],
      [resuming, start(resuming), 'runtime.start', 'start'],
      [started, start(started), 'runtime.start', 'start'],
      [stopping, stop(stopping), 'runtime.stop', 'stop'],
    ] as const) {
      const state = world.standIn.run(ORG, ruuid)!.state;
      expect(state).not.toBe('Suspended');
      const [retry, received] = await counted(() => gw.send('POST', path, { token: ops, headers: keys.get(ruuid)! }));
      expectProblem(retry, 409, 'run_state_conflict');
      expect(retry.json.state, kind).toBe(state);
      expect(retry.json.detail).toContain(state);
      expect(received.map((r) => [r.kind, r.path])).toEqual([['status', status(ruuid)]]);
      expect(world.standIn.calls(kind, ruuid)).toHaveLength(1);
      expect(onlyDecision(gw.audit, retry)).toMatchObject({
        action,
        ruuid,
        decision: 'conflict',
        reason: 'run_state_conflict',
        runState: state,
      });
    }
    expect(world.standIn.run(ORG, moved)!.state).toBe('Completed');
    expect(world.standIn.run(ORG, stopping)!.stops).toBe(1);

    // The record stays unknown: a later retry reads the state again, and again does not resume.
    const [again, sentAgain] = await counted(() =>
      gw.send('POST', start(started), { token: ops, headers: keys.get(started)! }),
    );
    expectProblem(again, 409, 'run_state_conflict');
    expect(sentAgain.map((r) => r.kind)).toEqual(['status']);
    expect(world.standIn.run(ORG, started)!.resumes).toBe(1);

    // Without a key there is no record to say the outcome was unknown, but the run stays closed to resumes for the
    // hold after a call that may have resumed it: a quick blind retry is run_busy, not sent.
    const [blind, sentBlind] = await counted(() => gw.send('POST', start(unkeyed), { token: ops }));
    expectProblem(blind, 409, 'run_busy');
    expect(sentBlind).toEqual([]);
    expect(world.standIn.run(ORG, unkeyed)!.resumes).toBe(1);
  });
});
