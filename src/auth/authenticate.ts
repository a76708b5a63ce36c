// The authenticate middleware: Bearer token in, verified Principal on the context, or a 401/503.
import type { MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from '../http/app-env.js';
import type { TokenVerifier } from './verifier.js';
import { requestHeader } from '../http/incoming.js';

const bearer = /^Bearer[ ]+([^\s]+)[ ]*$/i;

/** Verifies `Authorization: Bearer <JWT>`; sets `principal`. Throws GatewayError 401 (or 503 when keys are unavailable). */
export function authenticate(verifier: TokenVerifier): MiddlewareHandler<AppEnv> {
  return async function authenticateMiddleware(c, next) {
    const header = requestHeader(c, 'authorization');
    if (header === undefined || header.trim() === '') {
      throw new GatewayError('token_missing', 'Send Authorization: Bearer <JWT> with a token from your company identity provider.');
    }
    const match = bearer.exec(header);
    if (match?.[1] === undefined) {
      throw new GatewayError(
        'token_missing',
        'The Authorization header must use the Bearer scheme: Authorization: Bearer <JWT>. SnapLogic credentials are never accepted here.',
      );
    }
    c.set('principal', await verifier.verify(match[1]));
    await next();
  };
}
