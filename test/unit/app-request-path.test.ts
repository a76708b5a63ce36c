// The request path in-process, up to authorization: a forwarded call and its audit trail, request bodies, paths refused
// before anything else, tokens refused (401 with WWW-Authenticate) and callers refused (one 403 for a forbidden org and
// an unknown one), request ids, and draining. createApp() with the real verifier (on a JWKS file), policy, credentials,
// limiter and forwarder, the SnapLogic stand-in on loopback, and an in-memory audit recorder.
import { describe, expect, it } from 'vitest';
import {
  basicFor,
  BILLING,
  DATA_ENG,
  expectNoSecrets,
  expectProblem,
  ISSUER,
  onlyDecision,
  SOME_RUUID,
  START,
  useInProcess,
  onAcme,
} from '../helpers/in-process.js';

const world = useInProcess();
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = `Basic ${Buffer.from('svc-acme@example.com:guess').toString('base64')}`;
const limited = { 'Acme-Prod': { rateLimit: { limit: 5, window: '60s' } } };

describe('a call that passes every check', () => {
  it("goes once with the org's credential, is answered as SnapLogic answered, audits attempt and outcome", async () => {
    const gw = await world.app({ orgs: limited });
    const ruuid = world.standIn.addRun('Acme-Prod');
    const token = await world.signer.mint();
    const before = world.standIn.startCalls().length;

    const reply = await gw.resume('Acme-Prod', ruuid, {
      token,
      requestId: 'caller-req-42',
      headers: {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        'user-agent': 'billing-job/1.2',
        cookie: 'session=abc',
        'x-forwarded-for': '10.9.9.9',
      },
    });

    expect(reply.status, reply.text).toBe(200);
    expect(reply.json).toEqual({ response_map: {}, http_status_code: 200 });
    expect(reply.headers.get('content-type')).toBe('application/json');
    expect(reply.headers.get('x-sl-statuscode')).toBe('200');
    expect(reply.headers.get('x-request-id')).toBe('caller-req-42');
    expect(reply.headers.get('set-cookie')).toBeNull();
    expect(reply.headers.get('ratelimit-policy')).toMatch(/^"org-rate";q=5;w=60;pk=:[A-Za-z0-9+/]{16}:$/);
    expect(reply.headers.get('ratelimit')).toMatch(/^"org-rate";r=4;t=\d+;pk=:[A-Za-z0-9+/]{16}:$/);
    expect(reply.headers.get('ratelimit-policy')).not.toContain('Acme');

    const calls = world.standIn.startCalls().slice(before);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.path).toBe(`${START}/Acme-Prod/${ruuid}`);
    expect(call.headers.authorization).toBe(basicFor('Acme-Prod'));
    expect(call.headers['x-request-id']).toBe('caller-req-42');
    expect(call.headers.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    expect(call.headers.cookie).toBeUndefined();
    expect(call.headers['x-forwarded-for']).toBeUndefined();
    expect(JSON.stringify(call)).not.toContain(token.split('.')[2]);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).not.toBe('Suspended');

    const events = gw.audit.of('caller-req-42');
    expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
    const [attempt, outcome] = events;
    const facts = {
      decision: 'allowed',
      reason: null,
      ...onAcme(ruuid, 'svc-billing'),
      instance: 'in-process',
      rateLimit: { outcome: 'allowed', policies: [] },
      client: { userAgent: 'billing-job/1.2' },
    };
    expect(attempt).toMatchObject({ ...facts, status: null, upstreamStatus: null });
    expect(attempt!.attemptId).toBeUndefined();
    expect(outcome).toMatchObject({
      ...facts,
      attemptId: attempt!.id,
      status: 200,
      upstreamStatus: 200,
      slStatusCode: '200',
    });
    expect(typeof outcome!.latencyMs).toBe('number');
    expect(gw.audit.decisions).toEqual([]);
    // Left the calls in flight once its outcome was written.
    expect(gw.inFlight.size).toBe(0);
    const counted = await gw.metrics.registry.getSingleMetricAsString('snapgate_requests_total');
    expect(counted).toContain('snapgate_requests_total{decision="allowed",reason="none",org="Acme-Prod"} 1');
  });

  it("carries no RateLimit fields for an org without limits, and uses that org's own credential", async () => {
    const gw = await world.app({ orgs: limited });
    const ruuid = world.standIn.addRun('Other-Org');
    const reply = await gw.resume('Other-Org', ruuid, { token: await world.signer.mint(DATA_ENG) });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.headers.get('ratelimit-policy')).toBeNull();
    expect(reply.headers.get('ratelimit')).toBeNull();
    expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(basicFor('Other-Org'));
    const [attempt, outcome] = gw.audit.of(reply.requestId);
    expect(outcome).toMatchObject({
      type: 'outcome',
      attemptId: attempt!.id,
      caller: { iss: ISSUER, sub: 'svc-data-eng' },
      org: 'Other-Org',
      rateLimit: null,
    });
  });

  it('forwards a request body within server.maxBodyBytes as it came, with its content type', async () => {
    const gw = await world.app();
    const body = JSON.stringify({ note: 'resume after the month-end close', padding: 'x'.repeat(900) });
    const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), {
      token: await world.signer.mint(),
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(reply.status, reply.text).toBe(200);
    const call = world.standIn.startCalls().at(-1)!;
    expect(call.body).toBe(body);
    expect(call.headers['content-type']).toBe('application/json');
    expect(gw.audit.of(reply.requestId).map((e) => e.type)).toEqual(['attempt', 'outcome']);
  });
});

describe('a request body over server.maxBodyBytes', () => {
  it('is 413 payload_too_large, closes the connection, forwards nothing and takes no quota', async () => {
    const gw = await world.app({ orgs: { 'Acme-Prod': { rateLimit: { limit: 1, window: '60s' } } } });
    const token = await world.signer.mint();
    const ruuid = world.standIn.addRun('Acme-Prod');
    const before = world.standIn.received.length;
    const reply = await gw.resume('Acme-Prod', ruuid, { token, body: 'x'.repeat(1_025) });
    expectProblem(reply, 413, 'payload_too_large');
    expect(reply.headers.get('connection')).toBe('close');
    expect(reply.json.detail).toContain('1024 bytes');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'invalid_request',
      reason: 'payload_too_large',
      status: 413,
      ...onAcme(ruuid, 'svc-billing'),
      rateLimit: null,
    });
    // The org's only call of the window is still there.
    expect((await gw.resume('Acme-Prod', ruuid, { token })).status).toBe(200);
  });
});

describe('paths refused before authentication (400, 404, 405)', () => {
  const ruuid = SOME_RUUID;
  // [path, the org, ruuid and action the decision names]
  const invalid: Array<[string, string | null, string | null, string | null]> = [
    [`${START}/Acme%20Prod/${ruuid}`, null, null, 'runtime.start'],
    [`${START}/${'A'.repeat(101)}/${ruuid}`, null, null, 'runtime.start'],
    [`${START}/Acme..Prod/${ruuid}`, null, null, 'runtime.start'],
    [`${START}/-Acme/${ruuid}`, null, null, 'runtime.start'],
    [`${START}/Acme-Prod/not-a-ruuid`, 'Acme-Prod', null, 'runtime.start'],
    [`${START}/Acme-Prod/${ruuid}x`, 'Acme-Prod', null, 'runtime.start'],
    // The path's first segments name the call even when its shape is wrong: the decision names the action.
    [`${START}/Acme-Prod/${ruuid}/extra`, null, null, 'runtime.start'],
    [`${START}/Acme-Prod`, null, null, 'runtime.start'],
    [START, null, null, 'runtime.start'],
    [`${START}//Acme-Prod/${ruuid}`, null, null, null],
    [`${START}/Acme-Prod%2F..%2Fstop/${ruuid}`, null, null, null],
    [`${START}/Acme-Prod/${ruuid}%2F..%2F..`, null, null, null],
    [`${START}/Acme%5CProd/${ruuid}`, null, null, null],
    [`${START}/Acme%00Prod/${ruuid}`, null, null, null],
    [`${START}/Acme%0AProd/${ruuid}`, null, null, null],
    [`${START}/${'A'.repeat(3_000)}/${ruuid}`, null, null, null],
  ];

  it.each(invalid)('POST %s → 400 invalid_path, nothing forwarded', async (path, org, badRuuid, action) => {
    const gw = await world.app();
    const before = world.standIn.received.length;
    const reply = await gw.send('POST', path, { token: await world.signer.mint() });
    expectProblem(reply, 400, 'invalid_path');
    expect(reply.headers.get('www-authenticate')).toBeNull();
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'invalid_request',
      reason: 'invalid_path',
      status: 400,
      // The path is judged before the token: no caller is named.
      caller: null,
      org,
      ruuid: badRuuid,
      action,
    });
  });

  // Through @hono/node-server the guard sees the target as the client sent it; a WHATWG URL would fold the dot
  // segments first (the second one would become Acme-Prod's own path).
  const rawTricks = [
    `${START}/Acme-Prod/..`,
    `${START}/Other-Org/../Acme-Prod/${ruuid}`,
    `${START}/./Acme-Prod/${ruuid}`,
    `${START}/Acme-Prod/%2e%2e`,
    `${START}/Acme-Prod/${ruuid}/%2E`,
    `/api/1/rest/public/runtime/stop/../start/Acme-Prod/${ruuid}`,
  ];

  it.each(rawTricks)('raw target %s → 400 invalid_path, nothing forwarded', async (target) => {
    const gw = await world.app();
    const before = world.standIn.received.length;
    const token = await world.signer.mint();
    const reply = await gw.sendRaw('POST', target, [
      ['Authorization', `Bearer ${token}`],
      ['X-Request-Id', 'raw-trick'],
    ]);
    expectProblem(reply, 400, 'invalid_path');
    expect(reply.requestId).toBe('raw-trick');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      reason: 'invalid_path',
      caller: null,
      org: null,
      ruuid: null,
      action: null,
    });
  });

  it('forwards a plain raw target: the Node-shaped request is not refused for its shape', async () => {
    const gw = await world.app();
    const ruuid = world.standIn.addRun('Acme-Prod');
    const reply = await gw.sendRaw('POST', `${START}/Acme-Prod/${ruuid}`, [
      ['Authorization', `Bearer ${await world.signer.mint()}`],
      ['X-Request-Id', 'raw-plain'],
    ]);
    expect(reply.status, reply.text).toBe(200);
    expect(world.standIn.startCalls().at(-1)?.path).toBe(`${START}/Acme-Prod/${ruuid}`);
  });

  it.each(['GET', 'PUT', 'DELETE', 'PATCH'])(
    '%s on the start path → 405 method_not_allowed with Allow: POST',
    async (method) => {
      const gw = await world.app();
      const before = world.standIn.received.length;
      const reply = await gw.send(method, `${START}/Acme-Prod/${ruuid}`, { token: await world.signer.mint() });
      expectProblem(reply, 405, 'method_not_allowed');
      expect(reply.headers.get('allow')).toBe('POST');
      expect(world.standIn.received.length).toBe(before);
      expect(onlyDecision(gw.audit, reply)).toMatchObject({
        decision: 'invalid_request',
        reason: 'method_not_allowed',
        status: 405,
        caller: null,
        action: 'runtime.start',
      });
    },
  );

  it.each([
    ['GET', '/nope'],
    ['POST', '/'],
    ['POST', `/api/1/rest/public/runtimestop/Acme-Prod/${ruuid}`],
    ['GET', '/api/1/rest/public/Acme-Prod'],
    ['GET', '/api/1/rest/public/activities/Acme-Prod'],
  ])('%s %s → 404 not_found, the path not echoed', async (method, path) => {
    const gw = await world.app();
    const before = world.standIn.received.length;
    const reply = await gw.send(method, path, { token: await world.signer.mint() });
    expectProblem(reply, 404, 'not_found');
    if (path.length > 1) expect(reply.text).not.toContain(path);
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'invalid_request',
      reason: 'not_found',
      caller: null,
      org: null,
      action: null,
    });
  });
});

describe('a refused token (401)', () => {
  const cases: Array<[string, string, () => Record<string, string> | Promise<Record<string, string>>]> = [
    ['no Authorization header', 'token_missing', () => ({})],
    ['an empty Bearer', 'token_missing', () => ({ authorization: 'Bearer ' })],
    ['the Basic scheme (SnapLogic credentials)', 'token_missing', () => ({ authorization: basic })],
    ['another scheme', 'token_missing', async () => ({ authorization: `Token ${await world.signer.mint()}` })],
    ['not a compact JWT', 'token_malformed', () => bearer('not-a-jwt')],
    ['three segments of garbage', 'token_malformed', () => bearer('not.a.jwt')],
    ['an expired token', 'token_expired', async () => bearer(await world.signer.mint(BILLING, { expiresIn: -600 }))],
    [
      'a token not valid yet',
      'token_not_yet_valid',
      async () => bearer(await world.signer.mint(BILLING, { notBefore: 600 })),
    ],
    [
      'a wrong audience',
      'token_audience_invalid',
      async () => bearer(await world.signer.mint(BILLING, { aud: 'someone-else' })),
    ],
    [
      'an untrusted issuer',
      'token_issuer_untrusted',
      async () => bearer(await world.signer.mint(BILLING, { iss: 'https://evil.example' })),
    ],
    [
      'a signature by another key',
      'token_signature_invalid',
      async () => bearer(await world.signer.mint(BILLING, { unpublishedKey: true })),
    ],
    [
      'a kid nobody publishes',
      'token_key_unknown',
      async () => bearer(await world.signer.mint(BILLING, { kid: 'nobody-has-this' })),
    ],
    ['no exp claim', 'token_claim_invalid', async () => bearer(await world.signer.mint(BILLING, { expiresIn: null }))],
    ['no sub claim', 'token_claim_invalid', async () => bearer(await world.signer.mint({}))],
    ['alg none', 'token_algorithm_not_allowed', () => bearer(world.signer.unsigned())],
    ['HS256 against the public key', 'token_algorithm_not_allowed', async () => bearer(await world.signer.hs256())],
  ];

  it.each(cases)('%s → 401 %s with WWW-Authenticate, nothing forwarded', async (_name, code, headersOf) => {
    const gw = await world.app();
    const ruuid = world.standIn.addRun('Acme-Prod');
    const headers = await headersOf();
    const before = world.standIn.received.length;
    const reply = await gw.resume('Acme-Prod', ruuid, { headers });
    expectProblem(reply, 401, code);
    expect(reply.headers.get('www-authenticate')).toBe(
      `Bearer realm="snapgate", error="invalid_token", error_description="${code}"`,
    );
    expect(reply.json.type).toBe(`urn:snapgate:problem:${code}`);
    expect(reply.json.detail.length).toBeGreaterThan(20);
    const sent = headers.authorization?.split(' ')[1];
    if (sent) expect(reply.text).not.toContain(sent);
    expect(world.standIn.received.length).toBe(before);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'unauthenticated',
      reason: code,
      status: 401,
      caller: null,
      org: 'Acme-Prod',
      ruuid,
      action: 'runtime.start',
      rateLimit: null,
    });
  });

  it('names the allowed algorithms in the detail, never the one the unverified header claims', async () => {
    const gw = await world.app();
    for (const token of [await world.signer.hs256(), world.signer.unsigned()]) {
      const reply = await gw.resume('Acme-Prod', SOME_RUUID, { token });
      expectProblem(reply, 401, 'token_algorithm_not_allowed');
      expect(reply.json.detail).toContain('ES256');
      expect(reply.json.detail).not.toMatch(/HS256|none/);
    }
  });

  it('refuses Authorization sent twice (two header lines, as Node sees them) with token_malformed', async () => {
    const gw = await world.app();
    const before = world.standIn.received.length;
    const reply = await gw.sendRaw('POST', `/api/1/rest/public/runtime/start/Acme-Prod/${SOME_RUUID}`, [
      ['Authorization', `Bearer ${await world.signer.mint()}`],
      ['authorization', `Bearer ${await world.signer.mint(DATA_ENG)}`],
      ['X-Request-Id', 'two-authorizations'],
    ]);
    expectProblem(reply, 401, 'token_malformed');
    expect(reply.json.detail).toContain('exactly one Authorization');
    expect(reply.headers.get('www-authenticate')).toContain('error_description="token_malformed"');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'unauthenticated',
      reason: 'token_malformed',
      caller: null,
    });
  });

  it('refuses two tokens folded into one field (a WHATWG request joins repeats with a comma)', async () => {
    const gw = await world.app();
    const first = await world.signer.mint();
    const before = world.standIn.received.length;
    const reply = await gw.resume('Acme-Prod', SOME_RUUID, {
      headers: { authorization: `Bearer ${first}, Bearer ${await world.signer.mint()}` },
    });
    expect(reply.status, reply.text).toBe(401);
    expect(reply.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({ decision: 'unauthenticated', caller: null });
  });

  it('judges the path before the token: a bad path without a token is 400, not 401', async () => {
    const gw = await world.app();
    const reply = await gw.send('POST', '/api/1/rest/public/runtime/start/Acme-Prod/not-a-ruuid');
    expectProblem(reply, 400, 'invalid_path');
    expect(reply.headers.get('www-authenticate')).toBeNull();
  });

  it('accepts a token without a kid when the issuer does not require one (one published key)', async () => {
    const gw = await world.app();
    const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), {
      token: await world.signer.mint(BILLING, { kid: null }),
    });
    expect(reply.status, reply.text).toBe(200);
  });
});

describe('authorization (403)', () => {
  it('refuses a valid caller that no rule grants, forwarding nothing, naming the caller in the decision', async () => {
    const gw = await world.app();
    const ruuid = world.standIn.addRun('Acme-Prod');
    const before = world.standIn.received.length;
    const reply = await gw.resume('Acme-Prod', ruuid, { token: await world.signer.mint({ sub: 'svc-stranger' }) });
    expectProblem(reply, 403, 'forbidden');
    expect(reply.headers.get('www-authenticate')).toBeNull();
    expect(world.standIn.received.length).toBe(before);
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'forbidden',
      reason: 'forbidden',
      status: 403,
      ...onAcme(ruuid, 'svc-stranger'),
    });
    // Denials are bounded per caller: the recorder is told whose denial this is.
    expect(gw.audit.denialKeys.at(-1)).toBe('svc-stranger');
  });

  it('answers an org the caller may not use and an org that is not served with the same body', async () => {
    const gw = await world.app();
    const token = await world.signer.mint(BILLING);
    const before = world.standIn.received.length;
    const forbidden = await gw.resume('Other-Org', world.standIn.addRun('Other-Org'), { token, requestId: 'same' });
    const unknown = await gw.resume('No-Such-Org', SOME_RUUID, { token, requestId: 'same' });
    expectProblem(forbidden, 403, 'forbidden');
    expectProblem(unknown, 403, 'forbidden');
    expect(unknown.text).toBe(forbidden.text);
    expect([...unknown.headers]).toEqual([...forbidden.headers]);
    expect(unknown.text).not.toContain('No-Such-Org');
    expect(world.standIn.received.length).toBe(before);
    expect(gw.audit.decisions.map((e) => [e.reason, e.org, e.caller?.sub])).toEqual([
      ['forbidden', 'Other-Org', 'svc-billing'],
      ['forbidden', 'No-Such-Org', 'svc-billing'],
    ]);
  });

  it('treats org names as case-sensitive: acme-prod is not Acme-Prod', async () => {
    const gw = await world.app();
    const reply = await gw.resume('acme-prod', world.standIn.addRun('acme-prod'), { token: await world.signer.mint() });
    expectProblem(reply, 403, 'forbidden');
    expect(onlyDecision(gw.audit, reply).org).toBe('acme-prod');
  });

  it('grants by claims: a scope and group rule admits its caller on any served org', async () => {
    const gw = await world.app();
    const token = await world.signer.mint(DATA_ENG);
    const reply = await gw.resume('Other-Org', world.standIn.addRun('Other-Org'), { token });
    expect(reply.status, reply.text).toBe(200);
    // Only the scope, without the group: no rule matches.
    const partial = await world.signer.mint({ sub: 'svc-half', scope: 'snaplogic:runtime:start' });
    expectProblem(await gw.resume('Other-Org', SOME_RUUID, { token: partial }), 403, 'forbidden');
  });
});

describe('X-Request-Id', () => {
  it('keeps a plain caller id (letters, digits, ._:-, up to 128) in the answer, the call and the audit', async () => {
    const gw = await world.app();
    const id = `Job.42:run_7-${'a'.repeat(115)}`;
    expect(id).toHaveLength(128);
    const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), {
      token: await world.signer.mint(),
      requestId: id,
    });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.requestId).toBe(id);
    expect(world.standIn.startCalls().at(-1)?.headers['x-request-id']).toBe(id);
    expect(gw.audit.of(id).map((e) => e.type)).toEqual(['attempt', 'outcome']);
  });

  it.each([
    ['spaces', 'bad id with spaces'],
    ['markup', '<script>alert(1)</script>'],
    ['129 characters', 'a'.repeat(129)],
    ['a quote', 'id"; drop'],
    ['latin-1', 'caf\u00e9'],
    ['a comma list (a repeated header)', 'one, two'],
  ])('replaces one with %s by a fresh UUID everywhere', async (_what, hostile) => {
    const gw = await world.app();
    const reply = await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), {
      token: await world.signer.mint(),
      requestId: hostile,
    });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(world.standIn.startCalls().at(-1)?.headers['x-request-id']).toBe(reply.requestId);
    expect(gw.audit.of(reply.requestId).map((e) => e.type)).toEqual(['attempt', 'outcome']);
    expect(gw.audit.lines.join('\n')).not.toContain(hostile);
  });

  it('makes one for an error answer too, when the caller sends none', async () => {
    const gw = await world.app();
    const reply = await gw.send('GET', '/nope', { requestId: null });
    expectProblem(reply, 404, 'not_found');
    expect(onlyDecision(gw.audit, reply).requestId).toBe(reply.requestId);
  });
});

describe('draining', () => {
  it('refuses new work with 503 shutting_down, Retry-After and Connection: close, forwarding nothing', async () => {
    const gw = await world.app({ orgs: limited });
    const token = await world.signer.mint();
    const ruuid = world.standIn.addRun('Acme-Prod');
    const before = world.standIn.received.length;
    expect((await gw.send('GET', '/livez')).headers.get('connection')).toBeNull();

    gw.setDraining(true);
    const reply = await gw.resume('Acme-Prod', ruuid, { token });
    expectProblem(reply, 503, 'shutting_down');
    expect(reply.headers.get('retry-after')).toBe('1');
    expect(reply.headers.get('connection')).toBe('close');
    // Refused before the token is read: no quota taken, no RateLimit fields.
    expect(reply.headers.get('ratelimit')).toBeNull();
    expect(world.standIn.received.length).toBe(before);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    expect(onlyDecision(gw.audit, reply)).toMatchObject({
      decision: 'unavailable',
      reason: 'shutting_down',
      status: 503,
      caller: null,
    });
  });

  it('still answers the health paths, closing their connections, without auditing them', async () => {
    const gw = await world.app();
    gw.setDraining(true);
    const live = await gw.send('GET', '/livez');
    expect(live.status, live.text).toBe(200);
    expect(live.json).toEqual({ status: 'ok' });
    expect(live.headers.get('connection')).toBe('close');
    expect(live.requestId).toBe(live.sentRequestId);
    const ready = await gw.send('GET', '/readyz');
    expect(ready.status, ready.text).toBe(503);
    // The callers' port says ready or not, never which check failed.
    expect(ready.json).toEqual({ status: 'not_ready' });
    expect(ready.headers.get('connection')).toBe('close');
    expect(gw.audit.events).toEqual([]);
  });

  it('answers /readyz 200 while not draining', async () => {
    const gw = await world.app();
    const ready = await gw.send('GET', '/readyz');
    expect(ready.status, ready.text).toBe(200);
    expect(ready.json).toEqual({ status: 'ready' });
  });
});

describe('secrets', () => {
  it('leaves no org password, Basic value or caller token in any answer, header or audit event of this file', () => {
    expectNoSecrets();
  });
});

describe('the org label of the request metrics', () => {
  it('is the configured org a call names, and one fixed value for any other, so a caller cannot grow the series', async () => {
    const gw = await world.app();
    const token = await world.signer.mint();
    await gw.resume('Acme-Prod', world.standIn.addRun('Acme-Prod'), { token });
    for (const org of ['Nope-Org', 'Made-Up-1', 'Made-Up-2']) {
      expect((await gw.resume(org, SOME_RUUID, { token })).status).toBe(403);
    }
    expect((await gw.resume('Acme-Prod', SOME_RUUID)).status).toBe(401);
    const text = await gw.metrics.registry.getSingleMetricAsString('snapgate_requests_total');
    expect(text).toContain('snapgate_requests_total{decision="allowed",reason="none",org="Acme-Prod"} 1');
    expect(text).toContain('snapgate_requests_total{decision="forbidden",reason="forbidden",org="_other"} 3');
    expect(text).toContain(
      'snapgate_requests_total{decision="unauthenticated",reason="token_missing",org="Acme-Prod"} 1',
    );
    expect(text).not.toMatch(/Nope-Org|Made-Up/);
    const upstream = await gw.metrics.registry.getSingleMetricAsString('snapgate_upstream_duration_seconds');
    expect(upstream).toContain('snapgate_upstream_duration_seconds_count{status="200",org="Acme-Prod"} 1');
  });
});
