// The authenticate middleware: Bearer token in, verified Principal on the context, or a 401/503.
import type { MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import type { TokenVerifier } from './verifier.js';
import { incomingOf, requestHeader } from '../http/incoming.js';
import type { Context } from 'hono';

const bearer = /^Bearer[ ]+([^\s]+)[ ]*$/i;

/** True when the request carries Authorization more than once (Node keeps only the first). */
function repeatedAuthorization(c: Context): boolean {
  const raw = incomingOf(c)?.rawHeaders;
  if (raw === undefined) return false;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization' && ++seen > 1) return true;
  }
  return false;
}

/**
 * Verifies `Authorization: Bearer <JWT>`; sets `principal`. Throws GatewayError 401 (or 503 when keys are unavailable).
 */
export function authenticate(verifier: TokenVerifier): MiddlewareHandler<AppEnv> {
  return async function authenticateMiddleware(c, next) {
    const header = requestHeader(c, 'authorization');
    if (header === undefined || header.trim() === '') {
      throw new GatewayError(
        'token_missing',
        'Send Authorization: Bearer <JWT> with a token from your company identity provider.',
      );
    }
    if (repeatedAuthorization(c)) {
      throw new GatewayError('token_malformed', 'Send exactly one Authorization header; this request carries several.');
    }
    const match = bearer.exec(header);
    if (match?.[1] === undefined) {
      throw new GatewayError(
        'token_missing',
        'The Authorization header must use the Bearer scheme: Authorization: Bearer <JWT>. SnapLogic credentials ' +
          'are never accepted here.',
      );
    }
    c.set('principal', await verifier.verify(match[1]));
    await next();
  };
}
