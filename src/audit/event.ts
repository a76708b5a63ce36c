// The audit event: built from an allow-list of fields, so tokens, credentials, headers and bodies cannot reach it.
import type { Action } from '../config/schema.js';
import type { ErrorKind } from '../errors.js';

/** `allowed`, or the kind of the error that ended the request. */
export type Decision = 'allowed' | ErrorKind;

/** What a request has established while it ran; each middleware fills in what it learns. */
export interface AuditFields {
  org?: string;
  ruuid?: string;
  action?: Action;
  upstreamStatus?: number;
  upstreamLatencyMs?: number;
  rateLimit?: RateLimitOutcome;
}

/** What the rate limiter decided: allowed, limited (429), would_limit (a shadow policy), or unavailable (Redis down, closed mode). */
export interface RateLimitOutcome {
  outcome: 'allowed' | 'limited' | 'would_limit' | 'unavailable';
  /** The policies that refused (or, for would_limit, would have). */
  policies: string[];
  /** Set when Redis was unavailable and the org's onRedisError mode decided. */
  degraded?: 'local' | 'open';
}

export interface AuditEvent {
  readonly type: 'audit';
  readonly v: 1;
  readonly time: string;
  readonly requestId: string;
  readonly instance: string;
  readonly caller: { readonly iss: string; readonly sub: string; readonly clientId?: string } | null;
  readonly org: string | null;
  readonly ruuid: string | null;
  readonly action: Action | null;
  readonly decision: Decision;
  /** The error code for any decision but `allowed`, e.g. `token_expired`. */
  readonly reason: string | null;
  /** The status snapgate answered with. */
  readonly status: number;
  readonly upstreamStatus: number | null;
  readonly rateLimit: RateLimitOutcome | null;
  readonly latencyMs: number;
}

export interface AuditSink {
  write(event: AuditEvent): void;
}

/** Writes each event as one JSON line, e.g. to stdout. */
export function createLineSink(write: (line: string) => void): AuditSink {
  return { write: (event) => write(`${JSON.stringify(event)}\n`) };
}

/** Copies only the allowed fields; callers may pass richer objects without widening the event. */
export function buildAuditEvent(input: {
  time: Date;
  requestId: string;
  instance: string;
  caller: { iss: string; sub: string; clientId?: string } | undefined;
  fields: AuditFields;
  decision: Decision;
  reason: string | undefined;
  status: number;
  latencyMs: number;
}): AuditEvent {
  const { caller, fields } = input;
  return {
    type: 'audit',
    v: 1,
    time: input.time.toISOString(),
    requestId: input.requestId,
    instance: input.instance,
    caller: caller
      ? { iss: caller.iss, sub: caller.sub, ...(caller.clientId !== undefined ? { clientId: caller.clientId } : {}) }
      : null,
    org: fields.org ?? null,
    ruuid: fields.ruuid ?? null,
    action: fields.action ?? null,
    decision: input.decision,
    reason: input.reason ?? null,
    status: input.status,
    upstreamStatus: fields.upstreamStatus ?? null,
    rateLimit: fields.rateLimit
      ? {
          outcome: fields.rateLimit.outcome,
          policies: [...fields.rateLimit.policies],
          ...(fields.rateLimit.degraded !== undefined ? { degraded: fields.rateLimit.degraded } : {}),
        }
      : null,
    latencyMs: Math.round(input.latencyMs * 10) / 10,
  };
}
