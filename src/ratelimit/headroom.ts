// What this instance last learned of each bucket's quota, to decide whether a call may send its next Redis work (the
// run lock, the write-ahead attempt) before the rate-limit decision comes back.
import type { LimitDecision, OrgLimits } from './limits.js';

/**
 * Calls a bucket must have left, after those already sent ahead, for one more to go ahead of its decision. Below it
 * the limits are decided first, as before, so the path of refused calls (429) takes no run lock and writes no
 * attempt; an org whose whole limit is below it never goes ahead.
 */
export const HEADROOM_CALLS = 32;
/** How long what a decision said stays usable; older, the next call is decided first again. */
const FRESH_MS = 1_000;
/** Most buckets remembered; past it the memory starts again (every bucket is then decided first once). */
const MAX_BUCKETS = 10_000;

interface Seen {
  /** Calls left by the last decision. */
  left: number;
  at: number;
  /** Calls sent ahead whose decision has not come back yet. */
  ahead: number;
}

/**
 * Per bucket (org, group, and the caller when a per-caller policy applies): the calls left after the last decision
 * this instance saw, less the calls it sent ahead since. A call may go ahead only while that stays at or above
 * HEADROOM_CALLS and the decision is less than a second old; another instance spending the same bucket meanwhile can
 * still refuse a call that went ahead, which is then recorded as an attempt and its refusal, never forwarded.
 */
export class Headroom {
  private readonly seen = new Map<string, Seen>();

  constructor(private readonly now: () => number = Date.now) {}

  private static keyOf(limits: OrgLimits, caller: string): string {
    return limits.perCaller !== undefined
      ? `${limits.org}\u0000${limits.group}\u0000${caller}`
      : `${limits.org}\u0000${limits.group}`;
  }

  /** True (and one call counted against the headroom) when this call may send its next work before its decision. */
  takeAhead(limits: OrgLimits, caller: string): boolean {
    // A lease policy is decided first: a call ahead of it would hold its lock while the lease is refused.
    if (limits.concurrency !== undefined) return false;
    const seen = this.seen.get(Headroom.keyOf(limits, caller));
    if (seen === undefined || seen.left - seen.ahead < HEADROOM_CALLS || this.now() - seen.at > FRESH_MS) return false;
    seen.ahead += 1;
    return true;
  }

  /**
   * Notes what a decision said: the fewest calls left over its enforced policies (none when refused or degraded).
   * `wentAhead`: the call was one takeAhead let go ahead (or undefined when its check failed without a decision).
   */
  note(limits: OrgLimits, caller: string, decision: LimitDecision | undefined, wentAhead: boolean): void {
    const key = Headroom.keyOf(limits, caller);
    const seen = this.seen.get(key);
    const ahead = Math.max(0, (seen?.ahead ?? 0) - (wentAhead ? 1 : 0));
    if (decision === undefined) {
      this.seen.set(key, { left: 0, at: this.now(), ahead });
      return;
    }
    let left = decision.allowed && decision.degraded === undefined ? Infinity : 0;
    for (const o of decision.outcomes) if (!o.policy.shadow) left = Math.min(left, o.remaining);
    if (left === Infinity) left = 0;
    if (seen === undefined && this.seen.size >= MAX_BUCKETS) this.seen.clear();
    this.seen.set(key, { left, at: this.now(), ahead });
  }
}
