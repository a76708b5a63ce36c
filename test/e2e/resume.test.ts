// The request path end to end: real HTTP to snapgate, a real JWKS issuer, and the SnapLogic stand-in over loopback.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { baseConfig, startTestGateway, testSecrets, type TestGateway } from '../helpers/gateway.js';
import { basic, resume, resumeNewRun, send } from '../helpers/http.js';
import { newRuuid } from '../helpers/snaplogic-stand-in.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
let gw: TestGateway;
const tokensSeen: string[] = [];
const bodiesSeen: string[] = [];

async function token(claims: Record<string, unknown> = { sub: 'svc-billing' }, options = {}): Promise<string> {
  const t = await world.issuer.mint(claims, options);
  tokensSeen.push(t);
  return t;
}

beforeAll(async () => {
  gw = await startTestGateway(baseConfig(world.standIn, world.issuer));
});

afterEach(() => world.standIn.setFault(undefined));

afterAll(async () => {
  await gw.close();
});

describe('happy path', () => {
  it(
    'resumes a suspended run with exactly one upstream call ' +
      'carrying the org Basic credential and no trace of the token',
    async () => {
      const ruuid = world.standIn.addRun('Acme-Prod');
      const jwt = await token();
      const before = world.standIn.received.length;

      const res = await resume(gw.url, 'Acme-Prod', ruuid, jwt, {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        'x-request-id': 'caller-req-42',
        cookie: 'session=abc',
        'x-forwarded-for': '10.9.9.9',
        'content-type': 'application/json',
      });
      bodiesSeen.push(res.text);

      expect(res.status, res.text).toBe(200);
      expect(res.json).toEqual({ response_map: {}, http_status_code: 200 });
      expect(res.headers['x-sl-statuscode']).toBe('200');
      expect(res.headers['x-request-id']).toBe('caller-req-42');
      expect(res.headers['set-cookie']).toBeUndefined();

      const calls = world.standIn.received.slice(before);
      expect(calls).toHaveLength(1);
      const call = calls[0]!;
      expect(call.path).toBe(`/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}`);
      expect(call.headers.authorization).toBe(basic(testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD));
      expect(call.headers['x-request-id']).toBe('caller-req-42');
      expect(call.headers.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
      expect(call.headers.cookie).toBeUndefined();
      expect(call.headers['x-forwarded-for']).toBeUndefined();
      expect(JSON.stringify(call)).not.toContain(jwt);
      expect(JSON.stringify(call)).not.toContain(jwt.split('.')[2]);
      expect(world.standIn.run('Acme-Prod', ruuid)?.state).not.toBe('Suspended');

      const events = gw.audit.filter((e) => e.requestId === 'caller-req-42');
      expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
      const [attempt, outcome] = events;
      expect(attempt).toMatchObject({
        decision: 'allowed',
        org: 'Acme-Prod',
        ruuid,
        status: null,
        upstreamStatus: null,
      });
      expect(outcome).toMatchObject({
        attemptId: attempt!.id,
        decision: 'allowed',
        caller: { iss: world.issuer.issuer, sub: 'svc-billing' },
        org: 'Acme-Prod',
        ruuid,
        action: 'runtime.start',
        status: 200,
        upstreamStatus: 200,
        slStatusCode: '200',
        client: { address: '127.0.0.1' },
      });
    },
  );

  it('grants by claims: scope containing snaplogic:runtime:start and groups containing data-eng', async () => {
    const ruuid = world.standIn.addRun('Other-Org');
    const jwt = await token({ sub: 'alice', scope: 'openid snaplogic:runtime:start', groups: ['data-eng', 'staff'] });
    const res = await resume(gw.url, 'Other-Org', ruuid, jwt);
    expect(res.status, res.text).toBe(200);
    expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(
      basic(testSecrets.OTHER_SL_USER, testSecrets.OTHER_SL_PASSWORD),
    );
  });

  it('makes a new request id when the caller sends none or an unsafe one', async () => {
    const ruuid = world.standIn.addRun('Acme-Prod');
    const res = await resume(gw.url, 'Acme-Prod', ruuid, await token(), { 'x-request-id': 'bad id with spaces' });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(world.standIn.startCalls().at(-1)?.headers['x-request-id']).toBe(res.headers['x-request-id']);
  });

  it('passes SnapLogic errors through unchanged (status, body, X-SL-StatusCode)', async () => {
    const ruuid = world.standIn.addRun('Acme-Prod', 'Completed');
    const res = await resume(gw.url, 'Acme-Prod', ruuid, await token());
    expect(res.status).toBe(409);
    expect(res.headers['x-sl-statuscode']).toBe('409');
    expect(res.json.response_map.error_list[0].message).toContain('not Suspended');

    const unknown = await resume(gw.url, 'Acme-Prod', newRuuid(), await token());
    expect(unknown.status).toBe(404);
    expect(unknown.json.http_status_code).toBe(404);
  });
});

describe('authentication (401)', () => {
  const cases: Array<[string, string, () => Record<string, string> | Promise<Record<string, string>>]> = [
    ['missing token', 'token_missing', () => ({})],
    ['Basic instead of Bearer', 'token_missing', () => ({ authorization: basic('a', 'b') })],
    ['malformed token', 'token_malformed', () => ({ authorization: 'Bearer not.a.jwt' })],
    ['garbage token', 'token_malformed', () => ({ authorization: 'Bearer abc' })],
    [
      'expired token',
      'token_expired',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing' }, { expiresIn: -600 })}` }),
    ],
    [
      'token not yet valid',
      'token_not_yet_valid',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing' }, { notBefore: 600 })}` }),
    ],
    [
      'wrong signature',
      'token_signature_invalid',
      async () => ({
        authorization: `Bearer ${await token({ sub: 'svc-billing' }, { forgeWithUnpublishedKey: true })}`,
      }),
    ],
    [
      'wrong audience',
      'token_audience_invalid',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing', aud: 'someone-else' })}` }),
    ],
    [
      'untrusted issuer',
      'token_issuer_untrusted',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing' }, { iss: 'https://evil.example' })}` }),
    ],
    [
      'no exp claim',
      'token_claim_invalid',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing' }, { expiresIn: null })}` }),
    ],
    ['no sub claim', 'token_claim_invalid', async () => ({ authorization: `Bearer ${await token({})}` })],
    [
      'unknown kid',
      'token_key_unknown',
      async () => ({ authorization: `Bearer ${await token({ sub: 'svc-billing' }, { kid: 'nobody-has-this' })}` }),
    ],
    [
      'HS256 token for an ES256 issuer (algorithm confusion)',
      'token_algorithm_not_allowed',
      async () => {
        const forged = await new SignJWT({ sub: 'svc-billing', aud: 'snapgate' })
          .setProtectedHeader({ alg: 'HS256', kid: world.issuer.currentKid })
          .setIssuer(world.issuer.issuer)
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode('guessable'));
        return { authorization: `Bearer ${forged}` };
      },
    ],
    [
      'alg none',
      'token_algorithm_not_allowed',
      () => {
        const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const exp = Math.floor(Date.now() / 1000) + 300;
        const iss = world.issuer.issuer;
        return {
          authorization: `Bearer ${enc({ alg: 'none' })}.${enc({ sub: 'svc-billing', aud: 'snapgate', iss, exp })}.`,
        };
      },
    ],
  ];

  it.each(cases)('%s → 401 %s with WWW-Authenticate and nothing forwarded', async (_name, code, headers) => {
    const ruuid = world.standIn.addRun('Acme-Prod');
    const h = await headers();
    const before = world.standIn.received.length;
    const res = await resume(gw.url, 'Acme-Prod', ruuid, undefined, h);
    bodiesSeen.push(res.text);
    expect(res.status, res.text).toBe(401);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['www-authenticate']).toContain('Bearer');
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(res.json.code).toBe(code);
    expect(res.json.status).toBe(401);
    expect(res.json.detail.length).toBeGreaterThan(20);
    const sentToken = h.authorization?.split(' ')[1];
    if (sentToken) expect(res.text).not.toContain(sentToken);
    expect(world.standIn.received.length).toBe(before);
    expect(world.standIn.run('Acme-Prod', ruuid)?.state).toBe('Suspended');
    const event = gw.audit.at(-1)!;
    expect(event).toMatchObject({ decision: 'unauthenticated', reason: code, org: 'Acme-Prod', ruuid });
  });

  it('accepts a token signed with a rotated key (new kid) without a restart', async () => {
    const first = await resumeNewRun(gw.url, world.standIn, await token());
    expect(first.status).toBe(200);
    await world.issuer.rotate({ dropOld: true });
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    expect(res.status, res.text).toBe(200);
  });
});

describe('authorization (403)', () => {
  it('answers a forbidden org and an unknown org with identical bodies, forwarding nothing', async () => {
    const jwt = await token({ sub: 'svc-billing' });
    const before = world.standIn.received.length;
    const forbidden = await resumeNewRun(gw.url, world.standIn, jwt, { org: 'Other-Org' });
    const unknown = await resume(gw.url, 'No-Such-Org', newRuuid(), jwt);
    expect(forbidden.status).toBe(403);
    expect(unknown.status).toBe(403);
    expect(forbidden.headers['content-type']).toBe('application/problem+json');
    expect(unknown.text).toBe(forbidden.text);
    expect(forbidden.json.code).toBe('forbidden');
    expect(world.standIn.received.length).toBe(before);
    expect(gw.audit.at(-1)).toMatchObject({
      decision: 'forbidden',
      org: 'No-Such-Org',
      caller: { sub: 'svc-billing' },
    });
  });

  it('denies by default: a valid token with no matching rule is 403', async () => {
    const res = await resumeNewRun(gw.url, world.standIn, await token({ sub: 'svc-unknown', scope: 'openid' }));
    expect(res.status).toBe(403);
  });

  it('treats org names as case-sensitive', async () => {
    const res = await resumeNewRun(gw.url, world.standIn, await token(), { org: 'acme-prod' });
    expect(res.status).toBe(403);
  });

  it('requires every claim of a rule: scope alone without the group is 403', async () => {
    const res = await resumeNewRun(
      gw.url,
      world.standIn,
      await token({ sub: 'bob', scope: 'snaplogic:runtime:start' }),
      { org: 'Other-Org' },
    );
    expect(res.status).toBe(403);
  });
});

describe('path validation (400) and routing (404/405)', () => {
  const ruuid = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';
  const attacks = [
    `/api/1/rest/public/runtime/start/Acme-Prod/..`,
    `/api/1/rest/public/runtime/start/../start/Acme-Prod/${ruuid}`,
    `/api/1/rest/public/runtime/start/Other-Org/../Acme-Prod/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme-Prod/%2e%2e`,
    `/api/1/rest/public/runtime/start/Acme-Prod%2F..%2Fstop/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}%2F..%2F..`,
    `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}/extra`,
    `/api/1/rest/public/runtime/start/Acme-Prod`,
    `/api/1/rest/public/runtime/start/Acme%00Prod/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme%0AProd/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme%5CProd/${ruuid}`,
    `/api/1/rest/public/runtime/start/${'A'.repeat(101)}/${ruuid}`,
    `/api/1/rest/public/runtime/start/${'A'.repeat(3000)}/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme-Prod/not-a-ruuid`,
    `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}x`,
    `/api/1/rest/public/runtime/start/Acme Prod/${ruuid}`.replace(' ', '%20'),
    `/api/1/rest/public/runtime/start//Acme-Prod/${ruuid}`,
    `/api/1/rest/public/runtime/start/Acme..Prod/${ruuid}`,
  ];

  it.each(attacks)('POST %s → 400 invalid_path, zero upstream calls', async (path) => {
    const before = world.standIn.received.length;
    const res = await send(gw.url, 'POST', path, { headers: { authorization: `Bearer ${await token()}` } });
    bodiesSeen.push(res.text);
    expect(res.status, res.text).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.json.code).toBe('invalid_path');
    expect(world.standIn.received.length).toBe(before);
  });

  it('validates the path before authentication: a bad path without a token is 400, not 401', async () => {
    const res = await send(gw.url, 'POST', '/api/1/rest/public/runtime/start/Acme-Prod/..');
    expect(res.status).toBe(400);
  });

  it('answers unknown paths with problem+json 404 and other methods with 405 + Allow', async () => {
    const notFound = await send(gw.url, 'GET', '/nope');
    expect(notFound.status).toBe(404);
    expect(notFound.headers['content-type']).toBe('application/problem+json');
    expect(notFound.json.code).toBe('not_found');

    // Served now, but not granted to this caller (its rule grants runtime.start only): deny by default.
    const stop = await send(gw.url, 'POST', `/api/1/rest/public/runtime/stop/Acme-Prod/${ruuid}`, {
      headers: { authorization: `Bearer ${await token()}` },
    });
    expect(stop.status).toBe(403);
    expect(stop.json.code).toBe('forbidden');

    const get = await send(gw.url, 'GET', `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}`);
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect(get.json.code).toBe('method_not_allowed');
  });

  it('refuses a request body over the configured size with 413, forwarding nothing', async () => {
    const before = world.standIn.received.length;
    const res = await send(
      gw.url,
      'POST',
      `/api/1/rest/public/runtime/start/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`,
      {
        headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/json' },
        body: 'x'.repeat(70_000),
      },
    );
    expect(res.status).toBe(413);
    expect(res.json.code).toBe('payload_too_large');
    expect(world.standIn.received.length).toBe(before);
  });
});

describe('upstream failures', () => {
  it('turns SnapLogic rejecting the stored credentials (401) into 502 upstream_credentials_rejected', async () => {
    world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    bodiesSeen.push(res.text);
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_credentials_rejected');
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(gw.audit.at(-1)).toMatchObject({
      decision: 'upstream_error',
      reason: 'upstream_credentials_rejected',
      upstreamStatus: 401,
    });
    expect(gw.logs.some((l) => l.msg === 'SnapLogic rejected the stored credentials; rotate the org secret')).toBe(
      true,
    );
  });

  it('turns a 403 from SnapLogic (Basic disabled) into 502 upstream_credentials_rejected', async () => {
    world.standIn.setFault({ kind: 'status', status: 403, count: 1 });
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_credentials_rejected');
  });

  it('answers 504 within the configured headers timeout when SnapLogic hangs, and does not retry', async () => {
    world.standIn.setFault({ kind: 'hang' });
    const before = world.standIn.received.length;
    const started = Date.now();
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    const elapsed = Date.now() - started;
    expect(res.status).toBe(504);
    expect(res.json.code).toBe('upstream_timeout');
    expect(elapsed).toBeGreaterThanOrEqual(1_900);
    expect(elapsed).toBeLessThan(4_000);
    expect(world.standIn.received.length - before).toBe(1);
  });

  it('answers 502 upstream_unreachable on a connection reset, sending the POST once', async () => {
    world.standIn.setFault({ kind: 'reset', count: 1 });
    const before = world.standIn.received.length;
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    expect(res.status).toBe(502);
    expect(res.json.code).toBe('upstream_unreachable');
    expect(world.standIn.received.length - before).toBe(1);
  });

  it('passes a response up to upstream.maxResponseBytes whole, and answers 502 for a larger one', async () => {
    const config = baseConfig(world.standIn, world.issuer);
    const small = await startTestGateway({
      ...config,
      upstream: { ...(config.upstream as object), maxResponseBytes: 4096 },
    });
    try {
      world.standIn.setFault({ kind: 'large', bytes: 4096, count: 1 });
      const fits = await resumeNewRun(small.url, world.standIn, await token());
      expect(fits.status, fits.text).toBe(200);
      expect(fits.text).toHaveLength(4096);
      expect((fits.json as { padding: string }).padding).toBe('x'.repeat(4096 - 14));

      world.standIn.setFault({ kind: 'large', bytes: 4097, count: 1 });
      const tooLarge = await resumeNewRun(small.url, world.standIn, await token());
      expect(tooLarge.status).toBe(502);
      expect(tooLarge.headers['content-type']).toBe('application/problem+json');
      expect(tooLarge.json.code).toBe('upstream_response_too_large');
      expect(tooLarge.text).not.toContain('xxxx');
    } finally {
      await small.close();
    }
  });

  it('passes SnapLogic 5xx and non-JSON answers through with their status', async () => {
    world.standIn.setFault({ kind: 'status', status: 503, count: 1, retryAfter: 7 });
    const res = await resumeNewRun(gw.url, world.standIn, await token());
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    world.standIn.setFault({ kind: 'non-json', count: 1 });
    const html = await resumeNewRun(gw.url, world.standIn, await token());
    expect(html.status).toBe(502);
    expect(html.text).toContain('Bad gateway');
  });
});

describe('operations', () => {
  it('serves /livez and /readyz', async () => {
    expect((await send(gw.url, 'GET', '/livez')).status).toBe(200);
    const ready = await send(gw.url, 'GET', '/readyz');
    expect(ready.status, ready.text).toBe(200);
    // The callers' port says ready or not; the checks are on the admin listener.
    expect(ready.json).toEqual({ status: 'ready' });
  });
});

describe('secrets', () => {
  it('never writes a token or a SnapLogic credential to a log line, an audit event or an error body', () => {
    const everything = [...gw.logLines, ...gw.auditLines, ...bodiesSeen].join('\n');
    expect(gw.auditLines.length).toBeGreaterThan(10);
    const secrets = [
      testSecrets.ACME_SL_PASSWORD,
      testSecrets.OTHER_SL_PASSWORD,
      Buffer.from(`${testSecrets.ACME_SL_USER}:${testSecrets.ACME_SL_PASSWORD}`).toString('base64'),
    ];
    for (const s of secrets) expect(everything).not.toContain(s);
    for (const t of tokensSeen) {
      expect(everything).not.toContain(t);
      expect(everything).not.toContain(t.split('.')[2]);
    }
  });
});
