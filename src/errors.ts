// The closed set of errors snapgate can answer with, and the one place that maps each to an HTTP status.

/** Every error code a client can see. Stable: callers may branch on these strings. */
export type ErrorCode =
  | 'invalid_path'
  | 'invalid_query'
  | 'idempotency_key_invalid'
  | 'idempotency_key_missing'
  | 'idempotency_key_in_use'
  | 'idempotency_key_mismatch'
  | 'run_busy'
  | 'run_state_conflict'
  | 'run_state_unavailable'
  | 'coordination_unavailable'
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
  /** Refused because of another call: the same run or the same Idempotency-Key busy, or the run's state. */
  | 'conflict'
  | 'upstream_error'
  | 'unavailable'
  | 'aborted'
  | 'error';

interface CatalogEntry {
  status: number;
  title: string;
  kind: ErrorKind;
  /** The problem type URI, where an IANA-registered one fits. */
  type?: string;
}

const IANA_PROBLEM_TYPES = 'https://iana.org/assignments/http-problem-types#';

const invalidRequest = (status: number, title: string): CatalogEntry => ({ status, title, kind: 'invalid_request' });
/** A 401: the title is the same for every reason a token is refused; the detail says which. */
const token = (): CatalogEntry => ({ status: 401, title: 'Invalid bearer token', kind: 'unauthenticated' });
/** A 503: a dependency (or the gateway itself) cannot serve the call now; retrying later may work. */
const unavailable = (title: string, type?: string): CatalogEntry => ({
  status: 503,
  title,
  kind: 'unavailable',
  ...(type !== undefined ? { type } : {}),
});
const upstreamError = (status: number, title: string): CatalogEntry => ({ status, title, kind: 'upstream_error' });
const aborted = (status: number, title: string): CatalogEntry => ({ status, title, kind: 'aborted' });

/** Status, title and kind per code. A Record over the union: a new code without an entry fails the type check. */
const catalog: Readonly<Record<ErrorCode, CatalogEntry>> = {
  invalid_path: invalidRequest(400, 'Invalid request path'),
  invalid_query: invalidRequest(400, 'Invalid query parameter'),
  idempotency_key_invalid: invalidRequest(400, 'Invalid Idempotency-Key'),
  idempotency_key_missing: invalidRequest(400, 'Idempotency-Key required'),
  idempotency_key_in_use: { status: 409, title: 'Idempotency-Key in use', kind: 'conflict' },
  idempotency_key_mismatch: { status: 422, title: 'Idempotency-Key reused for another request', kind: 'conflict' },
  run_busy: { status: 409, title: 'Run busy', kind: 'conflict' },
  run_state_conflict: { status: 409, title: 'Run no longer in the expected state', kind: 'conflict' },
  run_state_unavailable: upstreamError(502, "Run's state unavailable"),
  coordination_unavailable: unavailable('Run coordination unavailable'),
  not_found: invalidRequest(404, 'Not found'),
  method_not_allowed: invalidRequest(405, 'Method not allowed'),
  payload_too_large: invalidRequest(413, 'Request body too large'),
  malformed_request: invalidRequest(400, 'Malformed HTTP request'),
  request_headers_too_large: invalidRequest(431, 'Request headers too large'),
  request_timeout: invalidRequest(408, 'Request not received in time'),
  request_body_timeout: invalidRequest(408, 'Request body not received in time'),
  // The caller hung up mid-body: nobody receives this answer; the audit decision says so.
  request_body_aborted: aborted(400, 'Request body incomplete'),
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
  jwks_unavailable: unavailable('Token keys unavailable'),
  forbidden: { status: 403, title: 'Forbidden', kind: 'forbidden' },
  quota_exceeded: {
    status: 429,
    title: 'Org quota exceeded',
    kind: 'rate_limited',
    type: `${IANA_PROBLEM_TYPES}quota-exceeded`,
  },
  temporary_reduced_capacity: unavailable(
    'Rate limiting temporarily unavailable',
    `${IANA_PROBLEM_TYPES}temporary-reduced-capacity`,
  ),
  // nginx's convention for a caller that hung up before the answer; the caller never sees it.
  client_closed_request: aborted(499, 'Caller closed the request'),
  upstream_credentials_rejected: upstreamError(502, 'SnapLogic rejected the stored credentials'),
  upstream_unreachable: upstreamError(502, 'SnapLogic unreachable'),
  upstream_timeout: upstreamError(504, 'SnapLogic timed out'),
  upstream_response_too_large: upstreamError(502, 'SnapLogic response too large'),
  upstream_busy: unavailable('SnapLogic connections busy'),
  aborted_by_shutdown: aborted(503, 'Gateway shut down during the call'),
  shutting_down: unavailable('Gateway shutting down'),
  audit_unavailable: unavailable('Audit trail unavailable'),
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
