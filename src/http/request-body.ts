// Reads the request body before any limit is taken, within its own deadline, so a slow or stalled body cannot hold an
// org's slots.
import type { MiddlewareHandler } from 'hono';
import { GatewayError } from '../errors.js';
import type { AppEnv } from './app-env.js';
import { signalOf } from './call.js';
import { BodyReadError, readRequestBody } from './incoming.js';
import { addResponseHeaders } from './respond.js';

/**
 * Sets `body`. A body over `maxBytes` is 413 `payload_too_large`; one not received within
 * `timeoutMs` is 408 `request_body_timeout`; a caller that hangs up mid-body gets
 * `request_body_aborted` (nobody reads it; the audit decision records it). Each closes the connection.
 */
export function requestBody(options: {
  maxBytes: number;
  timeoutMs: number;
  note?: string;
}): MiddlewareHandler<AppEnv> {
  return async function requestBodyMiddleware(c, next) {
    try {
      c.set('body', await readRequestBody(c, options.maxBytes, options.timeoutMs, signalOf(c)));
    } catch (err) {
      if (!(err instanceof BodyReadError)) throw err;
      // The rest of the body is never read: the connection cannot carry another request.
      addResponseHeaders(c, { connection: 'close' });
      switch (err.reason) {
        case 'too_large':
          throw new GatewayError(
            'payload_too_large',
            `The request body exceeds ${options.maxBytes} bytes.${options.note ?? ''} Nothing was forwarded.`,
            { cause: err },
          );
        case 'timeout':
          throw new GatewayError(
            'request_body_timeout',
            `The request body did not arrive within ${options.timeoutMs} ms. Nothing was forwarded; send the whole ` +
              `body promptly (runtime calls take none).`,
            { cause: err },
          );
        case 'aborted':
          throw new GatewayError(
            'request_body_aborted',
            'The connection closed before the request body was complete. Nothing was forwarded.',
            { cause: err },
          );
        case 'shutdown':
          throw new GatewayError(
            'aborted_by_shutdown',
            'This snapgate instance shut down while the request body was arriving. Nothing was forwarded; retry.',
            { cause: err },
          );
      }
    }
    await next();
  };
}
