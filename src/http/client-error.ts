// Answers requests Node's HTTP parser refused before they reached the app (malformed, headers too large, too slow).
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { PROBLEM_CONTENT_TYPE, problemBody } from './problem.js';

/** How long a refused connection may stay half-closed for the caller to read the answer, ms. */
const LINGER_MS = 1_000;

/**
 * What the caller is told per parser error. Anything not here is a socket failure (ECONNRESET,
 * EPIPE, ...), where nobody is left to read an answer.
 */
function refusalOf(code: string | undefined): { code: ErrorCode; detail: string } | undefined {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        code: 'request_headers_too_large',
        detail:
          'The request line and headers are larger than snapgate accepts. Send fewer or shorter headers. Nothing ' +
          'was forwarded.',
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        code: 'payload_too_large',
        detail:
          'The chunk extensions of the request body are larger than snapgate accepts. Send the body without chunk ' +
          'extensions. Nothing was forwarded.',
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        code: 'request_timeout',
        detail:
          'The request headers or body did not arrive in time. Send the whole request at once and retry. Nothing ' +
          'was forwarded.',
      };
    default:
      if (code?.startsWith('HPE_') === true) {
        return {
          code: 'malformed_request',
          detail:
            'The request is not valid HTTP/1.1 (request line, a header, or the body framing). Fix the client and ' +
            'retry. Nothing was forwarded.',
        };
      }
      return undefined;
  }
}

/** The complete HTTP/1.1 answer: problem+json with its length, never cached, and the connection closed. */
function answerBytes(code: ErrorCode, detail: string, requestId: string): string {
  const problem = problemBody(code, detail);
  const body = JSON.stringify(problem);
  const { status } = problem;
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    `content-type: ${PROBLEM_CONTENT_TYPE}`,
    'cache-control: no-store',
    'connection: close',
    `x-request-id: ${requestId}`,
    `content-length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

/**
 * A 'clientError' listener for node:http servers. Answers a parser refusal or a header/request
 * timeout with the catalog's problem+json, then closes the connection; destroys the socket when
 * nobody can read an answer or a response has already started on it. Logs one debug line with the
 * error code only: never the request bytes, never a stack.
 */
export function answerClientError(log: Logger): (err: Error & { code?: string }, socket: Duplex) => void {
  // The parser reports again for every later chunk and every timeout tick on a socket it refused.
  const refused = new WeakSet<Duplex>();

  return function onClientError(err, socket) {
    if (refused.has(socket)) return;
    refused.add(socket);
    const refusal = refusalOf(err.code);
    // The response in flight on this socket, if any (Node keeps it there; there is no public accessor).
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
    const requestId = randomUUID();
    log.debug('request refused by the HTTP parser', {
      requestId,
      code: err.code ?? 'unknown',
      answer: refusal?.code ?? 'closed',
    });
    if (refusal === undefined || !socket.writable) {
      socket.destroy();
      return;
    }

    const answer = (): void => {
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref();
      socket.once('close', () => clearTimeout(linger));
      // Half-close: the caller reads the whole answer, and the socket is gone once it hangs up or lingers too long.
      socket.end(answerBytes(refusal.code, refusal.detail, requestId));
    };

    // A pipelined request whose predecessors are still being answered: answering now would pass for
    // a predecessor's answer, so the refusal follows the last of them. When one finishes, Node hands
    // the socket to the next queued response, so look again until none is left.
    const afterPending = (current: ServerResponse): void => {
      current.once('finish', () =>
        setImmediate(() => {
          const next = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
          if (next === undefined || next === current || next.writableFinished) answer();
          else afterPending(next);
        }),
      );
      current.once('close', () => {
        if (!current.writableFinished) socket.destroy();
      });
    };

    if (inFlight === undefined) {
      answer();
    } else if (inFlight.req.complete) {
      afterPending(inFlight);
    } else if (inFlight.headersSent) {
      // The answer to this very request has begun: more bytes would corrupt it.
      socket.destroy();
    } else {
      answer();
    }
  };
}
