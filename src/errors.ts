// The closed set of errors snapgate can answer with, and the one place that maps each to an HTTP status.

/** Every error code a client can see. Stable: callers may branch on these strings. */
export type ErrorCode =
  | 'invalid_path'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
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
  | 'upstream_credentials_rejected'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_response_too_large'
  | 'shutting_down'
  | 'internal_error';

/** HTTP status for a code. Exhaustive: adding a code without a status fails the type check. */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case 'invalid_path':
      return 400;
    case 'not_found':
      return 404;
    case 'method_not_allowed':
      return 405;
    case 'payload_too_large':
      return 413;
    case 'token_missing':
    case 'token_malformed':
    case 'token_expired':
    case 'token_not_yet_valid':
    case 'token_signature_invalid':
    case 'token_audience_invalid':
    case 'token_issuer_untrusted':
    case 'token_algorithm_not_allowed':
    case 'token_claim_invalid':
    case 'token_key_unknown':
      return 401;
    case 'forbidden':
      return 403;
    case 'upstream_credentials_rejected':
    case 'upstream_unreachable':
    case 'upstream_response_too_large':
      return 502;
    case 'jwks_unavailable':
    case 'shutting_down':
      return 503;
    case 'upstream_timeout':
      return 504;
    case 'internal_error':
      return 500;
  }
}

/** Short human title per code; the `detail` of each error says what to do. */
export function titleFor(code: ErrorCode): string {
  switch (code) {
    case 'invalid_path':
      return 'Invalid request path';
    case 'not_found':
      return 'Not found';
    case 'method_not_allowed':
      return 'Method not allowed';
    case 'payload_too_large':
      return 'Request body too large';
    case 'token_missing':
    case 'token_malformed':
    case 'token_expired':
    case 'token_not_yet_valid':
    case 'token_signature_invalid':
    case 'token_audience_invalid':
    case 'token_issuer_untrusted':
    case 'token_algorithm_not_allowed':
    case 'token_claim_invalid':
    case 'token_key_unknown':
      return 'Invalid bearer token';
    case 'jwks_unavailable':
      return 'Token keys unavailable';
    case 'shutting_down':
      return 'Gateway shutting down';
    case 'forbidden':
      return 'Forbidden';
    case 'upstream_credentials_rejected':
      return 'SnapLogic rejected the stored credentials';
    case 'upstream_unreachable':
      return 'SnapLogic unreachable';
    case 'upstream_timeout':
      return 'SnapLogic timed out';
    case 'upstream_response_too_large':
      return 'SnapLogic response too large';
    case 'internal_error':
      return 'Internal error';
  }
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
