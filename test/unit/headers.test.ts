import { describe, expect, it } from 'vitest';
import { acceptableRequestId } from '../../src/http/request-id.js';
import { hostileHeaders } from '../helpers/hostile-headers.js';
import { callerResponseHeaders, upstreamRequestHeaders } from '../../src/upstream/headers.js';
import { isValidOrg, isValidRuuid } from '../../src/snaplogic/names.js';

describe('upstream request headers', () => {
  it('drops credentials, cookies, hop-by-hop and X-Forwarded-* fields, and sets Basic last', () => {
    const incoming = new Headers({
      authorization: 'Bearer caller.jwt.token',
      'proxy-authorization': 'Basic x',
      cookie: 'a=b',
      connection: 'keep-alive, x-secret-hop',
      'x-secret-hop': '1',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      te: 'trailers',
      'x-forwarded-for': '1.2.3.4',
      'x-forwarded-host': 'evil',
      forwarded: 'for=1.2.3.4',
      host: 'gateway.internal',
      'content-type': 'application/json',
      traceparent: '00-abc-def-01',
      'x-request-id': 'from-caller',
    });
    const out = upstreamRequestHeaders(incoming.entries(), { authorization: 'Basic c3ZjOnB3', requestId: 'rid-1' });
    expect(out).toEqual({
      'content-type': 'application/json',
      traceparent: '00-abc-def-01',
      'x-request-id': 'rid-1',
      authorization: 'Basic c3ZjOnB3',
    });
  });
});

describe('caller response headers', () => {
  it('passes content type, X-SL-* and Retry-After; never Set-Cookie or hop-by-hop fields', () => {
    const out = callerResponseHeaders({
      'content-type': 'application/json',
      'x-sl-statuscode': '200',
      'x-sl-assetpath': '/org/projects/p',
      'retry-after': '3',
      'set-cookie': ['SLSESSION=1'],
      connection: 'keep-alive',
      server: 'nginx',
    });
    expect(out).toEqual({
      'content-type': 'application/json',
      'x-sl-statuscode': '200',
      'x-sl-assetpath': '/org/projects/p',
      'retry-after': '3',
    });
  });
});

describe('names', () => {
  it.each(['Acme-Prod', 'My-Dev-Env', 'org_1', 'a.b', 'X'])('accepts org %s', (org) =>
    expect(isValidOrg(org)).toBe(true),
  );
  it.each(['', '..', '.hidden', 'a..b', 'a/b', 'a%2Fb', 'a b', 'a\u0000', 'A'.repeat(101)])('refuses org %j', (org) =>
    expect(isValidOrg(org)).toBe(false),
  );
  it('checks ruuid shape', () => {
    expect(isValidRuuid('52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5')).toBe(true);
    expect(isValidRuuid('52e99318640a9a03d8681d0d-e74cbd53-806e-464a-8190-52226c49bff5')).toBe(false);
    expect(isValidRuuid('e74cbd53-806e-464a-8190-52226c49bff5')).toBe(false);
  });
  it('keeps a plain request id and refuses others', () => {
    expect(acceptableRequestId('abc-123:x.y_z')).toBe('abc-123:x.y_z');
    expect(acceptableRequestId('has space')).toBeUndefined();
    expect(acceptableRequestId('x'.repeat(129))).toBeUndefined();
    expect(acceptableRequestId('')).toBeUndefined();
  });
});

describe('upstream request headers are an allow-list', () => {
  it('forwards only content-type, accept, user-agent and trace context; drops override, rewrite, impersonation', () => {
    // The shared list, plus hop-by-hop fields the allow-list drops too.
    const hostile: Record<string, string> = { ...hostileHeaders, 'accept-encoding': 'gzip', 'content-length': '0' };
    const out = upstreamRequestHeaders(
      Object.entries({ ...hostile, Accept: 'application/json', 'User-Agent': 'job/1', tracestate: 'a=b' }),
      { authorization: 'Basic c3ZjOnB3', requestId: 'rid-2' },
    );
    expect(out).toEqual({
      accept: 'application/json',
      'user-agent': 'job/1',
      tracestate: 'a=b',
      'x-request-id': 'rid-2',
      authorization: 'Basic c3ZjOnB3',
    });
  });
});
