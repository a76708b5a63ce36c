// RFC 9457 problem+json responses: the only shape of every error snapgate sends.
import { problemTypeFor, titleFor, type ErrorCode, statusFor } from '../errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  [extension: string]: unknown;
}

/** Builds the body of a problem response. The request id travels in the X-Request-Id header. */
export function problemBody(code: ErrorCode, detail: string, extensions: Record<string, unknown> = {}): ProblemBody {
  return { type: problemTypeFor(code), title: titleFor(code), status: statusFor(code), code, detail, ...extensions };
}

/** A complete problem+json Response. Header names are lower-case. */
export function problemResponse(
  code: ErrorCode,
  detail: string,
  options: { headers?: Record<string, string>; extensions?: Record<string, unknown> } = {},
): Response {
  const headers = { ...options.headers, 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store' };
  return new Response(JSON.stringify(problemBody(code, detail, options.extensions)), {
    status: statusFor(code),
    headers,
  });
}
