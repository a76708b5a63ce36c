// The audit events of one request (attempt, outcome, decision), built from what the request path established.
import type { Principal } from '../auth/principal.js';
import { activeTraceId } from '../ops/trace-context.js';
import type { RequestTarget } from '../snaplogic/target.js';
import { buildAuditEvent, type AuditEvent, type AuditEventType, type CallFacts, type Decision } from './event.js';

/** What the request path knows of a request when an event is written; see http/request-context.ts. */
export interface RequestFacts {
  readonly requestId: string;
  /** This gateway instance. */
  readonly instance: string;
  readonly principal: Principal | undefined;
  /** The validated target, or the matched route's action alone when the path did not validate. */
  readonly target: Partial<RequestTarget> | undefined;
  readonly call: CallFacts;
  readonly client: { readonly address: string | undefined; readonly userAgent: string | undefined };
}

export interface RequestOutcome {
  readonly decision: Decision;
  readonly reason?: string;
  readonly status?: number;
  readonly latencyMs?: number;
}

/** One audit event of a request, from its facts and, for outcomes and decisions, how it ended. */
export function requestEvent(facts: RequestFacts, type: AuditEventType, outcome: RequestOutcome): AuditEvent {
  return buildAuditEvent({
    type,
    time: new Date(),
    requestId: facts.requestId,
    instance: facts.instance,
    caller: facts.principal,
    target: facts.target,
    fields: facts.call,
    decision: outcome.decision,
    reason: outcome.reason,
    status: outcome.status,
    latencyMs: outcome.latencyMs,
    client: facts.client,
    traceId: activeTraceId(),
  });
}
