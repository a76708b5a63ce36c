// The audit event model (v3): built from an allow-list of fields, so tokens, credentials, cookies, headers, bodies and
// query strings cannot reach it.
import { randomUUID } from 'node:crypto';
import type { Action } from '../config/schema.js';
import type { UpstreamIdentity } from '../credentials/upstream-auth.js';
import type { ErrorKind } from '../errors.js';
import type { RequestTarget } from '../snaplogic/target.js';

export const AUDIT_SCHEMA_VERSION = 3;

/** `allowed`, or the kind of the error that ended the request. */
export type Decision = 'allowed' | ErrorKind;

/**
 * - `attempt`: an allowed call, written (and acknowledged by the required sinks) before it is forwarded.
 * - `outcome`: what happened to that call; refers to its attempt.
 * - `decision`: a request that was never forwarded (denied, invalid, unavailable).
 * - `denials`: denials folded together once a caller exceeds one full event per reason per second.
 * - `dropped`: how many events one sink could not hold while it was down (its queue was full).
 */
export type AuditEventType = 'attempt' | 'outcome' | 'decision' | 'denials' | 'dropped';

/**
 * What the rate limiter decided: allowed, limited (429), would_limit (a shadow policy), or unavailable (Redis down,
 * closed mode); `pending` on an attempt written beside the rate-limit check, before its answer (the outcome has it).
 */
export interface RateLimitOutcome {
  outcome: 'allowed' | 'limited' | 'would_limit' | 'unavailable' | 'pending';
  /** The policies that refused (or, for would_limit, would have). */
  policies: string[];
  /** Set when Redis was unavailable and the org's onRedisError mode decided. */
  degraded?: 'local' | 'open';
}

/** What a call has established while it ran, beyond its target; each step fills in what it learns. */
export interface CallFacts {
  upstreamStatus?: number;
  slStatusCode?: string;
  upstreamLatencyMs?: number;
  rateLimit?: RateLimitOutcome;
  /** Set once the attempt event of this request has been acknowledged. */
  attemptId?: string;
  /**
   * A write with an Idempotency-Key: `new` (first use), `retry` (after an unknown outcome: the run's state was read
   * first) or `replayed` (the stored answer was returned, nothing forwarded).
   */
  idempotency?: 'new' | 'retry' | 'replayed';
  /** The run's state as read before a retry after an unknown outcome. */
  runState?: string;
  /** The SnapLogic identity the call was sent as (never a secret). */
  upstreamIdentity?: UpstreamIdentity;
}

export interface Caller {
  readonly iss: string;
  readonly sub: string;
  readonly clientId?: string;
}

/** Where the chain fields are added by each sink (see chain.ts). */
export interface ChainFields {
  /** The process that wrote the chain: instance plus a random suffix per start. */
  readonly writer: string;
  readonly seq: number;
  readonly prev: string;
  readonly hash: string;
}

export interface AuditEvent {
  readonly v: typeof AUDIT_SCHEMA_VERSION;
  readonly id: string;
  readonly type: AuditEventType;
  readonly time: string;
  readonly requestId: string;
  readonly instance: string;
  readonly caller: Caller | null;
  readonly org: string | null;
  readonly ruuid: string | null;
  readonly action: Action | null;
  readonly decision: Decision;
  /** The error code for any decision but `allowed`, e.g. `token_expired`. */
  readonly reason: string | null;
  readonly rateLimit: RateLimitOutcome | null;
  /** The status snapgate answered with (null on an attempt: not answered yet). */
  readonly status: number | null;
  readonly upstreamStatus: number | null;
  /** SnapLogic's X-SL-StatusCode header, when it sent one. */
  readonly slStatusCode: string | null;
  readonly latencyMs: number | null;
  readonly client: { readonly address: string | null; readonly userAgent: string | null };
  /** On an outcome: the id of its attempt. */
  readonly attemptId?: string;
  /** On a write with an Idempotency-Key: new, retry (after an unknown outcome) or replayed. */
  readonly idempotency?: 'new' | 'retry' | 'replayed';
  /** The run's state read before a retry after an unknown outcome (one of SnapLogic's state names). */
  readonly runState?: string;
  /** The SnapLogic identity SnapLogic saw: basic or jwt, the identity's name, and for jwt the user (sub). */
  readonly upstreamIdentity?: UpstreamIdentity;
  /** On a denials event: how many denials it stands for, and over which period. */
  readonly count?: number;
  readonly window?: { readonly from: string; readonly to: string };
  /** On a dropped event: the sink whose queue was full. */
  readonly sink?: string;
  /** With tracing on: the trace the request belongs to (32 hex digits), as in its spans and log lines. */
  readonly traceId?: string;
  /** Added by the sink that wrote it. */
  readonly chain?: ChainFields;
}

/** The identity's allowed members only. */
function copyIdentity(i: UpstreamIdentity): UpstreamIdentity {
  return {
    type: i.type,
    name: i.name,
    ...(i.user !== undefined ? { user: i.user } : {}),
    ...(i.nextPassword === true ? { nextPassword: true as const } : {}),
  };
}

const MAX_USER_AGENT = 200;
const plainUserAgent = /^[\x20-\x7e]{1,200}$/;

/** A user agent fit for the trail: printable ASCII only, at most 200 characters. */
export function cleanUserAgent(ua: string | undefined): string | null {
  if (ua === undefined || ua === '') return null;
  // Nearly every user agent is already plain: kept as it is, without building a copy.
  if (plainUserAgent.test(ua)) return ua;
  return ua.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_USER_AGENT);
}

export interface EventInput {
  type: AuditEventType;
  time: Date;
  requestId: string;
  instance: string;
  caller: Caller | undefined;
  /** What the request asked for, once its route validated it (its action alone before that). */
  target?: Partial<RequestTarget>;
  fields: CallFacts;
  decision: Decision;
  reason: string | undefined;
  status: number | undefined;
  latencyMs: number | undefined;
  client: { address: string | undefined; userAgent: string | undefined };
  count?: number;
  window?: { from: Date; to: Date };
  sink?: string;
  /** The active trace's id, when tracing is on (see ops/trace-context.ts). */
  traceId?: string;
}

/**
 * Copies only the allowed fields; callers may pass richer objects without widening the event. The optional members are
 * added one by one in their fixed order (the serialized form is the same), so no temporary object is made per member.
 */
export function buildAuditEvent(input: EventInput): AuditEvent {
  const { caller, fields } = input;
  const target = input.target;
  const rateLimit = fields.rateLimit;
  const event: Mutable<AuditEvent> = {
    v: AUDIT_SCHEMA_VERSION,
    id: randomUUID(),
    type: input.type,
    time: isoTime(input.time),
    requestId: input.requestId,
    instance: input.instance,
    caller: caller
      ? caller.clientId !== undefined
        ? { iss: caller.iss, sub: caller.sub, clientId: caller.clientId }
        : { iss: caller.iss, sub: caller.sub }
      : null,
    org: target?.org ?? null,
    ruuid: target?.ruuid ?? null,
    action: target?.action ?? null,
    decision: input.decision,
    reason: input.reason ?? null,
    rateLimit: rateLimit
      ? rateLimit.degraded !== undefined
        ? { outcome: rateLimit.outcome, policies: [...rateLimit.policies], degraded: rateLimit.degraded }
        : { outcome: rateLimit.outcome, policies: [...rateLimit.policies] }
      : null,
    status: input.status ?? null,
    upstreamStatus: fields.upstreamStatus ?? null,
    slStatusCode: fields.slStatusCode ?? null,
    latencyMs: input.latencyMs === undefined ? null : Math.round(input.latencyMs * 10) / 10,
    client: { address: input.client.address ?? null, userAgent: cleanUserAgent(input.client.userAgent) },
  };
  if (input.type === 'outcome' && fields.attemptId !== undefined) event.attemptId = fields.attemptId;
  if (fields.idempotency !== undefined) event.idempotency = fields.idempotency;
  if (fields.runState !== undefined) event.runState = fields.runState;
  if (fields.upstreamIdentity !== undefined) event.upstreamIdentity = copyIdentity(fields.upstreamIdentity);
  if (input.count !== undefined) event.count = input.count;
  if (input.window !== undefined) {
    event.window = { from: input.window.from.toISOString(), to: input.window.to.toISOString() };
  }
  if (input.sink !== undefined) event.sink = input.sink;
  if (input.traceId !== undefined && /^[0-9a-f]{32}$/.test(input.traceId)) event.traceId = input.traceId;
  return event;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/**
 * `date.toISOString()`, cheaper, for the dates of years 2000 to 9999 (the civil date from days since the epoch, as in
 * H. Hinnant's chrono algorithms); any other date (earlier, later, invalid) goes through toISOString.
 */
export function isoTime(date: Date): string {
  const ms = date.getTime();
  if (!(ms >= 946_684_800_000 && ms < 253_402_300_800_000)) return date.toISOString();
  const days = Math.floor(ms / 86_400_000);
  const inDay = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const h = Math.floor(inDay / 3_600_000);
  const m = Math.floor(inDay / 60_000) % 60;
  const sec = Math.floor(inDay / 1000) % 60;
  const milli = inDay % 1000;
  return `${year}-${pad2(month)}-${pad2(day)}T${pad2(h)}:${pad2(m)}:${pad2(sec)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}
