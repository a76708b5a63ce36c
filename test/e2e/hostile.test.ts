// A hostile-input corpus through the real gateway over real sockets: malformed and abusive headers, paths, tokens,
// bodies and sockets.
import { createPublicKey, randomBytes, type JsonWebKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SignJWT, type JWK } from 'jose';
import { statusFor, type ErrorCode } from '../../src/errors.js';
import { baseConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { resume } from '../helpers/http.js';
import { rawExchange, rawRequest, type RawResult, type RawStep } from '../helpers/raw-http.js';
import { newRuuid } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const START = '/api/1/rest/public/runtime/start';
const MAX_BODY = 65_536;
/** Our own deadline for an exchange that should be answered at once, ms. */
const QUICK_MS = 3_000;
/** Our own deadline for exchanges that wait on the gateway's header or body deadlines (1 s each here), ms. */
const SLOW_MS = 5_000;

type Category = 'headers' | 'paths' | 'tokens' | 'bodies' | 'sockets';

interface Case {
  name: string;
  category: Category;
  steps: RawStep[];
  /** Acceptable codes; any catalog code with a 4xx status when omitted. */
  codes?: readonly ErrorCode[];
  /** A closed socket without an answer is acceptable (the caller hung up, or the request is not HTTP/1.1). */
  mayClose?: boolean;
  /** Final answers expected on this connection (pipelined requests). */
  responses?: number;
  /** Answers carry no body (HEAD). */
  noBody?: boolean;
  timeoutMs?: number;
  /** Text that must never appear in an answer (the token sent, an unverified header value). */
  mustNotEcho?: readonly string[];
  /** The ruuid in its target, to attribute anything that reaches the stand-in. */
  ruuid?: string;
}

const world = useStandInAndIssuer();
let gw: TestGateway;
const corpus: Case[] = [];
const results = new Map<string, RawResult>();
let upstreamCallsDuringCorpus: { path: string; case: string }[] = [];
const consoleErrors: string[] = [];

const b64 = (o: unknown): string => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
const nowSec = (): number => Math.floor(Date.now() / 1000);

/** Adds cases whose names are unique (vitest reports them one by one). */
function add(c: Case): void {
  if (corpus.some((x) => x.name === c.name)) throw new Error(`duplicate case name: ${c.name}`);
  corpus.push(c);
}

async function buildCorpus(port: number): Promise<void> {
  const host = ['host', `127.0.0.1:${port}`] as const;
  const valid = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 3600 });
  let seq = 0;
  const rid = (): readonly [string, string] => ['x-request-id', `hostile-${++seq}`];
  /** A request with the usual Host and a per-case request id, and the given headers. */
  const request = (parts: {
    method?: string;
    target: string;
    version?: string;
    headers?: ReadonlyArray<readonly [string, string]>;
    body?: string | Buffer;
    noHost?: boolean;
  }): Buffer =>
    rawRequest({ ...parts, headers: [...(parts.noHost === true ? [] : [host]), rid(), ...(parts.headers ?? [])] });
  const once = (bytes: Buffer | string): RawStep[] => [{ write: bytes }];
  const acme = (): { ruuid: string; target: string } => {
    const ruuid = newRuuid();
    return { ruuid, target: `${START}/Acme-Prod/${ruuid}` };
  };
  const other = (): { ruuid: string; target: string } => {
    const ruuid = newRuuid();
    return { ruuid, target: `${START}/Other-Org/${ruuid}` };
  };

  // ---------------------------------------------------------------- headers
  // Each hostile header goes out three ways, none of which may be forwarded: without a token (401),
  // with a junk token (401), and with a valid token for an org the caller may not use (403).
  // `parser` is the answer when the header itself makes the request unacceptable before the app runs.
  const hostileHeaders: Array<{
    label: string;
    lines: string[];
    parser?: readonly ErrorCode[];
    noHost?: boolean;
    responses?: number;
    mayClose?: boolean;
  }> = [
    { label: 'X-HTTP-Method-Override: DELETE', lines: ['X-HTTP-Method-Override: DELETE'] },
    { label: 'X-HTTP-Method: GET', lines: ['X-HTTP-Method: GET'] },
    { label: 'X-Method-Override: PUT', lines: ['X-Method-Override: PUT'] },
    {
      label: 'X-Original-URL to a stop path',
      lines: [`X-Original-URL: /api/1/rest/public/runtime/stop/Acme-Prod/${newRuuid()}`],
    },
    {
      label: 'X-Rewrite-URL to a stop path',
      lines: [`X-Rewrite-URL: /api/1/rest/public/runtime/stop/Acme-Prod/${newRuuid()}`],
    },
    { label: 'X-Forwarded-Host: evil.example', lines: ['X-Forwarded-Host: evil.example'] },
    { label: 'X-Forwarded-For spoofing', lines: ['X-Forwarded-For: 10.0.0.1, 127.0.0.1'] },
    { label: 'Forwarded: host=evil', lines: ['Forwarded: for=127.0.0.1;host=evil.example;proto=https'] },
    { label: 'X-Forwarded-Prefix with dot segments', lines: ['X-Forwarded-Prefix: /../../runtime/stop'] },
    { label: 'X-SL-Impersonate', lines: ['X-SL-Impersonate: admin@snaplogic.com'] },
    { label: 'X-SnapLogic-User', lines: ['X-SnapLogic-User: admin@snaplogic.com'] },
    { label: 'True-Client-IP', lines: ['True-Client-IP: 10.1.2.3'] },
    { label: 'Origin: evil', lines: ['Origin: https://evil.example'] },
    { label: 'Cookie with a session', lines: ['Cookie: SLSESSION=stolen; JSESSIONID=x'] },
    { label: 'Proxy-Authorization', lines: ['Proxy-Authorization: Basic YWRtaW46YWRtaW4='] },
    { label: 'X-Request-Id with markup', lines: ['X-Request-Id: <script>alert(1)</script>'] },
    { label: 'X-Request-Id of 4000 bytes', lines: [`X-Request-Id: ${'r'.repeat(4000)}`] },
    { label: 'traceparent garbage', lines: ['traceparent: ../../etc/passwd'] },
    { label: 'traceparent of 8 KiB', lines: [`traceparent: 00-${'f'.repeat(8192)}-01`] },
    { label: 'Content-Type utf-7', lines: ['Content-Type: application/json; charset=utf-7'] },
    { label: 'Accept with absurd q', lines: ['Accept: */*;q=1e999, text/html;q=-1'] },
    { label: 'User-Agent of 8000 bytes', lines: [`User-Agent: ${'u'.repeat(8000)}`] },
    { label: 'latin-1 obs-text value', lines: ['X-Note: caf\xe9 \xff\xfe'] },
    { label: 'UTF-8 bytes in a value', lines: [Buffer.from('X-Note: ünïcødé ✓ 😈').toString('latin1')] },
    {
      label: 'UTF-8 bytes in a name',
      lines: [Buffer.from('X-Nämé: 1').toString('latin1')],
      parser: ['malformed_request'],
    },
    { label: 'space inside a name', lines: ['X Foo: 1'], parser: ['malformed_request'] },
    { label: 'space before the colon', lines: ['X-Foo : 1'], parser: ['malformed_request'] },
    { label: 'NUL in a value', lines: ['X-Foo: a\0b'], parser: ['malformed_request'] },
    { label: 'NUL in a name', lines: ['X-F\0oo: 1'], parser: ['malformed_request'] },
    {
      label: 'bare CR inside a value (CRLF injection)',
      lines: ['X-Foo: a\rX-Injected: b'],
      parser: ['malformed_request'],
    },
    {
      label: 'bare LF inside a value (CRLF injection)',
      lines: ['X-Foo: a\nX-Injected: b'],
      parser: ['malformed_request'],
    },
    { label: 'encoded CRLF in a value', lines: ['X-Foo: a%0d%0aX-Injected:%20b'] },
    {
      label: 'obs-fold continuation line',
      lines: ['X-Foo: a', ' folded: continuation'],
      parser: ['malformed_request'],
    },
    { label: 'header without a colon', lines: ['NoColonHere'], parser: ['malformed_request'] },
    { label: 'empty header name', lines: [': value'], parser: ['malformed_request'] },
    { label: '200 distinct headers', lines: Array.from({ length: 200 }, (_, i) => `X-H${i}: v`) },
    {
      label: '3000 tiny headers',
      lines: Array.from({ length: 3000 }, (_, i) => `a${i}: b`),
      parser: ['request_headers_too_large'],
    },
    { label: 'one header of 14 KiB', lines: [`X-Big: ${'b'.repeat(14 * 1024)}`] },
    {
      label: 'one header of 20 KiB',
      lines: [`X-Big: ${'b'.repeat(20 * 1024)}`],
      parser: ['request_headers_too_large'],
    },
    {
      label: 'one header of 70 KiB',
      lines: [`X-Big: ${'b'.repeat(70 * 1024)}`],
      parser: ['request_headers_too_large'],
    },
    { label: 'duplicate Content-Type', lines: ['Content-Type: application/json', 'Content-Type: text/xml'] },
    { label: 'duplicate X-Request-Id', lines: ['X-Request-Id: one', 'X-Request-Id: two'] },
    { label: 'Expect: 100-continue', lines: ['Expect: 100-continue'] },
    { label: 'Expect: something else', lines: ['Expect: 200-ok'] },
    {
      label: 'Upgrade: websocket',
      lines: [
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
      ],
    },
    {
      label: 'Upgrade: h2c',
      lines: ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'],
    },
    {
      label: 'Connection naming a header hop-by-hop',
      lines: ['Connection: keep-alive, X-Api-Key, Authorization', 'X-Api-Key: k'],
    },
    { label: 'TE: trailers', lines: ['TE: trailers, deflate'] },
    { label: 'no Host header', lines: [], noHost: true, parser: ['malformed_request', 'invalid_path'] },
    { label: 'empty Host', lines: ['Host: '], noHost: true, parser: ['malformed_request', 'invalid_path'] },
    {
      label: 'Host with a path',
      lines: ['Host: evil.example/../x'],
      noHost: true,
      parser: ['malformed_request', 'invalid_path'],
    },
    {
      label: 'Host with userinfo',
      lines: ['Host: user:pass@127.0.0.1'],
      noHost: true,
      parser: ['malformed_request', 'invalid_path'],
    },
    { label: 'Host with a bad port', lines: ['Host: 127.0.0.1:99999'], noHost: true, parser: ['invalid_path'] },
    {
      label: 'Host in unicode',
      lines: [Buffer.from('Host: ехample.com').toString('latin1')],
      noHost: true,
      parser: ['invalid_path', 'malformed_request'],
    },
    { label: 'two Host headers', lines: ['Host: a.example', 'Host: b.example'], noHost: true },
  ];
  const tokenVariants: Array<{ label: string; auth: (t: string) => string[]; code: ErrorCode; org: 'acme' | 'other' }> =
    [
      { label: 'no token', auth: () => [], code: 'token_missing', org: 'acme' },
      {
        label: 'junk token',
        auth: () => ['Authorization: Bearer junk.junk.junk'],
        code: 'token_malformed',
        org: 'acme',
      },
      { label: 'forbidden org', auth: (t) => [`Authorization: Bearer ${t}`], code: 'forbidden', org: 'other' },
    ];
  for (const h of hostileHeaders) {
    for (const v of tokenVariants) {
      const { ruuid, target } = v.org === 'acme' ? acme() : other();
      const head = [
        `POST ${target} HTTP/1.1`,
        ...(h.noHost === true ? [] : [`Host: 127.0.0.1:${port}`]),
        `X-Request-Id: hostile-${++seq}`,
        ...v.auth(valid),
        ...h.lines,
        'Content-Length: 0',
      ];
      add({
        name: `headers: ${h.label} (${v.label})`,
        category: 'headers',
        steps: once(Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1')),
        codes: h.parser === undefined ? [v.code] : [...h.parser, v.code],
        ruuid,
        mustNotEcho: [valid],
        ...(h.mayClose === true ? { mayClose: true } : {}),
      });
    }
  }
  // Only one Authorization counts; a second one must not let the request through on the first.
  const duplicates: Array<[string, string[]]> = [
    ['junk then valid', ['Bearer junk.junk.junk', `Bearer ${valid}`]],
    ['valid then junk', [`Bearer ${valid}`, 'Bearer junk.junk.junk']],
    ['Basic then valid', ['Basic YWRtaW46YWRtaW4=', `Bearer ${valid}`]],
    ['valid then empty', [`Bearer ${valid}`, '']],
    ['two Bearer in one value', [`Bearer ${valid}, Bearer junk.junk.junk`]],
  ];
  for (const [label, values] of duplicates) {
    const { ruuid, target } = acme();
    add({
      name: `headers: duplicate Authorization, ${label}`,
      category: 'headers',
      steps: once(
        request({ target, headers: [...values.map((v) => ['authorization', v] as const), ['content-length', '0']] }),
      ),
      ruuid,
      mustNotEcho: [valid],
    });
  }
  // A method override must not turn a refused method into the one that is routed.
  for (const [method, header] of [
    ['GET', 'X-HTTP-Method-Override'],
    ['PUT', 'X-HTTP-Method'],
    ['DELETE', 'X-Method-Override'],
    ['PATCH', 'X-HTTP-Method-Override'],
  ] as const) {
    const { ruuid, target } = acme();
    add({
      name: `headers: ${method} with ${header}: POST and a valid token`,
      category: 'headers',
      steps: once(
        request({
          method,
          target,
          headers: [
            ['authorization', `Bearer ${valid}`],
            [header, 'POST'],
            ['content-length', '0'],
          ],
        }),
      ),
      codes: ['method_not_allowed'],
      ruuid,
    });
  }

  // ---------------------------------------------------------------- paths
  // A valid token for Acme-Prod throughout: only the target decides, and none may be forwarded.
  const withToken = [
    ['authorization', `Bearer ${valid}`],
    ['content-length', '0'],
  ] as const;
  const pathCase = (
    label: string,
    target: (ruuid: string) => string,
    codes?: readonly ErrorCode[],
    extra: Partial<Case> & { method?: string; version?: string; noHost?: boolean } = {},
  ): void => {
    const ruuid = newRuuid();
    const { method, version, noHost, ...rest } = extra;
    add({
      name: `paths: ${label}`,
      category: 'paths',
      steps: once(request({ method, target: target(ruuid), version, noHost, headers: withToken })),
      ...(codes !== undefined ? { codes } : {}),
      ruuid,
      ...rest,
    });
  };
  const P = ['invalid_path'] as const;
  const PN = ['invalid_path', 'not_found'] as const;
  const dotTargets: Array<[string, (r: string) => string]> = [
    ['../ back into the same org', (r) => `${START}/Acme-Prod/../Acme-Prod/${r}`],
    ['./ before the org', (r) => `${START}/./Acme-Prod/${r}`],
    ['other org then ..', (r) => `${START}/Other-Org/../Acme-Prod/${r}`],
    ['stop/../start', (r) => `/api/1/rest/public/runtime/stop/../start/Acme-Prod/${r}`],
    ['trailing /.', (r) => `${START}/Acme-Prod/${r}/.`],
    ['trailing /..', (r) => `${START}/Acme-Prod/${r}/..`],
    ['ruuid then ../ruuid', (r) => `${START}/Acme-Prod/${r}/../${r}`],
    ['leading /../', (r) => `/../${START}/Acme-Prod/${r}`],
  ];
  /** Spells each `..` segment of a target as `dotdot` and each `.` segment as `dot`. */
  const spellDots =
    (dotdot: string, dot: string) =>
    (s: string): string =>
      s
        .replace(/\.\./g, dotdot)
        .replace(/\/\.\//g, `/${dot}/`)
        .replace(/\/\.$/, `/${dot}`);
  const encodings: Array<[string, (s: string) => string]> = [
    ['raw', (s) => s],
    ['%2e', spellDots('%2e%2e', '%2e')],
    ['%2E upper', spellDots('%2E%2E', '%2E')],
    ['mixed .%2e', spellDots('.%2e', '%2e')],
    ['double-encoded %252e', spellDots('%252e%252e', '%252e')],
    ['overlong UTF-8 %c0%ae', spellDots('%c0%ae%c0%ae', '%c0%ae')],
  ];
  for (const [label, t] of dotTargets) {
    for (const [enc, f] of encodings) pathCase(`dot segments, ${label} (${enc})`, (r) => f(t(r)), PN);
  }
  const separators: Array<[string, (r: string) => string]> = [
    ['%2F between org and ..', (r) => `${START}/Acme-Prod%2F..%2FOther-Org/${r}`],
    ['%2f instead of the slash', (r) => `${START}/Acme-Prod%2f${r}`],
    ['%2F before the org', (r) => `${START}%2FAcme-Prod/${r}`],
    ['%252F double-encoded', (r) => `${START}/Acme-Prod%252F${r}`],
    ['%5C between segments', (r) => `${START}/Acme-Prod%5C${r}`],
    ['%5c..%5c', (r) => `${START}/Acme-Prod/%5c..%5c${r}`],
    ['raw backslash', (r) => `${START}/Acme-Prod\\${r}`],
    ['raw backslash dot segments', (r) => `${START}\\..\\start/Acme-Prod/${r}`],
    ['backslash only in the query', (r) => `${START}/Other-Org/${r}?x=\\..\\`],
    ['// at the start', (r) => `/${START}/Acme-Prod/${r}`],
    ['// before the org', (r) => `${START}//Acme-Prod/${r}`],
    ['// before the ruuid', (r) => `${START}/Acme-Prod//${r}`],
    ['fullwidth solidus %EF%BC%8F', (r) => `${START}/Acme-Prod%EF%BC%8F${r}`],
    [';matrix parameter', (r) => `${START}/Acme-Prod;x=1/${r}`],
    ['ruuid;jsessionid', (r) => `${START}/Acme-Prod/${r};jsessionid=abc`],
    ['ruuid.json', (r) => `${START}/Acme-Prod/${r}.json`],
    ['extra segment', (r) => `${START}/Acme-Prod/${r}/extra`],
    ['trailing slash', (r) => `${START}/Acme-Prod/${r}/`],
    ['missing ruuid', () => `${START}/Acme-Prod`],
    ['empty ruuid', () => `${START}/Acme-Prod/`],
    ['prefix only', () => START],
    ['ruuid *', () => `${START}/Acme-Prod/*`],
    ['ruuid null', () => `${START}/Acme-Prod/null`],
    ['ruuid with %00', (r) => `${START}/Acme-Prod/${r}%00`],
    ['org with %00', (r) => `${START}/Acme-Prod%00/${r}`],
    ['%0d%0a in the path', (r) => `${START}/Acme-Prod%0d%0aX-Injected:%201/${r}`],
    ['%09 in the path', (r) => `${START}/Acme-Prod%09/${r}`],
    ['%7f in the path', (r) => `${START}/Acme-Prod%7f/${r}`],
    ['%20 in the org', (r) => `${START}/Acme-Prod%20/${r}`],
    ['+ in the org', (r) => `${START}/Acme+Prod/${r}`],
    ['%4F encoded letter in a forbidden org', (r) => `${START}/%4Fther-Org/${r}`],
    ['Cyrillic o in the org (percent-encoded)', (r) => `${START}/Acme-Pr%D0%BEd/${r}`],
    ['RTL override in the org', (r) => `${START}/Acme-Prod%E2%80%AE/${r}`],
    ['invalid UTF-8 %ff', (r) => `${START}/Acme-Prod%ff/${r}`],
    ['broken escape %zz', (r) => `${START}/Acme-Prod%zz/${r}`],
    ['truncated escape %', (r) => `${START}/Acme-Prod%/${r}`],
    ['org of 101 characters', (r) => `${START}/${'A'.repeat(101)}/${r}`],
    ['org ..', (r) => `${START}/../${r}`],
    ['org with ..', (r) => `${START}/Acme..Prod/${r}`],
    ['case-folded org', (r) => `${START}/acme-prod/${r}`],
    ['upper-case org', (r) => `${START}/ACME-PROD/${r}`],
    ['upper-case prefix', (r) => `/API/1/REST/PUBLIC/RUNTIME/START/Acme-Prod/${r}`],
    ['stop instead of start', (r) => `/api/1/rest/public/runtime/stop/Acme-Prod/${r}`],
    ['runtime listing', () => '/api/1/rest/public/runtime/Acme-Prod'],
    ['api-stats', () => '/api/1/rest/public/api-stats/Acme-Prod'],
    ['root', () => '/'],
    ['admin-looking path', () => '/admin/config'],
    ['metrics on the callers port', () => '/metrics'],
  ];
  for (const [label, t] of separators) {
    pathCase(label, t, /^(case-folded|upper-case org|%4F)/.test(label) ? ['forbidden', 'invalid_path'] : undefined);
  }
  const queries: Array<[string, string]> = [
    ['?org=Acme-Prod', '?org=Acme-Prod'],
    ['?ruuid=', '?ruuid=x'],
    ['?__proto__[admin]=1', '?__proto__[admin]=1&constructor[prototype][x]=1'],
    ['?%00', '?%00'],
    ['?../../stop', '?../../runtime/stop/Acme-Prod/x'],
    ['?%2F..%2F', '?%2F..%2Fstop'],
    ['#fragment', '#../../stop'],
    ['?a&a&a many params', `?${Array.from({ length: 300 }, (_, i) => `p${i}=1`).join('&')}`],
  ];
  // Queries on a forbidden org: a query never changes which org is authorised. The resume takes no query, so one is
  // refused (invalid_query, before the token is judged) unless the path or the org is refused first.
  for (const [label, q] of queries) {
    const ruuid = newRuuid();
    add({
      name: `paths: query trick ${label} (forbidden org)`,
      category: 'paths',
      steps: once(request({ target: `${START}/Other-Org/${ruuid}${q}`, headers: withToken })),
      codes: ['forbidden', 'invalid_path', 'invalid_query'],
      ruuid,
    });
  }
  pathCase('query longer than the target limit', (r) => `${START}/Acme-Prod/${r}?q=${'x'.repeat(2100)}`, P);
  pathCase('target of 2100 characters', (r) => `${START}/Acme-Prod/${r}${'/x'.repeat(1050)}`, P);
  pathCase('target of 8 KiB', (r) => `${START}/Acme-Prod/${r}/${'y'.repeat(8192)}`, P);
  pathCase('target of 17 KiB', (r) => `${START}/Acme-Prod/${r}/${'z'.repeat(17 * 1024)}`, [
    'request_headers_too_large',
  ]);
  pathCase('target of 70 KiB', (r) => `${START}/Acme-Prod/${r}/${'z'.repeat(70 * 1024)}`, [
    'request_headers_too_large',
  ]);
  pathCase('raw UTF-8 bytes in the org', (r) => Buffer.from(`${START}/Acme-Prоd/${r}`).toString('latin1'), [
    'malformed_request',
    'invalid_path',
  ]);
  pathCase('raw tab in the path', (r) => `${START}/Acme-Prod\t/${r}`, ['malformed_request', 'invalid_path']);
  pathCase('raw NUL in the path', (r) => `${START}/Acme-Prod\0/${r}`, ['malformed_request']);
  pathCase('raw DEL in the path', (r) => `${START}/Acme-Prod\x7f/${r}`, ['malformed_request', 'invalid_path']);
  pathCase('empty target', () => '', ['malformed_request']);
  for (const method of [
    'GET',
    'PUT',
    'DELETE',
    'PATCH',
    'OPTIONS',
    'TRACE',
    'PROPFIND',
    'MKCOL',
    'LOCK',
    'PURGE',
    'SEARCH',
    'REPORT',
  ]) {
    pathCase(`method ${method}`, (r) => `${START}/Acme-Prod/${r}`, ['method_not_allowed', 'malformed_request'], {
      method,
    });
  }
  pathCase('method HEAD', (r) => `${START}/Acme-Prod/${r}`, ['method_not_allowed'], { method: 'HEAD', noBody: true });
  pathCase('lower-case post', (r) => `${START}/Acme-Prod/${r}`, ['malformed_request'], { method: 'post' });
  pathCase('unknown method FOO', (r) => `${START}/Acme-Prod/${r}`, ['malformed_request'], { method: 'FOO' });
  pathCase('method of 300 letters', (r) => `${START}/Acme-Prod/${r}`, ['malformed_request'], {
    method: 'P'.repeat(300),
  });
  pathCase('CONNECT to the path', (r) => `${START}/Acme-Prod/${r}`, ['malformed_request'], {
    method: 'CONNECT',
    mayClose: true,
  });
  pathCase('CONNECT authority-form', () => `127.0.0.1:${port}`, ['malformed_request'], {
    method: 'CONNECT',
    mayClose: true,
  });
  pathCase('absolute-form to this gateway', (r) => `http://127.0.0.1:${port}${START}/Acme-Prod/${r}`, P);
  pathCase('absolute-form to another host', (r) => `http://evil.example${START}/Acme-Prod/${r}`, P);
  pathCase('absolute-form https', (r) => `https://127.0.0.1:${port}${START}/Acme-Prod/${r}`, P);
  pathCase('absolute-form with userinfo', (r) => `http://user:pass@127.0.0.1:${port}${START}/Acme-Prod/${r}`, P);
  pathCase('absolute-form upper-case scheme', (r) => `HTTP://127.0.0.1:${port}${START}/Acme-Prod/${r}`, [
    'invalid_path',
    'malformed_request',
  ]);
  pathCase('absolute-form ftp', (r) => `ftp://127.0.0.1${START}/Acme-Prod/${r}`, ['invalid_path', 'malformed_request']);
  pathCase('network-path //host/path', (r) => `//127.0.0.1:${port}${START}/Acme-Prod/${r}`, P);
  pathCase('absolute-form with backslashes', (r) => `http://127.0.0.1:${port}\\${START}/Acme-Prod/${r}`, [
    'invalid_path',
    'malformed_request',
  ]);
  for (const method of ['OPTIONS', 'POST', 'GET']) {
    pathCase(`${method} *`, () => '*', ['invalid_path', 'malformed_request'], { method });
  }
  pathCase('HTTP/1.0 without Host', (r) => `${START}/Acme-Prod/${r}`, ['invalid_path'], {
    version: 'HTTP/1.0',
    noHost: true,
  });
  pathCase('HTTP/0.9 version', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'HTTP/0.9',
    mayClose: true,
  });
  pathCase('HTTP/2.0 version', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'HTTP/2.0',
  });
  pathCase('HTTP/1.2 version', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'HTTP/1.2',
  });
  pathCase('HTTP/9.9 version', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'HTTP/9.9',
  });
  pathCase('lower-case http/1.1', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'http/1.1',
  });
  pathCase('junk after the version', (r) => `${START}/Other-Org/${r}`, ['malformed_request', 'forbidden'], {
    version: 'HTTP/1.1 extra',
  });
  pathCase('two spaces in the request line', (r) => ` ${START}/Other-Org/${r}`, ['malformed_request', 'forbidden']);
  pathCase('tab as the separator', (r) => `${START}/Other-Org/${r}\tHTTP/1.1\r\nX:`, [
    'malformed_request',
    'forbidden',
    'invalid_path',
  ]);

  // ---------------------------------------------------------------- tokens
  // All against a valid Acme-Prod target: only the token decides.
  const jwks = (await (await fetch(world.issuer.jwksUri)).json()) as { keys: JWK[] };
  const publicJwk = jwks.keys[0]!;
  const publicPem = createPublicKey({ key: publicJwk as JsonWebKey, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  const claims = { sub: 'svc-billing', aud: 'snapgate', iss: world.issuer.issuer, exp: nowSec() + 600, iat: nowSec() };
  const hmac = (alg: string, secret: string, header: Record<string, unknown> = {}): Promise<string> =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: publicJwk.kid, ...header })
      .sign(new TextEncoder().encode(secret));
  const unsigned = (header: unknown, payload: unknown, sig = ''): string => `${b64(header)}.${b64(payload)}.${sig}`;
  const [, validPayload = '', validSig = ''] = valid.split('.');
  const validHeader = valid.split('.')[0]!;
  const tokens: Array<{ label: string; auth: string; codes?: readonly ErrorCode[]; echo?: string[] }> = [
    { label: 'empty Bearer', auth: 'Bearer ', codes: ['token_missing'] },
    { label: 'Bearer without a space', auth: 'Bearer', codes: ['token_missing'] },
    { label: 'empty Authorization', auth: '', codes: ['token_missing'] },
    { label: 'whitespace only', auth: '   ', codes: ['token_missing'] },
    { label: 'Basic credentials', auth: 'Basic c3ZjLWFjbWVAZXhhbXBsZS5jb206Z3Vlc3M=', codes: ['token_missing'] },
    { label: 'Digest scheme', auth: 'Digest username="a", response="b"', codes: ['token_missing'] },
    { label: 'token without a scheme', auth: valid, codes: ['token_missing'] },
    {
      label: 'two tokens in one header',
      auth: `Bearer ${valid} ${valid}`,
      codes: ['token_missing', 'token_malformed'],
    },
    { label: 'garbage word', auth: 'Bearer abc', codes: ['token_malformed'] },
    { label: 'a.b.c', auth: 'Bearer a.b.c', codes: ['token_malformed'] },
    { label: 'three dots', auth: 'Bearer ...', codes: ['token_malformed', 'token_missing'] },
    { label: 'many dots', auth: `Bearer ${'.'.repeat(1000)}`, codes: ['token_malformed'] },
    {
      label: 'many segments',
      auth: `Bearer ${Array.from({ length: 500 }, () => 'eyJ').join('.')}`,
      codes: ['token_malformed'],
    },
    {
      label: 'five segments (JWE shape)',
      auth: `Bearer ${validHeader}.${validPayload}.${validSig}.x.y`,
      codes: ['token_malformed'],
    },
    { label: 'two segments', auth: `Bearer ${validHeader}.${validPayload}`, codes: ['token_malformed'] },
    { label: 'random base64url', auth: `Bearer ${randomBytes(300).toString('base64url')}`, codes: ['token_malformed'] },
    {
      label: 'random base64url with dots',
      auth: `Bearer ${[40, 80, 64].map((n) => randomBytes(n).toString('base64url')).join('.')}`,
      codes: ['token_malformed'],
    },
    {
      label: 'header not JSON',
      auth: `Bearer ${b64('not json')}.${validPayload}.${validSig}`,
      codes: ['token_malformed'],
    },
    {
      label: 'header a JSON array',
      auth: `Bearer ${b64([1, 2])}.${validPayload}.${validSig}`,
      codes: ['token_malformed'],
    },
    {
      label: 'payload not JSON',
      auth: `Bearer ${validHeader}.${b64('not json')}.${validSig}`,
      codes: ['token_malformed'],
    },
    {
      label: 'payload a JSON string',
      auth: `Bearer ${validHeader}.${b64('"svc-billing"')}.${validSig}`,
      codes: ['token_malformed'],
    },
    {
      label: 'standard base64 with padding',
      auth: `Bearer ${Buffer.from(JSON.stringify({ alg: 'ES256' })).toString('base64')}==.${validPayload}.${validSig}`,
      codes: ['token_malformed'],
    },
    {
      label: 'signature stripped',
      auth: `Bearer ${validHeader}.${validPayload}.`,
      codes: ['token_signature_invalid', 'token_malformed'],
    },
    {
      label: 'signature of another token',
      auth: `Bearer ${validHeader}.${b64({ ...claims, sub: 'root' })}.${validSig}`,
      codes: ['token_signature_invalid'],
    },
    {
      label: 'signature bit-flipped',
      auth: `Bearer ${validHeader}.${validPayload}.${validSig.slice(0, -2)}${validSig.endsWith('AA') ? 'BB' : 'AA'}`,
      codes: ['token_signature_invalid'],
    },
    {
      label: 'token of 8 KiB',
      auth: `Bearer ${validHeader}.${b64({ ...claims, pad: 'p'.repeat(6000) })}.${validSig}`,
      codes: ['token_signature_invalid', 'token_malformed'],
    },
    { label: 'token of 15 KiB', auth: `Bearer ${'e'.repeat(15 * 1024)}`, codes: ['token_malformed'] },
    { label: 'token of 20 KiB', auth: `Bearer ${'e'.repeat(20 * 1024)}`, codes: ['request_headers_too_large'] },
    { label: 'tab before the token', auth: `Bearer\t${validHeader}.x.y`, codes: ['token_missing', 'token_malformed'] },
  ];
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    tokens.push({
      label: `alg ${alg}`,
      auth: `Bearer ${unsigned({ alg, typ: 'JWT' }, claims)}`,
      codes: ['token_algorithm_not_allowed', 'token_malformed'],
      echo: alg === 'none' ? [] : [alg],
    });
    tokens.push({
      label: `alg ${alg} with a signature`,
      auth: `Bearer ${unsigned({ alg }, claims, validSig)}`,
      codes: ['token_algorithm_not_allowed', 'token_malformed'],
      echo: alg === 'none' ? [] : [alg],
    });
  }
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    tokens.push({
      label: `${alg} signed with the public JWK`,
      auth: `Bearer ${await hmac(alg, JSON.stringify(publicJwk))}`,
      codes: ['token_algorithm_not_allowed'],
      echo: [alg],
    });
    tokens.push({
      label: `${alg} signed with the public PEM`,
      auth: `Bearer ${await hmac(alg, publicPem)}`,
      codes: ['token_algorithm_not_allowed'],
      echo: [alg],
    });
  }
  for (const alg of ['RS256', 'PS256', 'ES384', 'ES512', 'EdDSA', 'XS999']) {
    tokens.push({
      label: `alg ${alg} (not pinned)`,
      auth: `Bearer ${unsigned({ alg, kid: publicJwk.kid }, claims, validSig)}`,
      codes: ['token_algorithm_not_allowed', 'token_malformed'],
      echo: [alg],
    });
  }
  tokens.push({
    label: 'alg missing',
    auth: `Bearer ${unsigned({ kid: publicJwk.kid }, claims, validSig)}`,
    codes: ['token_algorithm_not_allowed', 'token_malformed'],
  });
  tokens.push({
    label: 'alg a number',
    auth: `Bearer ${unsigned({ alg: 256, kid: publicJwk.kid }, claims, validSig)}`,
    codes: ['token_algorithm_not_allowed', 'token_malformed'],
  });
  const minted: Array<[string, Promise<string>, readonly ErrorCode[]]> = [
    [
      'wrong iss',
      world.issuer.mint({ sub: 'svc-billing' }, { iss: 'https://evil.example' }),
      ['token_issuer_untrusted'],
    ],
    [
      'iss with a trailing slash',
      world.issuer.mint({ sub: 'svc-billing' }, { iss: `${world.issuer.issuer}/` }),
      ['token_issuer_untrusted'],
    ],
    ['wrong aud', world.issuer.mint({ sub: 'svc-billing', aud: 'someone-else' }), ['token_audience_invalid']],
    [
      'aud an empty list',
      world.issuer.mint({ sub: 'svc-billing', aud: [] }),
      ['token_audience_invalid', 'token_claim_invalid'],
    ],
    ['expired', world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: -600 }), ['token_expired']],
    ['expired long ago', world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: -86_400 * 365 }), ['token_expired']],
    ['not yet valid', world.issuer.mint({ sub: 'svc-billing' }, { notBefore: 3600 }), ['token_not_yet_valid']],
    ['no exp', world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: null }), ['token_claim_invalid']],
    [
      'exp a string',
      world.issuer.mint({ sub: 'svc-billing', exp: 'tomorrow' as unknown as number }, { expiresIn: null }),
      ['token_claim_invalid', 'token_malformed'],
    ],
    ['no sub', world.issuer.mint({}), ['token_claim_invalid']],
    [
      'sub an object',
      world.issuer.mint({ sub: { id: 'svc-billing' } as unknown as string }),
      ['token_claim_invalid', 'token_malformed'],
    ],
    [
      'nbf a string',
      world.issuer.mint({ sub: 'svc-billing', nbf: 'later' as unknown as number }),
      ['token_claim_invalid', 'token_malformed', 'token_not_yet_valid'],
    ],
    ['unknown kid', world.issuer.mint({ sub: 'svc-billing' }, { kid: 'nobody-has-this' }), ['token_key_unknown']],
    [
      'kid path traversal',
      world.issuer.mint({ sub: 'svc-billing' }, { kid: '../../../../etc/passwd' }),
      ['token_key_unknown'],
    ],
    [
      'kid of 4 KiB',
      world.issuer.mint({ sub: 'svc-billing' }, { kid: 'k'.repeat(4096) }),
      ['token_key_unknown', 'token_malformed'],
    ],
    [
      'no kid, unpublished key',
      world.issuer.mint({ sub: 'svc-billing' }, { kid: null, forgeWithUnpublishedKey: true }),
      ['token_signature_invalid', 'token_key_unknown'],
    ],
    [
      'forged with an unpublished key',
      world.issuer.mint({ sub: 'svc-billing' }, { forgeWithUnpublishedKey: true }),
      ['token_signature_invalid'],
    ],
    [
      'signed by the next (unpublished) key',
      world.issuer.mint({ sub: 'svc-billing' }, { nextKey: true }),
      ['token_key_unknown'],
    ],
    ['valid token for another sub', world.issuer.mint({ sub: 'svc-nobody' }), ['forbidden']],
  ];
  for (const [label, t, codes] of minted) tokens.push({ label, auth: `Bearer ${await t}`, codes });
  // jku / x5u / jwk headers must never make the gateway fetch or trust a key named by the caller.
  const rogue = await TokenIssuer.start();
  try {
    const rogueToken = await rogue.mint({ sub: 'svc-billing', aud: 'snapgate' }, { iss: world.issuer.issuer });
    const [, rp = '', rs = ''] = rogueToken.split('.');
    for (const [label, extra] of [
      ['jku header to another JWKS', { jku: rogue.jwksUri }],
      ['x5u header', { x5u: `${rogue.issuer}/cert.pem` }],
      ['embedded jwk header', { jwk: publicJwk }],
      ['crit header', { crit: ['exp'] }],
      ['typ not JWT', { typ: 'JOSE+JSON' }],
    ] as const) {
      tokens.push({
        label,
        auth: `Bearer ${b64({ alg: 'ES256', kid: publicJwk.kid, ...extra })}.${rp}.${rs}`,
        codes: ['token_signature_invalid', 'token_malformed', 'token_key_unknown'],
      });
    }
  } finally {
    await rogue.close();
  }
  for (const t of tokens) {
    const { ruuid, target } = acme();
    const token = t.auth.replace(/^\S+\s*/, '');
    add({
      name: `tokens: ${t.label}`,
      category: 'tokens',
      steps: once(
        request({
          target,
          headers: [
            ['authorization', t.auth],
            ['content-length', '0'],
          ],
        }),
      ),
      ...(t.codes !== undefined ? { codes: t.codes } : {}),
      ruuid,
      mustNotEcho: [...(token.length > 12 ? [token] : []), ...(t.echo ?? [])],
    });
  }

  // ---------------------------------------------------------------- bodies
  // A valid token for Acme-Prod: the body alone must stop the call before anything is forwarded.
  const auth = ['authorization', `Bearer ${valid}`] as const;
  const bodyCase = (label: string, build: (target: string) => RawStep[], extra: Partial<Case> = {}): void => {
    const { ruuid, target } = acme();
    add({ name: `bodies: ${label}`, category: 'bodies', steps: build(target), ruuid, ...extra });
  };
  const head = (target: string, headers: ReadonlyArray<readonly [string, string]>): Buffer =>
    request({ target, headers: [auth, ...headers] });
  bodyCase(
    'Content-Length one over maxBodyBytes, nothing sent',
    (t) => once(head(t, [['content-length', String(MAX_BODY + 1)]])),
    { codes: ['payload_too_large'] },
  );
  bodyCase('Content-Length of 1 TB', (t) => once(head(t, [['content-length', '1000000000000']])), {
    codes: ['payload_too_large'],
  });
  bodyCase('Content-Length over 2^64', (t) => once(head(t, [['content-length', '99999999999999999999999']])), {
    codes: ['malformed_request', 'payload_too_large'],
  });
  bodyCase(
    'body over maxBodyBytes, sent whole',
    (t) =>
      once(Buffer.concat([head(t, [['content-length', String(MAX_BODY + 10)]]), Buffer.alloc(MAX_BODY + 10, 'a')])),
    { codes: ['payload_too_large'] },
  );
  bodyCase(
    'chunked body over maxBodyBytes',
    (t) => {
      const chunk = `4000\r\n${'c'.repeat(0x4000)}\r\n`;
      return [
        { write: head(t, [['transfer-encoding', 'chunked']]) },
        { write: chunk.repeat(5) },
        { write: '0\r\n\r\n' },
      ];
    },
    { codes: ['payload_too_large'] },
  );
  bodyCase(
    'chunked body over maxBodyBytes, never finished',
    (t) => [
      { write: head(t, [['transfer-encoding', 'chunked']]) },
      { write: `10000\r\n${'c'.repeat(0x10000)}\r\n1\r\nx\r\n` },
    ],
    { codes: ['payload_too_large'] },
  );
  for (const cl of ['-1', '+10', '1e3', '0x10', '10, 10', '10,11', '1 0', '١٠']) {
    bodyCase(
      `Content-Length: ${cl}`,
      (t) =>
        once(
          Buffer.concat([
            Buffer.from(head(t, [['content-length', Buffer.from(cl).toString('latin1')]])),
            Buffer.from('0123456789'),
          ]),
        ),
      { codes: ['malformed_request'] },
    );
  }
  bodyCase(
    'two different Content-Length headers',
    (t) =>
      once(
        Buffer.concat([
          head(t, [
            ['content-length', '5'],
            ['content-length', '10'],
          ]),
          Buffer.from('0123456789'),
        ]),
      ),
    { codes: ['malformed_request'] },
  );
  /** A body cut short that the caller never finishes: the gateway's body or request deadline answers. */
  const stalled = { codes: ['request_body_timeout', 'request_timeout'], timeoutMs: SLOW_MS } as const;
  /** Ten bytes declared, five sent. */
  const halfOfTen = (t: string): RawStep[] => [{ write: head(t, [['content-length', '10']]) }, { write: '01234' }];
  bodyCase('declared 10, sent nothing, then silence', (t) => [{ write: head(t, [['content-length', '10']]) }], stalled);
  bodyCase('declared 10, sent 5, then silence', halfOfTen, stalled);
  bodyCase(
    'chunked, half a chunk, then silence',
    (t) => [{ write: head(t, [['transfer-encoding', 'chunked']]) }, { write: '5\r\nhel' }],
    stalled,
  );
  bodyCase(
    'slow body: 1 byte every 300 ms',
    (t) => [
      { write: head(t, [['content-length', '40']]) },
      ...Array.from({ length: 14 }, (): RawStep[] => [{ wait: 300 }, { write: 'x' }]).flat(),
    ],
    stalled,
  );
  bodyCase('declared 10, sent 5, then hang-up', (t) => [...halfOfTen(t), { wait: 50 }, { hangUp: true }], {
    mayClose: true,
  });
  bodyCase('declared 10, sent 5, then reset', (t) => [...halfOfTen(t), { wait: 50 }, { reset: true }], {
    mayClose: true,
  });
  bodyCase('declared 10, sent 5, then half-close', (t) => [...halfOfTen(t), { wait: 50 }, { halfClose: true }], {
    codes: ['malformed_request', 'request_body_aborted'],
    mayClose: true,
  });
  bodyCase(
    'chunked, aborted mid-chunk',
    (t) => [
      { write: head(t, [['transfer-encoding', 'chunked']]) },
      { write: 'a\r\n01234' },
      { wait: 50 },
      { hangUp: true },
    ],
    { mayClose: true },
  );
  bodyCase(
    'declared 40 KiB, 20 KiB sent, then hang-up',
    (t) => [
      { write: head(t, [['content-length', String(40 * 1024)]]) },
      { write: Buffer.alloc(20 * 1024, 'z') },
      { wait: 50 },
      { hangUp: true },
    ],
    { mayClose: true },
  );
  const badChunks: Array<[string, string, readonly ErrorCode[]]> = [
    ['chunk size not hex', 'zz\r\nhello\r\n0\r\n\r\n', ['malformed_request']],
    ['chunk longer than its size', '5\r\nhelloXX\r\n0\r\n\r\n', ['malformed_request']],
    ['chunk size overflow', 'fffffffffffffffffffff\r\nx\r\n0\r\n\r\n', ['malformed_request']],
    ['negative chunk size', '-5\r\nhello\r\n0\r\n\r\n', ['malformed_request']],
    ['space after the chunk size', '5 \r\nhello\r\n0\r\n\r\n', ['malformed_request']],
    [
      'chunk extension of 20 KiB',
      `5;${'e'.repeat(20 * 1024)}\r\nhello\r\n0\r\n\r\n`,
      ['payload_too_large', 'malformed_request'],
    ],
    ['NUL in a trailer', '5\r\nhello\r\n0\r\nX-T: a\0b\r\n\r\n', ['malformed_request']],
    ['LF-only chunk lines', '5\nhello\n0\n\n', ['malformed_request']],
    ['bare CR after the size', '5\rhello\r\n0\r\n\r\n', ['malformed_request']],
    ['0x prefix', '0x5\r\nhello\r\n0\r\n\r\n', ['malformed_request']],
  ];
  for (const [label, body, codes] of badChunks) {
    bodyCase(
      `invalid chunked: ${label}`,
      (t) => once(Buffer.concat([head(t, [['transfer-encoding', 'chunked']]), Buffer.from(body, 'latin1')])),
      { codes },
    );
  }
  // Request smuggling: conflicting framing must be refused by the parser, never read two ways.
  const framings: Array<[string, ReadonlyArray<readonly [string, string]>, string]> = [
    [
      'CL.TE',
      [
        ['content-length', '6'],
        ['transfer-encoding', 'chunked'],
      ],
      '0\r\n\r\nX',
    ],
    [
      'TE.CL',
      [
        ['transfer-encoding', 'chunked'],
        ['content-length', '4'],
      ],
      '5c\r\nGPOST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n',
    ],
    ['TE: chunked, identity', [['transfer-encoding', 'chunked, identity']], '0\r\n\r\n'],
    [
      'TE: identity',
      [
        ['transfer-encoding', 'identity'],
        ['content-length', '3'],
      ],
      'abc',
    ],
    ['TE: gzip', [['transfer-encoding', 'gzip']], 'abc'],
    ['TE: xchunked', [['transfer-encoding', 'xchunked']], '0\r\n\r\n'],
    [
      'TE: chunked twice',
      [
        ['transfer-encoding', 'chunked'],
        ['transfer-encoding', 'chunked'],
      ],
      '0\r\n\r\n',
    ],
    [
      'TE with a tab before the colon',
      [
        ['transfer-encoding\t', 'chunked'],
        ['content-length', '3'],
      ],
      'abc',
    ],
    [
      'TE with obs-fold',
      [
        ['transfer-encoding', '\r\n chunked'],
        ['content-length', '3'],
      ],
      'abc',
    ],
    [
      'TE: \\x0bchunked',
      [
        ['transfer-encoding', '\x0bchunked'],
        ['content-length', '3'],
      ],
      'abc',
    ],
    ['CL then a smuggled request', [['content-length', '0']], `GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
    [
      'CL too short, rest is a request',
      [['content-length', '3']],
      `abcPOST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`,
    ],
  ];
  for (const [label, headers, body] of framings) {
    for (const v of tokenVariants.filter((x) => x.label !== 'junk token')) {
      const { ruuid, target } = v.org === 'acme' ? acme() : other();
      const pipelined = label.startsWith('CL then') || label.startsWith('CL too short');
      add({
        name: `bodies: smuggling ${label} (${v.label})`,
        category: 'bodies',
        steps: once(
          Buffer.concat([
            request({
              target,
              headers: [
                ...v.auth(valid).map((l) => ['authorization', l.slice('Authorization: '.length)] as const),
                ...headers,
              ],
            }),
            Buffer.from(body, 'latin1'),
          ]),
        ),
        ...(pipelined ? { responses: 2 } : {}),
        ruuid,
      });
    }
  }

  // ---------------------------------------------------------------- sockets
  const sockets = (label: string, steps: RawStep[], extra: Partial<Case> = {}): void =>
    add({ name: `sockets: ${label}`, category: 'sockets', steps, ...extra });
  for (let i = 1; i <= 3; i += 1) sockets(`connect and close #${i}`, [{ hangUp: true }], { mayClose: true });
  for (let i = 1; i <= 2; i += 1) sockets(`connect and reset #${i}`, [{ reset: true }], { mayClose: true });
  sockets('connect and half-close', [{ halfClose: true }], { mayClose: true });
  sockets('connect and say nothing', [], { mayClose: true, codes: ['request_timeout'], timeoutMs: SLOW_MS });
  sockets(
    'slowloris: one header every 400 ms',
    [
      { write: `POST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1\r\nHost: x\r\n` },
      ...Array.from({ length: 12 }, (_, i): RawStep[] => [{ wait: 400 }, { write: `X-Slow-${i}: ${i}\r\n` }]).flat(),
    ],
    { mayClose: true, codes: ['request_timeout'], timeoutMs: SLOW_MS },
  );
  sockets(
    'slowloris: request line one byte every 250 ms',
    [...Array.from(`POST ${START}/Acme-Prod/`, (ch): RawStep[] => [{ write: ch }, { wait: 250 }]).flat()],
    { mayClose: true, codes: ['request_timeout'], timeoutMs: SLOW_MS },
  );
  sockets(
    'partial request line, then half-close',
    [{ write: `POST ${START}/Acme` }, { wait: 30 }, { halfClose: true }],
    { mayClose: true, codes: ['malformed_request'] },
  );
  sockets(
    'partial headers, then half-close',
    [
      { write: `POST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1\r\nHost: x\r\nX-A: ` },
      { wait: 30 },
      { halfClose: true },
    ],
    { mayClose: true, codes: ['malformed_request'] },
  );
  sockets(
    'partial headers, then hang-up',
    [{ write: `POST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1\r\nHost: x\r\n` }, { wait: 30 }, { hangUp: true }],
    { mayClose: true },
  );
  sockets(
    'partial headers, then reset',
    [{ write: `POST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1\r\nHost: x\r\n` }, { wait: 30 }, { reset: true }],
    { mayClose: true },
  );
  sockets(
    'request line without CRLF, then hang-up',
    [{ write: `POST ${START}/Acme-Prod/${newRuuid()} HTTP/1.1` }, { wait: 30 }, { hangUp: true }],
    { mayClose: true },
  );
  {
    const { ruuid, target } = acme();
    sockets(
      'whole request, then half-close at once',
      [{ write: request({ target, headers: [['content-length', '0']] }) }, { halfClose: true }],
      { mayClose: true, codes: ['token_missing'], ruuid },
    );
  }
  {
    const { ruuid, target } = acme();
    sockets(
      'whole request with a valid token, then reset at once',
      [{ write: request({ target, headers: [auth, ['content-length', '0']] }) }, { reset: true }],
      { mayClose: true, ruuid },
    );
  }
  {
    const { ruuid, target } = acme();
    sockets(
      'whole request with a valid token, then hang-up at once',
      [{ write: request({ target, headers: [auth, ['content-length', '0']] }) }, { hangUp: true }],
      { mayClose: true, ruuid },
    );
  }
  {
    const { ruuid, target } = acme();
    sockets(
      'a request, then garbage on the same connection',
      [
        {
          write: Buffer.concat([
            request({ target, headers: [['content-length', '0']] }),
            Buffer.from('GARBAGE\r\n\r\n'),
          ]),
        },
      ],
      {
        responses: 2,
        codes: ['token_missing', 'malformed_request'],
        ruuid,
      },
    );
  }
  {
    const ruuids = Array.from({ length: 30 }, () => newRuuid());
    sockets(
      '30 pipelined requests without a token',
      [
        {
          write: Buffer.concat(
            ruuids.map((r) => request({ target: `${START}/Acme-Prod/${r}`, headers: [['content-length', '0']] })),
          ),
        },
      ],
      {
        responses: 30,
        codes: ['token_missing'],
      },
    );
  }
  for (let i = 1; i <= 8; i += 1) {
    sockets(`random binary #${i}`, [{ write: randomBytes(64 + i * 97) }], {
      mayClose: true,
      codes: ['malformed_request'],
    });
  }
  sockets('TLS ClientHello', [{ write: Buffer.from('160301020001000200030372', 'hex') }], {
    mayClose: true,
    codes: ['malformed_request'],
  });
  sockets('HTTP/2 connection preface', [{ write: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' }], {
    mayClose: true,
    codes: ['malformed_request'],
  });
  sockets('SSH banner', [{ write: 'SSH-2.0-OpenSSH_9.6\r\n' }], { mayClose: true, codes: ['malformed_request'] });
  sockets('only CRLFs', [{ write: '\r\n'.repeat(5000) }], {
    mayClose: true,
    codes: ['malformed_request', 'request_headers_too_large', 'request_timeout'],
    timeoutMs: SLOW_MS,
  });
  sockets('64 KiB of one letter', [{ write: Buffer.alloc(64 * 1024, 'A') }], {
    mayClose: true,
    codes: ['malformed_request', 'request_headers_too_large'],
  });
}

/** What is wrong with one case's result, or undefined when it held. */
function verdict(c: Case, r: RawResult): string | undefined {
  const answers = r.responses
    .map((x) => `${x.status} ${x.headers['content-type']?.[0] ?? '-'} ${x.body.toString('utf8').slice(0, 160)}`)
    .join(' | ');
  const seen =
    (answers || 'no answer') +
    (r.closedByServer ? ', closed by the gateway' : '') +
    (r.timedOut ? `, still open after ${c.timeoutMs ?? QUICK_MS} ms` : '') +
    (r.error !== undefined ? `, ${r.error}` : '');
  if (r.timedOut && r.responses.filter((x) => x.complete).length < (c.responses ?? 1)) {
    return `neither answered nor closed in time: ${seen}`;
  }
  if (r.responses.length === 0) return c.mayClose === true ? undefined : `closed without an answer: ${seen}`;
  if (r.responses.length < (c.responses ?? 1) && c.mayClose !== true) {
    return `expected ${c.responses ?? 1} answers: ${seen}`;
  }
  for (const res of r.responses) {
    if (!res.complete) return `incomplete answer: ${seen}`;
    if (res.status < 400 || res.status >= 500) return `status ${res.status} is not a 4xx refusal: ${seen}`;
    if (res.headers['content-type']?.[0] !== 'application/problem+json') return `not problem+json: ${seen}`;
    if (c.noBody === true) continue;
    let body: { code?: unknown; status?: unknown };
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body;
    } catch {
      return `body is not JSON: ${seen}`;
    }
    let status: number | undefined;
    try {
      status = statusFor(body.code as ErrorCode);
    } catch {
      status = undefined;
    }
    if (status === undefined) return `code ${String(body.code)} is not in the catalog: ${seen}`;
    if (status !== res.status || body.status !== res.status) {
      return `code ${String(body.code)} does not match status ${res.status}: ${seen}`;
    }
    if (c.codes !== undefined && !c.codes.includes(body.code as ErrorCode)) {
      return `code ${String(body.code)}, expected one of ${c.codes.join(', ')}: ${seen}`;
    }
    const text = res.body.toString('latin1');
    for (const s of c.mustNotEcho ?? []) {
      if (text.includes(s)) return `answer echoes ${s.length > 40 ? `${s.slice(0, 40)}…` : s}: ${seen}`;
    }
  }
  return undefined;
}

/** Runs the cases with at most `width` connections open at once. */
async function runAll(cases: readonly Case[], port: number, width: number): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]!;
      results.set(
        c.name,
        await rawExchange(port, c.steps, {
          timeoutMs: c.timeoutMs ?? QUICK_MS,
          responses: c.responses ?? 1,
          noBody: c.noBody === true,
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
}

beforeAll(async () => {
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    consoleErrors.push(args.map(String).join(' ').slice(0, 300));
  });
  gw = await startTestGateway(
    baseConfig(world.standIn, world.issuer, {
      server: {
        host: '127.0.0.1',
        port: 0,
        shutdownTimeout: '5s',
        maxBodyBytes: MAX_BODY,
        headersTimeout: '1s',
        bodyTimeout: '1s',
        requestTimeout: '3s',
      },
    }),
  );
  await buildCorpus(gw.gateway.port);
  // The slow cases wait on deadlines: start them all at once, next to the quick ones.
  const slow = corpus.filter((c) => (c.timeoutMs ?? QUICK_MS) > QUICK_MS);
  const quick = corpus.filter((c) => (c.timeoutMs ?? QUICK_MS) <= QUICK_MS);
  await Promise.all([runAll(slow, gw.gateway.port, slow.length), runAll(quick, gw.gateway.port, 12)]);
  // Let refused and hung-up calls finish on the gateway side before counting what reached the stand-in.
  await new Promise((r) => setTimeout(r, 300));
  const byRuuid = new Map(corpus.filter((c) => c.ruuid !== undefined).map((c) => [c.ruuid!, c.name]));
  upstreamCallsDuringCorpus = world.standIn.received.map((r) => ({
    path: r.path,
    case: [...byRuuid.entries()].find(([ruuid]) => r.path.includes(ruuid))?.[1] ?? 'unattributed',
  }));
}, 30_000);

afterAll(async () => {
  vi.restoreAllMocks();
  await gw?.close();
});

describe('hostile-input corpus', () => {
  it('has at least 300 cases across headers, paths, tokens, bodies and sockets', () => {
    const counts = Object.fromEntries(
      ['headers', 'paths', 'tokens', 'bodies', 'sockets'].map((k) => [
        k,
        corpus.filter((c) => c.category === k).length,
      ]),
    );
    expect(corpus.length, JSON.stringify(counts)).toBeGreaterThanOrEqual(300);
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(20);
  });

  // it.each needs the cases at collection time, and they are built in beforeAll: one test per category reports
  // every failing case.
  for (const category of ['headers', 'paths', 'tokens', 'bodies', 'sockets'] as const) {
    it(
      `${category}: every answer is problem+json with a catalog code ` +
        '(or the socket is closed for a caller that left)',
      () => {
        const failures = corpus
          .filter((c) => c.category === category)
          .flatMap((c) => {
            const v = verdict(c, results.get(c.name)!);
            return v === undefined ? [] : [`${c.name}: ${v}`];
          });
        expect(failures, failures.join('\n')).toEqual([]);
      },
    );
  }

  it('forwards nothing to SnapLogic', () => {
    expect(upstreamCallsDuringCorpus, JSON.stringify(upstreamCallsDuringCorpus, null, 1)).toEqual([]);
  });

  it('logs no unhandled error and no stack, and node-server prints nothing', () => {
    const bad = gw.logs.filter(
      (l) => (l.level === 'error' && /unhandled/i.test(String(l.msg))) || l.stack !== undefined,
    );
    expect(
      bad.map((l) => JSON.stringify(l).slice(0, 300)),
      'error lines',
    ).toEqual([]);
    expect(consoleErrors, 'console.error').toEqual([]);
  });

  it('logs each parser refusal at debug with its code only, never the request bytes', () => {
    const refusals = gw.logs.filter((l) => l.msg === 'request refused by the HTTP parser');
    expect(refusals.length).toBeGreaterThan(50);
    for (const line of refusals) {
      expect(line.level).toBe('debug');
      expect(Object.keys(line).sort()).toEqual(['answer', 'code', 'level', 'msg', 'requestId', 'time']);
    }
  });

  it('audits no refused call as internal_error', () => {
    const internal = gw.audit.filter((e) => (e as { reason?: unknown }).reason === 'internal_error');
    expect(internal.map((e) => JSON.stringify(e).slice(0, 300))).toEqual([]);
  });

  it('keeps serving: a valid call afterwards resumes its run with one upstream call', async () => {
    const before = world.standIn.received.length;
    const ruuid = world.standIn.addRun('Acme-Prod');
    const res = await resume(gw.url, 'Acme-Prod', ruuid, await world.issuer.mint({ sub: 'svc-billing' }));
    expect(res.status, res.text).toBe(200);
    expect(world.standIn.received.length - before).toBe(1);
  });
});
