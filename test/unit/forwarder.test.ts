// The upstream forwarder against a tiny node:http server on loopback: how each transport failure is translated into a
// GatewayError, and whether the call had been handed to SnapLogic (onDispatch) when it failed.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError, type ErrorCode } from '../../src/errors.js';
import {
  createForwarder,
  mayHaveBeenSent,
  type Forwarder,
  type ForwarderOptions,
  type UpstreamAbortSignal,
  type UpstreamRequest,
} from '../../src/upstream/forwarder.js';
import { listenOnLoopback, type Listening } from '../helpers/loopback.js';
import { sleep, until } from '../helpers/wait.js';

/** How the server answers each path. */
const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/ok': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
  // Never answers: the socket is destroyed when the server closes.
  '/hang': () => undefined,
  // Answers after 200 ms, holding its connection meanwhile.
  '/slow': (_req, res) => {
    setTimeout(() => res.writeHead(200).end('{}'), 200);
  },
  // Headers, part of the body, then silence.
  '/stall-body': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"partial":');
  },
  // Headers, part of the body, then the connection is reset.
  '/reset-body': (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"partial":', () => setTimeout(() => req.socket.destroy(), 20));
  },
  '/large': (_req, res) => res.writeHead(200).end(Buffer.alloc(2_048, 'x')),
  // Headers at once, then one byte every 50 ms for 3 s: never silent for long, never done.
  '/drip': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '60' });
    let sent = 0;
    const timer = setInterval(() => {
      if (res.destroyed || ++sent >= 60) clearInterval(timer);
      else res.write(' ');
    }, 50);
  },
};

let server: Listening;
/** Paths the server received, in order. */
const received: string[] = [];
const forwarders: Forwarder[] = [];

beforeAll(async () => {
  server = await listenOnLoopback(
    createServer((req, res) => {
      received.push(req.url ?? '');
      (routes[req.url ?? ''] ?? ((_q, r: ServerResponse) => r.writeHead(404).end()))(req, res);
    }),
  );
});

afterEach(async () => {
  // A forwarder's close waits for calls in flight: hung ones end when the server closes their sockets below.
  const closing = forwarders.splice(0).map((f) => f.close());
  await Promise.race([Promise.all(closing), sleep(500)]);
  received.length = 0;
});

afterAll(() => server.close());

function forwarder(options: Partial<ForwarderOptions> = {}): Forwarder {
  const f = createForwarder({
    keepAliveTimeout: 1_000,
    connections: 4,
    maxResponseBytes: 1_024,
    maxQueue: 10,
    queueTimeout: 1_000,
    ...options,
  });
  forwarders.push(f);
  return f;
}

/** An abort signal as the request context makes one: an EventEmitter with `aborted` and `reason`. */
class TestSignal extends EventEmitter implements UpstreamAbortSignal {
  aborted = false;
  reason: 'caller' | 'shutdown' | undefined;

  fire(reason: 'caller' | 'shutdown'): void {
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

interface Attempt {
  /** Whether onDispatch ran: the call was handed to the connection pool. */
  dispatched: boolean;
  request: UpstreamRequest;
}

function attempt(
  path: string,
  options: { origin?: string; headersMs?: number; bodyMs?: number; signal?: UpstreamAbortSignal } = {},
): Attempt {
  const a: Attempt = {
    dispatched: false,
    request: {
      origin: options.origin ?? `http://127.0.0.1:${server.port}`,
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      timeouts: { connect: 500, headers: options.headersMs ?? 2_000, body: options.bodyMs ?? 2_000 },
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      onDispatch: () => {
        a.dispatched = true;
      },
    },
  };
  return a;
}

/** The GatewayError `promise` rejects with; fails the test when it resolves or rejects with something else. */
async function refusal(promise: Promise<unknown>): Promise<GatewayError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (err: unknown) => ({ err }),
  );
  if (!('err' in outcome)) throw new Error(`expected a GatewayError, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.err, String(outcome.err)).toBeInstanceOf(GatewayError);
  return outcome.err as GatewayError;
}

function expectCode(err: GatewayError, code: ErrorCode, status: number): void {
  expect(err.code, err.message).toBe(code);
  expect(err.status).toBe(status);
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const s = await listenOnLoopback(createServer());
  await s.close();
  return s.port;
}

describe('a call SnapLogic answers', () => {
  it('passes status, headers and body through, dispatched once', async () => {
    const a = attempt('/ok');
    const res = await forwarder().forward(a.request);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(Buffer.from(res.body).toString()).toBe('{"ok":true}');
    expect(a.dispatched).toBe(true);
    expect(received).toEqual(['/ok']);
  });

  it('refuses a response larger than maxResponseBytes: 502 upstream_response_too_large', async () => {
    const err = await refusal(forwarder({ maxResponseBytes: 1_024 }).forward(attempt('/large').request));
    expectCode(err, 'upstream_response_too_large', 502);
  });
});

describe('transport failures', () => {
  it('connection refused: 502 upstream_unreachable, marked as never sent', async () => {
    const a = attempt('/ok', { origin: `http://127.0.0.1:${await closedPort()}` });
    const err = await refusal(forwarder().forward(a.request));
    expectCode(err, 'upstream_unreachable', 502);
    expect(a.dispatched).toBe(true);
    expect(mayHaveBeenSent(err)).toBe(false);
    expect(err.detail).toContain('nothing was sent');
    expect(err.cause).toBeDefined();
  });

  it('no headers within the headers timeout, or a body stalled past the body timeout: 504, sent once', async () => {
    // Both at once: each waits about a second for undici's timers.
    const headers = attempt('/hang', { headersMs: 200 });
    const body = attempt('/stall-body', { bodyMs: 200 });
    const started = Date.now();
    const f = forwarder();
    const [noHeaders, stalledBody] = await Promise.all([
      refusal(f.forward(headers.request)),
      refusal(f.forward(body.request)),
    ]);
    expectCode(noHeaders, 'upstream_timeout', 504);
    expectCode(stalledBody, 'upstream_timeout', 504);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect([headers.dispatched, body.dispatched]).toEqual([true, true]);
    expect(received.sort()).toEqual(['/hang', '/stall-body']);
    expect(noHeaders.detail).toContain("check the run's state");
    expect([mayHaveBeenSent(noHeaders), mayHaveBeenSent(stalledBody)]).toEqual([true, true]);
  });

  it('a connection reset in the middle of the body: 502 upstream_unreachable, never retried', async () => {
    const a = attempt('/reset-body');
    const err = await refusal(forwarder().forward(a.request));
    expectCode(err, 'upstream_unreachable', 502);
    expect(a.dispatched).toBe(true);
    expect(mayHaveBeenSent(err)).toBe(true);
    await sleep(100);
    expect(received).toEqual(['/reset-body']);
  });
});

describe('a bounded call', () => {
  it('a body that trickles in is cut at connect + headers + body in all: 504, may have taken effect', async () => {
    const a = attempt('/drip', { headersMs: 200, bodyMs: 200 });
    a.request.timeouts = { connect: 100, headers: 200, body: 200 };
    const started = Date.now();
    const err = await refusal(forwarder().forward(a.request));
    expectCode(err, 'upstream_timeout', 504);
    expect(mayHaveBeenSent(err)).toBe(true);
    expect(err.detail).toContain('in all');
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('reads hold at most half the connections: a write still gets one while reads wait', async () => {
    const f = forwarder({ connections: 2 });
    const reads = [attempt('/slow'), attempt('/slow')].map((a) => {
      a.request.kind = 'read';
      return f.forward(a.request);
    });
    await until(() => received.length >= 1, 2_000);
    const write = attempt('/ok');
    const answer = await f.forward(write.request);
    expect(answer.status).toBe(200);
    // The second read waited for the first: the write was sent before it.
    expect(received.slice(0, 2)).toEqual(['/slow', '/ok']);
    expect((await Promise.all(reads)).map((r) => r.status)).toEqual([200, 200]);
  });
});

describe('a bounded queue per origin', () => {
  /** Holds `f`'s one connection with a slow call while another is forwarded: that one's refusal, and its wait. */
  async function refusedWhileHeld(f: Forwarder): Promise<{ err: GatewayError; ms: number; next: Attempt }> {
    const held = attempt('/slow');
    const pending = f.forward(held.request);
    await until(() => received.length === 1, 2_000);
    const next = attempt('/ok');
    const started = Date.now();
    const err = await refusal(f.forward(next.request));
    const ms = Date.now() - started;
    expect(held.dispatched).toBe(true);
    expect((await pending).status).toBe(200);
    expect(received, 'the refused call reached the server').toEqual(['/slow']);
    return { err, ms, next };
  }

  it('beyond maxQueue: 503 upstream_busy at once with Retry-After, never dispatched', async () => {
    const { err, ms, next } = await refusedWhileHeld(forwarder({ connections: 1, maxQueue: 0 }));
    expectCode(err, 'upstream_busy', 503);
    expect(ms).toBeLessThan(100);
    expect(err.headers['retry-after']).toBe('1');
    expect(err.detail).toContain('Nothing was forwarded');
    expect(next.dispatched).toBe(false);
  });

  it('a call that waits longer than queueTimeout for a connection: 503 upstream_busy, never dispatched', async () => {
    const { err, ms, next } = await refusedWhileHeld(forwarder({ connections: 1, maxQueue: 1, queueTimeout: 100 }));
    expectCode(err, 'upstream_busy', 503);
    expect(ms).toBeGreaterThanOrEqual(90);
    expect(next.dispatched).toBe(false);
  });

  it('a queued call gets the connection the call before it frees', async () => {
    const f = forwarder({ connections: 1, maxQueue: 1, queueTimeout: 2_000 });
    const [one, two] = await Promise.all([f.forward(attempt('/ok').request), f.forward(attempt('/ok').request)]);
    expect([one.status, two.status]).toEqual([200, 200]);
    expect(received).toEqual(['/ok', '/ok']);
  });
});

describe('a call abandoned by its signal', () => {
  const beforeDispatch: Array<['caller' | 'shutdown', ErrorCode, number, string]> = [
    ['caller', 'client_closed_request', 499, 'Nothing was forwarded.'],
    ['shutdown', 'aborted_by_shutdown', 503, 'Nothing was forwarded; retry.'],
  ];
  it.each(beforeDispatch)('a %s abort before dispatch: %s (%i), nothing sent', async (reason, code, status, detail) => {
    const signal = new TestSignal();
    signal.fire(reason);
    const a = attempt('/ok', { signal });
    const err = await refusal(forwarder().forward(a.request));
    expectCode(err, code, status);
    expect(err.detail).toContain(detail);
    expect(a.dispatched).toBe(false);
    await sleep(50);
    expect(received).toEqual([]);
  });

  it('a caller that leaves while its call waits in the queue is never dispatched', async () => {
    const f = forwarder({ connections: 1, maxQueue: 1, queueTimeout: 2_000 });
    const pending = f.forward(attempt('/slow').request);
    await until(() => received.length === 1, 2_000);
    const signal = new TestSignal();
    const queued = attempt('/ok', { signal });
    const waiting = refusal(f.forward(queued.request));
    await sleep(50);
    signal.fire('caller');
    const err = await waiting;
    expectCode(err, 'client_closed_request', 499);
    expect(err.detail).toContain('Nothing was forwarded');
    expect(queued.dispatched).toBe(false);
    expect((await pending).status).toBe(200);
    await sleep(50);
    expect(received).toEqual(['/slow']);
  });

  it('a caller already gone when every connection is busy is refused at once, not after queueTimeout', async () => {
    const f = forwarder({ connections: 1, maxQueue: 1, queueTimeout: 2_000 });
    // Holds the only connection until its headers timeout.
    const held = refusal(f.forward(attempt('/hang', { headersMs: 1_000 }).request));
    await until(() => received.length === 1, 2_000);
    const signal = new TestSignal();
    signal.fire('caller');
    const gone = attempt('/ok', { signal });
    const started = Date.now();
    const err = await refusal(f.forward(gone.request));
    expect(Date.now() - started).toBeLessThan(100);
    expectCode(err, 'client_closed_request', 499);
    expect(gone.dispatched).toBe(false);
    expectCode(await held, 'upstream_timeout', 504);
  });

  const afterDispatch: Array<['caller' | 'shutdown', ErrorCode, number, RegExp]> = [
    ['caller', 'client_closed_request', 499, /before SnapLogic answered; the call was abandoned/],
    ['shutdown', 'aborted_by_shutdown', 503, /may or may not have taken effect/],
  ];
  it.each(afterDispatch)(
    'a %s abort after dispatch: %s (%i), and the call was sent',
    async (reason, code, status, detail) => {
      const signal = new TestSignal();
      const a = attempt('/hang', { signal });
      const call = refusal(forwarder().forward(a.request));
      await until(() => received.length === 1, 2_000);
      signal.fire(reason);
      const err = await call;
      expectCode(err, code, status);
      expect(a.dispatched).toBe(true);
      expect(err.detail).toMatch(detail);
      expect(err.detail).not.toContain('Nothing was forwarded');
    },
  );
});
