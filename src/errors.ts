// The closed set of errors snapgate can answer with, and the one place that maps each to an HTTP status.

/** Every error code a client can see. Stable: callers may branch on these strings. */
export type ErrorCode =
  | 'invalid_path'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'malformed_request'
  | 'request_headers_too_large'
  | 'request_timeout'
  | 'request_body_timeout'
  | 'request_body_aborted'
  | 'token_missing'
  | 'token_malformed'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_signature_invalid'
  | 'token_audience_invalid'
  | 'token_issuer_untrusted'
  | 'token_algorithm_not_allowed'
  | 'token_claim_invalid'
  | 'token_key_unknown'
  | 'jwks_unavailable'
  | 'forbidden'
  | 'quota_exceeded'
  | 'temporary_reduced_capacity'
  | 'client_closed_request'
  | 'upstream_credentials_rejected'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_response_too_large'
  | 'upstream_busy'
  | 'aborted_by_shutdown'
  | 'shutting_down'
  | 'audit_unavailable'
  | 'internal_error';

/** What kind of outcome an error is; the audit trail records it as the decision. */
export type ErrorKind =
  | 'invalid_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'rate_limited'
  | 'upstream_error'
  | 'unavailable'
  | 'aborted'
  | 'error';

const token = (title = 'Invalid bearer token') => ({ status: 401, title, kind: 'unauthenticated' as const });

/** Status, title and kind per code. A Record over the union: a new code without an entry fails the type check. */
const catalog: Readonly<Record<ErrorCode, { status: number; title: string; kind: ErrorKind; type?: string }>> = {
  invalid_path: { status: 400, title: 'Invalid request path', kind: 'invalid_request' },
  not_found: { status: 404, title: 'Not found', kind: 'invalid_request' },
  method_not_allowed: { status: 405, title: 'Method not allowed', kind: 'invalid_request' },
  payload_too_large: { status: 413, title: 'Request body too large', kind: 'invalid_request' },
  malformed_request: { status: 400, title: 'Malformed HTTP request', kind: 'invalid_request' },
  request_headers_too_large: { status: 431, title: 'Request headers too large', kind: 'invalid_request' },
  request_timeout: { status: 408, title: 'Request not received in time', kind: 'invalid_request' },
  request_body_timeout: { status: 408, title: 'Request body not received in time', kind: 'invalid_request' },
  // The caller hung up mid-body: nobody receives this answer; the audit decision says so.
  request_body_aborted: { status: 400, title: 'Request body incomplete', kind: 'aborted' },
  token_missing: token(),
  token_malformed: token(),
  token_expired: token(),
  token_not_yet_valid: token(),
  token_signature_invalid: token(),
  token_audience_invalid: token(),
  token_issuer_untrusted: token(),
  token_algorithm_not_allowed: token(),
  token_claim_invalid: token(),
  token_key_unknown: token(),
  jwks_unavailable: { status: 503, title: 'Token keys unavailable', kind: 'unavailable' },
  forbidden: { status: 403, title: 'Forbidden', kind: 'forbidden' },
  quota_exceeded: {
    status: 429,
    title: 'Org quota exceeded',
    kind: 'rate_limited',
    type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  },
  temporary_reduced_capacity: {
    status: 503,
    title: 'Rate limiting temporarily unavailable',
    kind: 'unavailable',
    type: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
  },
  // nginx's convention for a caller that hung up before the answer; the caller never sees it.
  client_closed_request: { status: 499, title: 'Caller closed the request', kind: 'aborted' },
  upstream_credentials_rejected: {
    status: 502,
    title: 'SnapLogic rejected the stored credentials',
    kind: 'upstream_error',
  },
  upstream_unreachable: { status: 502, title: 'SnapLogic unreachable', kind: 'upstream_error' },
  upstream_timeout: { status: 504, title: 'SnapLogic timed out', kind: 'upstream_error' },
  upstream_response_too_large: { status: 502, title: 'SnapLogic response too large', kind: 'upstream_error' },
  upstream_busy: { status: 503, title: 'SnapLogic connections busy', kind: 'unavailable' },
  aborted_by_shutdown: { status: 503, title: 'Gateway shut down during the call', kind: 'aborted' },
  shutting_down: { status: 503, title: 'Gateway shutting down', kind: 'unavailable' },
  audit_unavailable: { status: 503, title: 'Audit trail unavailable', kind: 'unavailable' },
  internal_error: { status: 500, title: 'Internal error', kind: 'error' },
};

/** HTTP status for a code. */
export function statusFor(code: ErrorCode): number {
  return catalog[code].status;
}

/** Short human title per code; the `detail` of each error says what to do. */
export function titleFor(code: ErrorCode): string {
  return catalog[code].title;
}

/** The problem type URI: IANA-registered types where they exist, urn:snapgate:problem:<code> otherwise. */
export function problemTypeFor(code: ErrorCode): string {
  return catalog[code].type ?? `urn:snapgate:problem:${code}`;
}

/** The kind of outcome a code stands for (the audit decision). */
export function kindOf(code: ErrorCode): ErrorKind {
  return catalog[code].kind;
}

/**
 * An error that becomes a problem+json response where it is thrown. `detail` is shown to the
 * client, so it must never carry a secret or an internal message; `cause` is for logs only.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly extensions: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { cause?: unknown; headers?: Record<string, string>; extensions?: Record<string, unknown> } = {},
  ) {
    super(`${code}: ${detail}`, { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }

  get status(): number {
    return statusFor(this.code);
  }
}
