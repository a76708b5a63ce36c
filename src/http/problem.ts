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

/** The status and headers of a problem response; `headers` (a fresh object) gets the content type added. */
export function problemInit(
  code: ErrorCode,
  headers: Record<string, string> = {},
): { status: number; headers: Record<string, string> } {
  headers['content-type'] = PROBLEM_CONTENT_TYPE;
  headers['cache-control'] = 'no-store';
  return { status: statusFor(code), headers };
}

/**
 * A complete problem+json Response, for answers outside any request context (a request Node or
 * node-server could not parse); inside the app, errors are rendered through respond().
 */
export function problemResponse(
  code: ErrorCode,
  detail: string,
  options: { headers?: Record<string, string>; extensions?: Record<string, unknown> } = {},
): Response {
  const body = JSON.stringify(problemBody(code, detail, options.extensions));
  return new Response(body, problemInit(code, { ...options.headers }));
}
