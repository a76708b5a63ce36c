// The one error handler: GatewayError → its problem+json; anything else → a generic 500 that never echoes the message.
import type { ErrorHandler } from 'hono';
import { GatewayError } from '../errors.js';
import { describeError, type Logger } from '../log.js';
import type { AppEnv } from './app-env.js';
import { problemResponse } from './problem.js';
import { carriesRequestHeaders, withRequestHeaders } from './response-headers.js';

/** Renders errors thrown anywhere in the app. 401s carry RFC 6750 WWW-Authenticate. */
export function handleError(log: Logger): ErrorHandler<AppEnv> {
  return function errorHandler(err, c) {
    const requestId = c.get('requestId');
    if (err instanceof GatewayError) {
      const headers: Record<string, string> = { ...err.headers };
      if (err.status === 401) {
        headers['www-authenticate'] = `Bearer realm="snapgate", error="invalid_token", error_description="${err.code}"`;
      }
      if (err.status >= 500)
        log.warn('request failed', { requestId, code: err.code, error: describeError(err.cause ?? err) });
      return carriesRequestHeaders(
        c,
        problemResponse(err.code, err.detail, {
          headers: withRequestHeaders(c, headers),
          extensions: { ...err.extensions },
        }),
      );
    }
    log.error('unhandled error', {
      requestId,
      error: describeError(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    return carriesRequestHeaders(
      c,
      problemResponse(
        'internal_error',
        'snapgate hit an unexpected error. Retry later and quote the X-Request-Id when reporting it.',
        {
          headers: withRequestHeaders(c, {}),
        },
      ),
    );
  };
}
