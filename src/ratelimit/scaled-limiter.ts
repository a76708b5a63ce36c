// A limiter that enforces one share of every org's limits: an instance's share, or a worker's share of its instance's.
import { scaleForInstance, type LimitDecision, type LimitRequest, type OrgLimits, type RateLimiter } from './limits.js';

/** Wraps `inner` so each check uses the org's limits divided by `shares` (at least 1 each). */
export function createScaledLimiter(inner: RateLimiter, shares: number): RateLimiter {
  if (shares <= 1) return inner;
  const scaled = new Map<OrgLimits, OrgLimits>();
  return {
    check(request: LimitRequest): Promise<LimitDecision> {
      let limits = scaled.get(request.limits);
      if (limits === undefined) {
        limits = scaleForInstance(request.limits, shares);
        scaled.set(request.limits, limits);
      }
      return inner.check({ ...request, limits });
    },
  };
}
