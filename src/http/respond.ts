// Every response to a caller's request is built by respond(), which adds the request's own headers (X-Request-Id,
// RateLimit fields, Connection: close while draining) where the response is built rather than patching them on.
// Reading `c.res.headers` of a response built from plain fields makes @hono/node-server give up its fast path and
// build a full WHATWG Response, which costs more per call than most of what snapgate does.
import type { Context } from 'hono';
import type { AppEnv } from './app-env.js';

/** Headers every later response to this request carries (the RateLimit fields once a call is counted). */
export function addResponseHeaders(c: Context<AppEnv>, headers: Record<string, string>): void {
  Object.assign(c.get('responseHeaders'), headers);
}

/**
 * A response with the request's own headers added to `headers` (a fresh object the caller hands
 * over; the request's own headers win). The only way snapgate builds a response to a request.
 */
export function respond(
  c: Context<AppEnv>,
  body: ConstructorParameters<typeof Response>[0],
  init: { status: number; headers: Record<string, string> },
): Response {
  const own = c.get('responseHeaders');
  if (own !== undefined) for (const name in own) init.headers[name] = own[name]!;
  if (c.get('draining')?.() === true) init.headers.connection = 'close';
  const res = new Response(body, init);
  c.set('builtResponse', res);
  return res;
}

/** A JSON body with `cache-control: no-store`, through respond(). */
export function respondJson(c: Context<AppEnv>, status: number, value: unknown): Response {
  return respond(c, JSON.stringify(value), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

/**
 * Run by the request context once the response is decided. A response built by respond() needs
 * nothing, unless shutdown began after it was built (then it closes its connection too). Any other
 * (a handler that used Hono's c.json or c.text) gets the request's headers after the fact: a
 * safety net, slower, and never taken by snapgate's own routes.
 */
export function carryRequestHeaders(c: Context<AppEnv>): void {
  const draining = c.get('draining')?.() === true;
  if (c.get('builtResponse') === c.res) {
    if (draining && !c.res.headers.has('connection')) c.res.headers.set('connection', 'close');
    return;
  }
  const own = c.get('responseHeaders');
  if (own === undefined) return;
  for (const name in own) c.res.headers.set(name, own[name]!);
  if (draining) c.res.headers.set('connection', 'close');
}
