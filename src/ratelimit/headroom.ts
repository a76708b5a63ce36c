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

/** The buckets a call draws on (see Headroom.bucketsOf), made once per call: its key and the policy it tracks. */
export type Buckets = readonly (readonly [string, 'org-rate' | 'caller-rate'])[];

interface Seen {
  /** Calls left by the last decision. */
  left: number;
  at: number;
  /** Calls sent ahead whose decision has not come back yet. */
  ahead: number;
}

/**
 * Per bucket (an org's rate per group, and each caller's rate where a per-caller policy applies): the calls left after
 * the last decision this instance saw, and the calls it sent ahead since. A call may go ahead only while every
 * bucket it draws on (shadow ones too) keeps at least HEADROOM_CALLS beyond the calls already ahead, and the decision is less
 * than a second old: callers sharing an org's bucket count against the same entry. Another instance spending the
 * same bucket meanwhile can still refuse a call that went ahead, which is then recorded as an attempt and its
 * refusal, never forwarded.
 */
export class Headroom {
  private readonly seen = new Map<string, Seen>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The buckets a call draws on, each with the policy whose remaining it keeps. Shadow policies count too: one near
   * its limit is decided first, so the attempt still says `would_limit` when it would have limited.
   */
  static bucketsOf(limits: OrgLimits, caller: string): Buckets {
    const org = `${limits.org}\u0000${limits.group}`;
    const out: [string, 'org-rate' | 'caller-rate'][] = [];
    if (limits.rate !== undefined) out.push([org, 'org-rate']);
    if (limits.perCaller !== undefined) out.push([`${org}\u0000${caller}`, 'caller-rate']);
    return out;
  }

  /** True (and one call counted against each bucket's headroom) when this call may send its work before its decision. */
  takeAhead(limits: OrgLimits, buckets: Buckets): boolean {
    // A lease policy is decided first: a call ahead of it would hold its lock while the lease is refused.
    if (limits.concurrency !== undefined || buckets.length === 0) return false;
    const at = this.now();
    const entries: Seen[] = [];
    for (const [key] of buckets) {
      const seen = this.seen.get(key);
      if (seen === undefined || seen.left - seen.ahead < HEADROOM_CALLS || at - seen.at > FRESH_MS) return false;
      entries.push(seen);
    }
    for (const seen of entries) seen.ahead += 1;
    return true;
  }

  /**
   * Notes what a decision said of each bucket: the calls its policy (enforced or shadow) has left (none when the
   * call was refused or the decision degraded, or when `decision` is undefined: the check failed). `wentAhead`: the
   * call was one takeAhead let go ahead.
   */
  note(buckets: Buckets, decision: LimitDecision | undefined, wentAhead: boolean): void {
    const usable = decision !== undefined && decision.allowed && decision.degraded === undefined;
    const at = this.now();
    for (const [key, policy] of buckets) {
      const seen = this.seen.get(key);
      const ahead = Math.max(0, (seen?.ahead ?? 0) - (wentAhead ? 1 : 0));
      const left = usable ? (decision.outcomes.find((o) => o.policy.name === policy)?.remaining ?? 0) : 0;
      if (seen === undefined && this.seen.size >= MAX_BUCKETS) this.seen.clear();
      this.seen.set(key, { left, at, ahead });
    }
  }
}
