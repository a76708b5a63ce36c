// Promises that must hold under hostile callers and stalls: own lease ids, nothing left behind by late Redis answers,
// an allow-list of forwarded headers, hang-ups watched from the first byte, bodies read before limits, bounded
// upstream queues, cheap readiness, and shutdown that writes every outcome. Real redis-server (paused with SIGSTOP),
// real sockets, the SnapLogic stand-in over loopback.
import { createServer, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { hostileHeaders } from '../helpers/hostile-headers.js';
import { resumeNewRun, send, type Reply } from '../helpers/http.js';
import { listenOnLoopback, type Listening } from '../helpers/loopback.js';
import { sleep } from '../helpers/wait.js';
import { closedAfterEach, useWorld } from '../helpers/world.js';

const world = useWorld();
const open = closedAfterEach();
const settle = sleep;

beforeEach(async () => {
  world.redis.resume();
  await world.admin.flushall();
  world.standIn.setFault(undefined);
});

// Runs before closedAfterEach's hook: a gateway closing on a paused Redis would wait out its deadlines.
afterEach(() => {
  world.redis.resume();
});

/** A gateway whose Acme-Prod has `rateLimit` (when given), on the world's Redis unless `redis: undefined` is passed. */
async function gateway(
  rateLimit: Record<string, unknown> | undefined,
  extra: Record<string, unknown> = {},
): Promise<TestGateway> {
  const doc = baseConfig(world.standIn, world.issuer, {
    redis: { url: world.redis.url, commandTimeout: '100ms' },
    admin: { host: '127.0.0.1', port: 0 },
    ...extra,
  });
  if (doc.redis === undefined) delete doc.redis;
  const orgs = doc.orgs as Record<string, Record<string, unknown>>;
  if (rateLimit !== undefined) orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit };
  const gw = await startTestGateway(doc);
  open.push(gw);
  return gw;
}

const startPath = (ruuid = world.standIn.addRun('Acme-Prod')) => `/api/1/rest/public/runtime/start/Acme-Prod/${ruuid}`;
/** A raw start request for a fresh run with the world's token, then `headers` (each ending in CRLF) and `body`. */
const rawPost = (headers = '', body = '') =>
  `POST ${startPath()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${world.jwt}\r\n${headers}\r\n${body}`;
const call = (gw: TestGateway, headers: Record<string, string> = {}) =>
  resumeNewRun(gw.url, world.standIn, world.jwt, { headers });

/** A call whose client gives up after `ms` (destroys its socket); resolves when it has. */
function callAndHangUp(gw: TestGateway, ms: number): Promise<void> {
  const u = new URL(gw.url);
  return new Promise((resolve) => {
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: startPath(),
      headers: { authorization: `Bearer ${world.jwt}` },
      agent: false,
    });
    req.on('error', () => resolve());
    req.on('response', (res) => res.resume());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, ms);
  });
}

/** A raw socket that sends `head` (request line and headers) and then whatever `body` says. */
function rawSocket(
  gw: TestGateway,
  head: string,
): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const u = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      socket.write(head);
      resolve({ socket, received: () => text, closed });
    });
    socket.once('error', reject);
  });
}

const unhandled = (gw: TestGateway) => gw.logs.filter((l) => l.msg === 'unhandled error');

describe("concurrency leases are snapgate's own", () => {
  const slowUpstream = { upstream: { connectTimeout: '1s', headersTimeout: '6s', bodyTimeout: '6s' } };

  it('five parallel calls with one X-Request-Id and concurrency 2: two forwarded, three 429', async () => {
    const gw = await gateway({ limit: 100, window: '60s', concurrency: 2 }, slowUpstream);
    world.standIn.setFault({ kind: 'latency', ms: 3_000, count: 5 });
    const before = world.standIn.startCalls().length;
    const replies = await Promise.all(Array.from({ length: 5 }, () => call(gw, { 'x-request-id': 'same-id' })));
    expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429]);
    expect(world.standIn.startCalls().length - before).toBe(2);
  });

  it("a call that reuses an id in flight cannot free that call's lease", async () => {
    const gw = await gateway({ limit: 100, window: '60s', concurrency: 2 }, slowUpstream);
    world.standIn.setFault({ kind: 'latency', ms: 2_500, count: 1 });
    const slow = call(gw, { 'x-request-id': 'victim' });
    await settle(150);
    // Same id, answered at once: when it ends it must free its own lease only.
    expect((await call(gw, { 'x-request-id': 'victim' })).status).toBe(200);
    world.standIn.setFault({ kind: 'latency', ms: 1_500, count: 2 });
    const [a, b] = await Promise.all([call(gw), call(gw)]);
    expect([a.status, b.status].sort(), `${a.text} ${b.text}`).toEqual([200, 429]);
    expect((await slow).status).toBe(200);
  });
});

describe('a decision that missed its deadline leaves nothing behind', () => {
  it(
    'late scripts after a Redis stall free their leases at once, ' + 'and count only the calls that were forwarded',
    async () => {
      const gw = await gateway({ limit: 20, window: '60s', concurrency: 2 });
      world.redis.pause();
      // Decided by the fallback while Redis is stalled; the scripts sent meanwhile run when it resumes.
      const during = await Promise.all(Array.from({ length: 4 }, () => call(gw)));
      expect(during.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      await settle(2_500);
      world.redis.resume();
      await settle(1_000);
      expect(await world.admin.zcard('rl:{org:Acme-Prod}:conc')).toBe(0);
      const after = await call(gw);
      expect(after.status, after.text).toBe(200);
      // The calls the fallback forwarded count once in Redis, like any call; the ones it refused (429)
      // were given back; and this one. A full bucket is 20.
      const forwarded = during.filter((r) => r.status === 200).length;
      expect(forwarded).toBeGreaterThan(0);
      expect(during.length - forwarded).toBeGreaterThan(0);
      expect(String(after.headers.ratelimit)).toContain(`"org-rate";r=${20 - forwarded - 1};`);
    },
  );

  it(
    'without a concurrency policy, the late answers are read when Redis resumes: ' +
      'refused calls given back, forwarded ones kept',
    async () => {
      // The fallback's share is the limit / 2 instances = 10: it forwards 10 of the 14 and refuses 4.
      const gw = await gateway({ limit: 20, window: '60s' }, { rateLimiting: { expectedInstances: 2 } });
      world.redis.pause();
      const during = await Promise.all(Array.from({ length: 14 }, () => call(gw)));
      expect(during.filter((r) => r.status === 200)).toHaveLength(10);
      await settle(2_500);
      world.redis.resume();
      await settle(1_000);
      const after = await call(gw);
      expect(after.status, after.text).toBe(200);
      // 20 - the 10 forwarded during the stall - this one; the 4 refused were given back.
      expect(String(after.headers.ratelimit)).toContain('"org-rate";r=9;');
    },
  );

  it('a call refused after the decision (audit unavailable) gets its quota back', async () => {
    const gw = await gateway(
      { limit: 3, window: '60s' },
      { audit: { sinks: [{ type: 'redis', stream: 'audit:{t}:ev' }], ackTimeout: '300ms', onFailure: 'reject' } },
    );
    // The limiter answers, but the sink cannot take the attempt: its stream key holds a string, so XADD fails.
    await world.admin.set('audit:{t}:ev', 'not-a-stream');
    const refused = await call(gw);
    expect(refused.status, refused.text).toBe(503);
    expect(refused.json.code).toBe('audit_unavailable');
    await settle(50);
    const tat = await world.admin.get('rl:{org:Acme-Prod}:rate');
    expect(tat, 'the refused call left no quota taken').toBeNull();
  });
});

describe('only an allow-list of caller headers reaches SnapLogic', () => {
  it('drops override, rewrite, impersonation and client-address headers', async () => {
    const gw = await gateway(undefined);
    const res = await call(gw, {
      ...hostileHeaders,
      'user-agent': 'job/1',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    expect(res.status, res.text).toBe(200);
    const seen = world.standIn.startCalls().at(-1)!.headers;
    for (const name of Object.keys(hostileHeaders)) expect(seen[name], name).toBeUndefined();
    expect(seen['user-agent']).toBe('job/1');
    expect(seen.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  });
});

describe('a caller that hangs up is not forwarded', () => {
  /**
   * Stalls Redis for `stallMs` while a call hangs up after 300 ms; waits `settleMs`; returns how many were forwarded.
   */
  async function forwardedAfterHangUpDuringStall(gw: TestGateway, stallMs: number, settleMs: number): Promise<number> {
    const before = world.standIn.startCalls().length;
    world.redis.pause();
    setTimeout(() => world.redis.resume(), stallMs);
    await callAndHangUp(gw, 300);
    await settle(settleMs);
    return world.standIn.startCalls().length - before;
  }

  it('gone while the rate-limit decision waits on a slow Redis: never forwarded, decision aborted', async () => {
    const gw = await gateway(
      { limit: 100, window: '60s' },
      { redis: { url: world.redis.url, commandTimeout: '1500ms' } },
    );
    expect(await forwardedAfterHangUpDuringStall(gw, 700, 1_500)).toBe(0);
    const decision = gw.audit.find((e) => e.type === 'decision' && e.reason === 'client_closed_request');
    expect(decision?.decision).toBe('aborted');
    expect(gw.audit.some((e) => e.type === 'attempt')).toBe(false);
  });

  it(
    'gone while the audit attempt waits for its acknowledgement: ' + 'never forwarded, the outcome says aborted',
    async () => {
      const gw = await gateway(undefined, {
        audit: { sinks: [{ type: 'redis' }], ackTimeout: '3s', onFailure: 'reject' },
      });
      expect(await forwardedAfterHangUpDuringStall(gw, 900, 2_000)).toBe(0);
      const events = (await world.admin.xrange('audit:{snapgate}:events', '-', '+')).map(
        ([, f]) => JSON.parse(f[1]!) as Record<string, unknown>,
      );
      const outcome = events.find((e) => e.type === 'outcome');
      expect(outcome?.reason).toBe('client_closed_request');
      expect(outcome?.decision).toBe('aborted');
    },
  );
});

describe('pipelined requests are not hang-ups', () => {
  it('two requests pipelined on one socket both get 200', async () => {
    const gw = await gateway(undefined);
    const one = rawPost();
    const two = rawPost('Connection: close\r\n');
    const s = await rawSocket(gw, one + two);
    await Promise.race([s.closed, settle(5_000)]);
    const statuses = [...s.received().matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    expect(statuses).toEqual(['200', '200']);
    expect(gw.audit.filter((e) => e.reason === 'client_closed_request')).toEqual([]);
  });
});

describe('pipelining and hang-ups together', () => {
  it('a pipelined call whose socket dies before its turn is not left in flight', async () => {
    const gw = await gateway(undefined, {
      upstream: { connectTimeout: '1s', headersTimeout: '5s', bodyTimeout: '5s' },
    });
    open.splice(open.indexOf(gw), 1);
    world.standIn.setFault({ kind: 'latency', ms: 800, count: 1 });
    const req = (close = false) => rawPost(close ? 'Connection: close\r\n' : '');
    const s = await rawSocket(gw, req() + req(true));
    await settle(200);
    s.socket.destroy();
    await settle(1_200);
    const started = Date.now();
    const { drained } = await gw.gateway.shutdown(3_000);
    expect(drained).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('thirty pipelined calls on one socket add no listener warnings', async () => {
    const gw = await gateway(undefined);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const reqs = Array.from({ length: 30 }, (_, i) => rawPost(i === 29 ? 'Connection: close\r\n' : ''));
      const s = await rawSocket(gw, reqs.join(''));
      await Promise.race([s.closed, settle(8_000)]);
      expect([...s.received().matchAll(/HTTP\/1\.1 200/g)].length).toBe(30);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
  });

  it('a malformed request pipelined behind two valid ones is answered after both', async () => {
    const gw = await gateway(undefined);
    world.standIn.setFault({ kind: 'latency', ms: 300, count: 2 });
    const ok = () => rawPost();
    const s = await rawSocket(gw, `${ok()}${ok()}GET / HTTP/1.1\r\nBad Header\r\n\r\n`);
    await Promise.race([s.closed, settle(5_000)]);
    expect([...s.received().matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200', '200', '400']);
    s.socket.destroy();
  });
});

describe("slow bodies cannot hold an org's slots", () => {
  it('two stalled bodies leave both concurrency slots free and get 408 after the body deadline', async () => {
    const gw = await gateway(
      { limit: 100, window: '60s', concurrency: 2 },
      { server: { host: '127.0.0.1', port: 0, bodyTimeout: '800ms' } },
    );
    const head = rawPost('Content-Length: 10\r\n');
    const stalled = [await rawSocket(gw, head), await rawSocket(gw, head)];
    await settle(200);
    const third = await call(gw);
    expect(third.status, third.text).toBe(200);
    await Promise.race([Promise.all(stalled.map((s) => s.closed)), settle(3_000)]);
    for (const s of stalled) {
      expect(s.received()).toMatch(/^HTTP\/1\.1 408 /);
      expect(s.received()).toContain('application/problem+json');
      expect(s.received()).toContain('"code":"request_body_timeout"');
      s.socket.destroy();
    }
    expect(unhandled(gw)).toEqual([]);
  });

  it('a body aborted midway is a decision with its own code, not an unhandled error', async () => {
    const gw = await gateway({ limit: 100, window: '60s', concurrency: 2 });
    const before = world.standIn.startCalls().length;
    const s = await rawSocket(gw, rawPost('Content-Length: 100\r\n', '{"par'));
    await settle(200);
    s.socket.destroy();
    await settle(300);
    expect(world.standIn.startCalls().length - before).toBe(0);
    expect(gw.audit.find((e) => e.reason === 'request_body_aborted')?.decision).toBe('aborted');
    expect(unhandled(gw)).toEqual([]);
    expect(gw.logLines.join('\n')).not.toContain('"stack"');
  });
});

describe('upstream connections are bounded', () => {
  it(
    'calls beyond upstream.connections wait at most queueTimeout, ' +
      'and beyond maxQueue are refused at once: 503 upstream_busy',
    async () => {
      const gw = await gateway(undefined, {
        upstream: {
          connectTimeout: '1s',
          headersTimeout: '5s',
          bodyTimeout: '5s',
          connections: 1,
          maxQueue: 1,
          queueTimeout: '300ms',
        },
      });
      world.standIn.setFault({ kind: 'latency', ms: 1_200, count: 1 });
      const before = world.standIn.startCalls().length;
      const first = call(gw);
      await settle(100);
      const started = Date.now();
      const [queued, refused] = await Promise.all([call(gw), settle(30).then(() => call(gw))]);
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe('upstream_busy');
      expect(queued.status).toBe(503);
      expect(queued.json.code).toBe('upstream_busy');
      expect(queued.headers['content-type']).toBe('application/problem+json');
      expect(Date.now() - started).toBeLessThan(1_000);
      expect((await first).status).toBe(200);
      expect(world.standIn.startCalls().length - before).toBe(1);
    },
  );

  it('a call refused upstream_busy gets its quota back', async () => {
    const gw = await gateway(
      { limit: 10, window: '60s' },
      {
        upstream: {
          connectTimeout: '1s',
          headersTimeout: '5s',
          bodyTimeout: '5s',
          connections: 1,
          maxQueue: 0,
          queueTimeout: '300ms',
        },
      },
    );
    world.standIn.setFault({ kind: 'latency', ms: 600, count: 1 });
    const first = call(gw);
    await settle(150);
    expect((await call(gw)).json.code).toBe('upstream_busy');
    expect((await first).status).toBe(200);
    const after = await call(gw);
    // Counted: the first and this one; the busy one was given back.
    expect(String(after.headers.ratelimit)).toContain('"org-rate";r=8;');
  });

  it('closes a connection whose headers never finish within server.headersTimeout', async () => {
    const gw = await gateway(undefined, {
      server: { host: '127.0.0.1', port: 0, headersTimeout: '1s', requestTimeout: '2s' },
    });
    const s = await rawSocket(gw, `POST ${startPath()} HTTP/1.1\r\nHost: x\r\nX-Slow: `);
    const started = Date.now();
    await Promise.race([s.closed, settle(4_000)]);
    expect(s.socket.destroyed || s.socket.readableEnded).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_500);
    s.socket.destroy();
  });

  it('keeps idle connections open for server.keepAliveTimeout (75 s by default) and says so', async () => {
    const gw = await gateway(undefined);
    const res = await send(gw.url, 'GET', '/livez', { headers: { connection: 'keep-alive' } });
    expect(res.headers['keep-alive']).toBe('timeout=75');
    // An idle connection outlives Node's 5 s default and serves again.
    const s = await rawSocket(gw, 'GET /livez HTTP/1.1\r\nHost: x\r\n\r\n');
    await settle(6_000);
    expect(s.socket.destroyed).toBe(false);
    s.socket.write('GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await Promise.race([s.closed, settle(2_000)]);
    expect([...s.received().matchAll(/HTTP\/1\.1 200/g)].length).toBe(2);
  });
});

describe("readiness on the callers' port is cheap and says little", () => {
  let jwks: Listening;
  let fetches = 0;
  beforeAll(async () => {
    jwks = await listenOnLoopback(
      createServer((_req, res) => {
        fetches += 1;
        res.writeHead(503).end();
      }),
    );
  });
  afterAll(() => jwks.close());

  it('20 /readyz with an unreachable JWKS: one fetch, status only, no Redis or library text', async () => {
    const port = jwks.port;
    const gw = await gateway(undefined, {
      auth: {
        issuers: [
          {
            issuer: 'https://idp.down',
            audience: 'snapgate',
            jwksUri: `http://127.0.0.1:${port}/jwks`,
            algorithms: ['ES256'],
          },
        ],
      },
      policy: [],
    });
    fetches = 0;
    const replies: Reply[] = [];
    for (let i = 0; i < 20; i++) replies.push(await send(gw.url, 'GET', '/readyz'));
    expect(replies.every((r) => r.status === 503)).toBe(true);
    expect(replies.every((r) => JSON.stringify(r.json) === '{"status":"not_ready"}')).toBe(true);
    expect(fetches).toBeLessThanOrEqual(1);
    expect(gw.logs.filter((l) => l.msg === 'jwks fetch failed').length).toBeLessThanOrEqual(1);
    const detail = await send(`http://127.0.0.1:${gw.gateway.adminPort}`, 'GET', '/readyz');
    expect(detail.json.checks.jwks).toBe('signing keys not loaded');
  });
});

describe("without Redis, each worker's limiter takes its share", () => {
  it('server.workers: 2 with no redis admits limit / 2 in this process', async () => {
    const gw = await gateway(
      { limit: 6, window: '60s' },
      { redis: undefined, server: { host: '127.0.0.1', port: 0, workers: 2 } },
    );
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await call(gw)).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });
});

describe('shutdown loses no outcome', () => {
  it(
    'a body still arriving at shutdown is cut at once, ' + 'and its decision is written before the trail closes',
    async () => {
      const gw = await gateway(undefined, { server: { host: '127.0.0.1', port: 0, bodyTimeout: '10s' } });
      open.splice(open.indexOf(gw), 1);
      const s = await rawSocket(gw, rawPost('Content-Length: 10\r\n', '{'));
      await settle(200);
      const started = Date.now();
      await gw.gateway.shutdown(300);
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(gw.audit.find((e) => e.type === 'decision' && e.reason === 'aborted_by_shutdown')?.decision).toBe(
        'aborted',
      );
      expect(gw.logs.filter((l) => String(l.msg).includes('after the trail closed'))).toEqual([]);
      s.socket.destroy();
    },
  );

  it('a stalled Redis does not hold the exit', async () => {
    const gw = await gateway(undefined);
    open.splice(open.indexOf(gw), 1);
    world.redis.pause();
    const started = Date.now();
    await gw.gateway.shutdown(500);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a call cut at the drain deadline gets an aborted_by_shutdown outcome before the trail closes', async () => {
    const gw = await gateway(undefined);
    open.splice(open.indexOf(gw), 1);
    world.standIn.setFault({ kind: 'hang', count: 1 });
    const pending = call(gw).catch((err: unknown) => err);
    await settle(300);
    const attempt = gw.audit.find((e) => e.type === 'attempt');
    expect(attempt).toBeDefined();
    const { drained } = await gw.gateway.shutdown(500);
    expect(drained).toBe(false);
    const outcome = gw.audit.find((e) => e.type === 'outcome' && e.attemptId === attempt!.id);
    expect(outcome?.reason).toBe('aborted_by_shutdown');
    expect(outcome?.decision).toBe('aborted');
    // The caller is told, before the connection closes.
    const reply = (await pending) as Reply;
    expect(reply.status).toBe(503);
    expect(reply.json.code).toBe('aborted_by_shutdown');
  });
});
