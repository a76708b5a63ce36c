// Golden tests: the exact RateLimit-Policy / RateLimit text snapgate sends (draft-ietf-httpapi-ratelimit-headers-11).
import { describe, expect, it } from 'vitest';
import { formatPolicyField, formatRateLimitField, retryAfterSeconds } from '../../src/ratelimit/headers.js';
import { compileOrgLimits, partitionKey, type LimitDecision, type PolicyOutcome } from '../../src/ratelimit/limits.js';

const limits = compileOrgLimits(
  'Acme-Prod',
  {
    limit: 60,
    window: 60_000,
    burst: 10,
    shadow: false,
    perCaller: { limit: 10, window: 60_000, burst: 0, shadow: true },
    concurrency: { limit: 5, shadow: false, lease: 60_000 },
    onRedisError: 'local',
  },
  65_000,
);
const [rate, caller, conc] = [limits.rate, limits.perCaller!, limits.concurrency!];
const pkOrg = partitionKey('org', 'Acme-Prod');
const pkCaller = partitionKey('org', 'Acme-Prod', 'caller-1');
const decision = (outcomes: PolicyOutcome[], extra: Partial<LimitDecision> = {}): LimitDecision => ({
  allowed: outcomes.every((o) => o.allowed || o.policy.shadow),
  outcomes,
  release: () => Promise.resolve(),
  refund: () => Promise.resolve(),
  ...extra,
});

describe('RateLimit headers', () => {
  it('hashes the partition key: 12 bytes of SHA-256 as a byte sequence, never the org name', () => {
    // sha256("org\nAcme-Prod\n"), first 12 bytes, base64.
    expect(pkOrg).toBe(':Jp/qOJPRx3QINdus:');
    expect(pkOrg).toMatch(/^:[A-Za-z0-9+/]{16}:$/);
    expect(pkOrg).not.toContain('Acme');
    expect(pkCaller).not.toBe(pkOrg);
    expect(partitionKey('org', 'Acme-Prod')).toBe(pkOrg);
  });

  it('formats RateLimit-Policy for rate, shadow caller rate and concurrency', () => {
    expect(formatPolicyField(limits, 'caller-1')).toBe(
      [
        `"org-rate";q=60;w=60;pk=${pkOrg}`,
        `"caller-rate";q=10;w=60;pk=${pkCaller};sg-shadow`,
        `"org-concurrency";q=5;qu="concurrent-requests";pk=${pkOrg}`,
      ].join(', '),
    );
  });

  it('formats RateLimit with remaining and seconds to reset (rounded up)', () => {
    const d = decision([
      { policy: rate, allowed: true, remaining: 42, resetMs: 6_001, retryMs: 0 },
      { policy: caller, allowed: false, remaining: 0, resetMs: 59_000, retryMs: 1_000 },
      { policy: conc, allowed: true, remaining: 4, resetMs: 0, retryMs: 0 },
    ]);
    expect(formatRateLimitField(limits, d, 'caller-1')).toBe(
      [
        `"org-rate";r=42;t=7;pk=${pkOrg}`,
        `"caller-rate";r=0;t=59;pk=${pkCaller};sg-would-limit`,
        `"org-concurrency";r=4;pk=${pkOrg}`,
      ].join(', '),
    );
    expect(d.allowed).toBe(true);
  });

  it('marks degraded decisions', () => {
    const local = decision([{ policy: rate, allowed: true, remaining: 3, resetMs: 1_000, retryMs: 0 }], {
      degraded: 'local',
    });
    expect(formatRateLimitField(limits, local, 'c')).toBe(`"org-rate";r=3;t=1;pk=${pkOrg};sg-degraded="local"`);
    const open = decision([], { degraded: 'open' });
    expect(formatRateLimitField(limits, open, 'c')).toBe(`"org-rate";sg-degraded="open"`);
  });

  it('computes Retry-After in whole seconds from enforced refusals only, at least 1', () => {
    expect(
      retryAfterSeconds(decision([{ policy: rate, allowed: false, remaining: 0, resetMs: 9_000, retryMs: 6_200 }])),
    ).toBe(7);
    expect(
      retryAfterSeconds(decision([{ policy: rate, allowed: false, remaining: 0, resetMs: 100, retryMs: 20 }])),
    ).toBe(1);
    expect(
      retryAfterSeconds(
        decision([
          { policy: rate, allowed: false, remaining: 0, resetMs: 1_000, retryMs: 1_000 },
          { policy: caller, allowed: false, remaining: 0, resetMs: 30_000, retryMs: 30_000 },
        ]),
      ),
    ).toBe(1);
  });
});
