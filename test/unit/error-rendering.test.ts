// The raw path guard and error rendering in a small Hono app through app.request(): every refusal is problem+json with
// its stable code and status, never echoes the caller's path or an internal message, and 401s carry WWW-Authenticate.
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { GatewayError, kindOf, problemTypeFor, statusFor, titleFor, type ErrorCode } from '../../src/errors.js';
import type { AppEnv } from '../../src/http/app-env.js';
import { handleError } from '../../src/http/error-handler.js';
import { PROBLEM_CONTENT_TYPE, problemBody, problemResponse } from '../../src/http/problem.js';
import { rawPathGuard } from '../../src/http/raw-path-guard.js';
import { createLogger } from '../../src/log.js';

const START = '/api/1/rest/public/runtime/start';
const RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';

/**
 * The guard and the error handler around two routes: the start route answers 200, and /throw/:code throws the
 * GatewayError it names (or, for `plain`, an Error carrying an internal message).
 */
function testApp() {
  const logs: Record<string, unknown>[] = [];
  const app = new Hono<AppEnv>();
  app.use(async function requestContext(c, next) {
    c.set('requestId', 'rid-test-1');
    c.set('responseHeaders', { 'x-request-id': 'rid-test-1' });
    await next();
  });
  app.use(rawPathGuard());
  app.onError(
    handleError(
      createLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line) as Record<string, unknown>) }),
    ),
  );
  app.post(`${START}/:org/:ruuid`, (c) => c.json({ forwarded: c.req.param('org') }));
  app.get('/throw/:code', (c) => {
    const code = c.req.param('code');
    if (code === 'plain') throw new Error('ECONNREFUSED 10.1.2.3:6379 at /srv/snapgate/secret-path');
    throw new GatewayError(code as ErrorCode, `detail for ${code}`, {
      headers: code === 'upstream_busy' ? { 'retry-after': '1' } : {},
      extensions: code === 'quota_exceeded' ? { 'violated-policies': ['org-rate'] } : {},
      cause: new Error('the cause, for logs only'),
    });
  });
  return { app, logs };
}

/**
 * Sends `target` as @hono/node-server does: the URL parsed (so dot segments are already folded there, and a folded
 * `..` would reach the route) and the raw request target in env.incoming.url.
 */
function sendRaw(app: Hono<AppEnv>, target: string, method = 'POST'): Promise<Response> {
  return Promise.resolve(app.request(`http://localhost${target}`, { method }, { incoming: { url: target } }));
}

async function problem(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toBe(PROBLEM_CONTENT_TYPE);
  return (await res.json()) as Record<string, unknown>;
}

describe('raw path guard', () => {
  const refused: Array<[string, string]> = [
    ['a dot-dot segment', `${START}/Other-Org/../Acme-Prod/${RUUID}`],
    ['a dot segment', `${START}/./Acme-Prod/${RUUID}`],
    ['an encoded dot-dot', `${START}/Other-Org/%2e%2E/Acme-Prod/${RUUID}`],
    ['an encoded slash', `${START}/Acme-Prod%2F..%2FOther-Org/${RUUID}`],
    ['an encoded backslash', `${START}/Acme-Prod%5c${RUUID}`],
    ['a raw backslash', `${START}/Acme-Prod\\${RUUID}`],
    ['an encoded control character', `${START}/Acme-Prod%0a/${RUUID}`],
    ['an encoded DEL', `${START}/Acme-Prod%7F/${RUUID}`],
    ['an empty segment', `${START}//Acme-Prod/${RUUID}`],
    ['a trailing dot-dot', `${START}/Acme-Prod/${RUUID}/..`],
    ['a target over 2048 characters', `${START}/Acme-Prod/${RUUID}?pad=${'a'.repeat(2_100)}`],
  ];
  it.each(refused)('refuses %s: 400 invalid_path problem+json that does not echo the path', async (_label, target) => {
    const { app } = testApp();
    const res = await sendRaw(app, target);
    expect(res.status).toBe(400);
    const body = await problem(res);
    expect(body).toMatchObject({
      type: 'urn:snapgate:problem:invalid_path',
      title: 'Invalid request path',
      status: 400,
      code: 'invalid_path',
    });
    expect(String(body.detail)).toContain('/api/1/rest/public/runtime/start/{org}/{ruuid}');
    const text = JSON.stringify(body);
    expect(text).not.toContain('Acme-Prod');
    expect(text).not.toContain(RUUID);
    expect(res.headers.get('x-request-id')).toBe('rid-test-1');
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('lets a plain start path through, and a query string is not judged as part of the path', async () => {
    const { app } = testApp();
    const plain = await sendRaw(app, `${START}/Acme-Prod/${RUUID}`);
    expect(plain.status, await plain.clone().text()).toBe(200);
    expect(await plain.json()).toEqual({ forwarded: 'Acme-Prod' });
    const withQuery = await sendRaw(app, `${START}/Acme-Prod/${RUUID}?next=../x%2F`);
    expect(withQuery.status).toBe(200);
  });

  it('without the raw target, judges the URL it was given (encoded separators survive URL parsing)', async () => {
    const { app } = testApp();
    const res = await app.request(`${START}/Acme-Prod%2F..%2FOther-Org/${RUUID}`, { method: 'POST' });
    expect(res.status).toBe(400);
    expect((await problem(res)).code).toBe('invalid_path');
  });
});

describe('the error handler', () => {
  const cases: Array<[ErrorCode, number]> = [
    ['forbidden', 403],
    ['not_found', 404],
    ['payload_too_large', 413],
    ['quota_exceeded', 429],
    ['client_closed_request', 499],
    ['upstream_unreachable', 502],
    ['upstream_busy', 503],
    ['upstream_timeout', 504],
  ];
  it.each(cases)('renders %s as %i problem+json with its code, title, type and detail', async (code, status) => {
    const { app } = testApp();
    const res = await app.request(`/throw/${code}`);
    expect(res.status).toBe(status);
    const body = await problem(res);
    expect(body).toMatchObject({ type: problemTypeFor(code), title: titleFor(code), status, code });
    expect(body.detail).toBe(`detail for ${code}`);
    expect(JSON.stringify(body)).not.toContain('the cause, for logs only');
    expect(res.headers.get('x-request-id')).toBe('rid-test-1');
    expect(res.headers.get('www-authenticate')).toBeNull();
  });

  it('adds RFC 6750 WWW-Authenticate to every 401, naming the code', async () => {
    const { app } = testApp();
    for (const code of ['token_missing', 'token_expired', 'token_algorithm_not_allowed'] as const) {
      const res = await app.request(`/throw/${code}`);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(
        `Bearer realm="snapgate", error="invalid_token", error_description="${code}"`,
      );
      expect((await problem(res)).code).toBe(code);
    }
  });

  it("keeps the error's own headers and extensions: Retry-After, violated-policies", async () => {
    const { app } = testApp();
    const busy = await app.request('/throw/upstream_busy');
    expect(busy.headers.get('retry-after')).toBe('1');
    const quota = await problem(await app.request('/throw/quota_exceeded'));
    expect(quota['violated-policies']).toEqual(['org-rate']);
    expect(quota.type).toBe('https://iana.org/assignments/http-problem-types#quota-exceeded');
  });

  it('answers anything else with a generic 500 internal_error that never echoes the message, and logs it', async () => {
    const { app, logs } = testApp();
    const res = await app.request('/throw/plain');
    expect(res.status).toBe(500);
    const body = await problem(res);
    expect(body).toMatchObject({ code: 'internal_error', status: 500, type: 'urn:snapgate:problem:internal_error' });
    const text = JSON.stringify(body);
    for (const leak of ['ECONNREFUSED', '10.1.2.3', 'secret-path']) expect(text).not.toContain(leak);
    expect(String(body.detail)).toContain('X-Request-Id');
    expect(logs).toEqual([
      expect.objectContaining({ level: 'error', msg: 'unhandled error', requestId: 'rid-test-1' }),
    ]);
  });

  it('logs a 5xx GatewayError with its cause, and a 4xx not at all', async () => {
    const { app, logs } = testApp();
    await app.request('/throw/forbidden');
    expect(logs).toEqual([]);
    await app.request('/throw/upstream_timeout');
    expect(logs).toEqual([
      expect.objectContaining({
        level: 'warn',
        msg: 'request failed',
        code: 'upstream_timeout',
        requestId: 'rid-test-1',
      }),
    ]);
    expect(JSON.stringify(logs[0])).toContain('the cause, for logs only');
  });
});

describe('problem+json outside a request and the error catalog', () => {
  it('problemResponse builds the same body and headers, without touching the headers it was given', async () => {
    const given = { 'retry-after': '1' };
    const res = problemResponse('malformed_request', 'Send valid HTTP/1.1.', { headers: given });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe(PROBLEM_CONTENT_TYPE);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('retry-after')).toBe('1');
    expect(given).toEqual({ 'retry-after': '1' });
    expect(await res.json()).toEqual(problemBody('malformed_request', 'Send valid HTTP/1.1.'));
  });

  it('maps codes to their documented statuses, kinds and problem types', () => {
    const table: Array<[ErrorCode, number, string]> = [
      ['invalid_path', 400, 'invalid_request'],
      ['request_headers_too_large', 431, 'invalid_request'],
      ['request_body_timeout', 408, 'invalid_request'],
      ['request_body_aborted', 400, 'aborted'],
      ['token_key_unknown', 401, 'unauthenticated'],
      ['jwks_unavailable', 503, 'unavailable'],
      ['quota_exceeded', 429, 'rate_limited'],
      ['temporary_reduced_capacity', 503, 'unavailable'],
      ['upstream_credentials_rejected', 502, 'upstream_error'],
      ['upstream_response_too_large', 502, 'upstream_error'],
      ['aborted_by_shutdown', 503, 'aborted'],
      ['shutting_down', 503, 'unavailable'],
      ['audit_unavailable', 503, 'unavailable'],
      ['internal_error', 500, 'error'],
    ];
    expect(table.map(([code]) => [code, statusFor(code), kindOf(code)])).toEqual(
      table.map(([code, status, kind]) => [code, status, kind]),
    );
    expect(problemTypeFor('temporary_reduced_capacity')).toBe(
      'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
    );
    expect(problemTypeFor('forbidden')).toBe('urn:snapgate:problem:forbidden');
  });

  it('a GatewayError carries its code, status and cause; its message names the code', () => {
    const cause = new Error('socket hang up');
    const err = new GatewayError('upstream_unreachable', 'SnapLogic could not be reached.', { cause });
    expect([err.code, err.status, err.cause, err.name]).toEqual(['upstream_unreachable', 502, cause, 'GatewayError']);
    expect(err.message).toBe('upstream_unreachable: SnapLogic could not be reached.');
    expect(err.headers).toEqual({});
  });
});
