// The headers every response to a request carries, added where the response is built rather than patched on afterwards.
// Reading `c.res.headers` of a response built from plain fields makes @hono/node-server give up its fast path and
// build a full WHATWG Response, which costs more per call than most of what snapgate does.
import type { Context } from 'hono';
import type { AppEnv } from './app-env.js';

/** Adds the request's own response headers (which win) to `headers`, a fresh object the caller owns, and returns it. */
export function withRequestHeaders(c: Context<AppEnv>, headers: Record<string, string>): Record<string, string> {
  const own = c.get('responseHeaders');
  if (own !== undefined) for (const name in own) headers[name] = own[name]!;
  return headers;
}

/** Records `res` as built with `withRequestHeaders`, so nothing is added to it afterwards. */
export function carriesRequestHeaders(c: Context<AppEnv>, res: Response): Response {
  c.set('builtResponse', res);
  return res;
}

/** Adds the request's response headers to a response that was built without them (health checks, Hono's own). */
export function ensureRequestHeaders(c: Context<AppEnv>): void {
  if (c.get('builtResponse') === c.res) return;
  const own = c.get('responseHeaders');
  if (own === undefined) return;
  for (const name in own) c.res.headers.set(name, own[name]!);
}
