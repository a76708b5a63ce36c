// Rejects request targets that could steer the upstream path, judged on the raw target before any normalisation.
import type { HttpBindings } from '@hono/node-server';
import type { MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from './app-env.js';

const MAX_TARGET_LENGTH = 2048;

// Dot segments (raw or percent-encoded), encoded or raw slashes and backslashes inside a segment,
// and control characters (raw or encoded) can all change which upstream path a value names.
const dotSegment = /(^|\/)(\.|%2e){1,2}(\/|$)/i;
const encodedSeparator = /%2f|%5c|\\/i;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const controlChars = /%[01][0-9a-f]|%7f|[\u0000-\u001f\u007f]/i;

/** The request target as the client sent it. WHATWG URL parsing would already have folded "..". */
export function rawTarget(env: unknown, fallbackUrl: string): string {
  const incoming = (env as Partial<HttpBindings> | undefined)?.incoming;
  if (incoming?.url !== undefined) return incoming.url;
  const u = new URL(fallbackUrl);
  return u.pathname + u.search;
}

/** Answers 400 `invalid_path` for unsafe request targets, before routing, auth or anything else. */
export function rawPathGuard(): MiddlewareHandler<AppEnv> {
  return async function rawPathGuardMiddleware(c, next) {
    const target = rawTarget(c.env, c.req.url);
    const path = target.split('?', 1)[0] ?? '';
    if (
      target.length > MAX_TARGET_LENGTH ||
      dotSegment.test(path) ||
      encodedSeparator.test(path) ||
      controlChars.test(path) ||
      path.includes('//')
    ) {
      throw new GatewayError(
        'invalid_path',
        'The request path contains a dot segment, an encoded slash or backslash, a control character or an empty ' +
          'segment, or is too long. Send /api/1/rest/public/runtime/start/{org}/{ruuid} with plain values.',
      );
    }
    await next();
  };
}
