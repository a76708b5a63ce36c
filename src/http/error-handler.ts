// The one error handler: GatewayError → its problem+json; anything else → a generic 500 that never echoes the message.
import type { Context, ErrorHandler } from 'hono';
import { GatewayError, type ErrorCode } from '../errors.js';
import { describeError, type Logger } from '../log.js';
import type { AppEnv } from './app-env.js';
import { problemBody, problemInit } from './problem.js';
import { respond } from './respond.js';

const INTERNAL_DETAIL = 'snapgate hit an unexpected error. Retry later and quote the X-Request-Id when reporting it.';

function renderProblem(
  c: Context<AppEnv>,
  code: ErrorCode,
  detail: string,
  headers: Record<string, string>,
  extensions?: Record<string, unknown>,
): Response {
  return respond(c, JSON.stringify(problemBody(code, detail, extensions)), problemInit(code, headers));
}

/** Renders errors thrown anywhere in the app. 401s carry RFC 6750 WWW-Authenticate. */
export function handleError(log: Logger): ErrorHandler<AppEnv> {
  return function errorHandler(err, c) {
    const requestId = c.get('requestId');
    if (!(err instanceof GatewayError)) {
      const stack = err instanceof Error ? err.stack : undefined;
      log.error('unhandled error', { requestId, error: describeError(err), stack });
      return renderProblem(c, 'internal_error', INTERNAL_DETAIL, {});
    }
    const headers: Record<string, string> = { ...err.headers };
    if (err.status === 401) {
      headers['www-authenticate'] = `Bearer realm="snapgate", error="invalid_token", error_description="${err.code}"`;
    }
    if (err.status >= 500) {
      log.warn('request failed', { requestId, code: err.code, error: describeError(err.cause ?? err) });
    }
    return renderProblem(c, err.code, err.detail, headers, { ...err.extensions });
  };
}
