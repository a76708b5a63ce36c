// The headers every response to a request carries, added where the response is built rather than patched on afterwards.
// Reading `c.res.headers` of a response built from plain fields makes @hono/node-server give up its fast path and
// build a full WHATWG Response, which costs more per call than most of what snapgate does.
import type { Context } from 'hono';
import type { AppEnv } from './app-env.js';

const carrying = new WeakSet<Response>();

/** `headers` plus the request's own response headers (which win); the Response built from them is recorded as carrying them. */
export function withRequestHeaders(c: Context<AppEnv>, headers: Record<string, string>): Record<string, string> {
  const own = c.get('responseHeaders');
  return own === undefined ? headers : { ...headers, ...own };
}

/** Marks a response built with `withRequestHeaders`. */
export function carriesRequestHeaders(res: Response): Response {
  carrying.add(res);
  return res;
}

/** Adds the request's response headers to a response that was built without them (health checks, Hono's own). */
export function ensureRequestHeaders(c: Context<AppEnv>): void {
  if (carrying.has(c.res)) return;
  const own = c.get('responseHeaders');
  if (own === undefined) return;
  for (const name in own) c.res.headers.set(name, own[name]!);
}
