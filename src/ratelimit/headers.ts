// RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11), formatted in one place. Pure.
import type { LimitDecision, LimitPolicy, OrgLimits, PolicyOutcome } from './limits.js';
import { callerPartitionKey, policiesOf } from './limits.js';

function pkFor(limits: OrgLimits, policy: LimitPolicy, caller: string): string {
  return policy.name === 'caller-rate' ? callerPartitionKey(limits, caller) : limits.partitionKey;
}

/** `RateLimit-Policy`: every policy that applies, with its quota. Shadow policies carry `sg-shadow`. */
export function formatPolicyField(limits: OrgLimits, caller: string): string {
  return policiesOf(limits)
    .map((p) => {
      const params =
        p.kind === 'rate'
          ? `;q=${p.limit};w=${Math.round(p.windowMs / 1000)}`
          : `;q=${p.limit};qu="concurrent-requests"`;
      return `"${p.name}"${params};pk=${pkFor(limits, p, caller)}${p.shadow ? ';sg-shadow' : ''}`;
    })
    .join(', ');
}

function formatOutcome(limits: OrgLimits, o: PolicyOutcome, caller: string): string {
  let item = `"${o.policy.name}";r=${o.remaining}`;
  if (o.policy.kind === 'rate') item += `;t=${Math.ceil(o.resetMs / 1000)}`;
  item += `;pk=${pkFor(limits, o.policy, caller)}`;
  if (o.policy.shadow && !o.allowed) item += ';sg-would-limit';
  return item;
}

/**
 * `RateLimit`: what is left of each policy. A degraded decision (Redis unavailable) is marked
 * with `sg-degraded` and its mode, since its numbers are this instance's alone (or absent, in open mode).
 */
export function formatRateLimitField(limits: OrgLimits, decision: LimitDecision, caller: string): string | undefined {
  const items = decision.outcomes.map((o) => formatOutcome(limits, o, caller));
  if (decision.degraded !== undefined) {
    if (items.length === 0) return `"org-rate";sg-degraded="${decision.degraded}"`;
    items[0] = `${items[0]};sg-degraded="${decision.degraded}"`;
  }
  return items.length > 0 ? items.join(', ') : undefined;
}

/** Retry-After in whole seconds (never less than 1), from the enforced policies that refused. */
export function retryAfterSeconds(decision: LimitDecision): number {
  const ms = Math.max(0, ...decision.outcomes.filter((o) => !o.allowed && !o.policy.shadow).map((o) => o.retryMs));
  return Math.max(1, Math.ceil(ms / 1000));
}
