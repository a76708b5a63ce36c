// Rate limiting from config: each org's compiled limits and the limiter that enforces them (Redis behind a breaker,
// or this process alone).
import { limitsRedisMode, type Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { RedisClient } from '../redis/client.js';
import { longestCallMs, type UpstreamOrg } from '../upstream/orgs.js';
import { compileOrgLimits, type OrgLimits, type RateLimiter } from './limits.js';
import { createMemoryLimiter } from './memory-limiter.js';
import { createRedisLimiter } from './redis-limiter.js';
import { createResilientLimiter } from './resilient-limiter.js';
import { createScaledLimiter } from './scaled-limiter.js';

/** An org's limits per action group; reads are limited only when the org configures `rateLimit.reads`. */
export type OrgGroupLimits = Readonly<{ writes?: OrgLimits; reads?: OrgLimits }>;

/**
 * Each org's limits, compiled once, per action group. A concurrency lease outlives the org's longest call (its
 * effective timeouts, from `orgs`). Orgs without a rateLimit are not in the map.
 */
export function compileLimits(
  config: Pick<Config, 'orgs'>,
  orgs: ReadonlyMap<string, UpstreamOrg>,
): ReadonlyMap<string, OrgGroupLimits> {
  const limits = new Map<string, OrgGroupLimits>();
  for (const [org, cfg] of Object.entries(config.orgs)) {
    const upstream = orgs.get(org);
    if (cfg.rateLimit === undefined || upstream === undefined) continue;
    const onRedisError = limitsRedisMode(cfg);
    const maxCallMs = longestCallMs(upstream.timeouts);
    const { writes, reads } = cfg.rateLimit;
    const group = (cfg: typeof writes, name: 'writes' | 'reads') =>
      cfg !== undefined ? { [name]: compileOrgLimits(org, { ...cfg, onRedisError }, maxCallMs, name) } : {};
    limits.set(org, { ...group(writes, 'writes'), ...group(reads, 'reads') });
  }
  return limits;
}

/** Says at start-up what limits without Redis mean: per instance, and at least one per worker. */
export function warnPerInstanceLimits(limits: ReadonlyMap<string, OrgGroupLimits>, workers: number, log: Logger): void {
  if (limits.size === 0) return;
  log.warn('rate limits are enforced per instance: no redis is configured', { orgs: [...limits.keys()] });
  // Each worker enforces at least 1: a limit below the worker count cannot be split exactly.
  const below = (l: OrgLimits): boolean => l.rate.limit < workers || (l.concurrency?.limit ?? workers) < workers;
  const tooSmall = [...limits.entries()]
    .filter(([, g]) => [g.writes, g.reads].some((l) => l !== undefined && below(l)))
    .map(([org]) => org);
  if (workers > 1 && tooSmall.length > 0) {
    log.warn(
      'some limits are below server.workers: each worker admits at least 1, so the instance admits up to one per ' +
        'worker',
      { orgs: tooSmall, workers },
    );
  }
}

/**
 * The limiter: Redis shared by every instance when configured, behind a breaker with each org's
 * fallback mode; otherwise this process alone (demo, laptop), a worker taking its share.
 */
export function createLimiter(
  config: Pick<Config, 'rateLimiting' | 'server' | 'redis'>,
  deps: { redis: RedisClient | undefined; log: Logger; metrics: Metrics },
): RateLimiter {
  const local = createMemoryLimiter({ maxKeys: config.rateLimiting.localMaxKeys });
  if (deps.redis === undefined) return createScaledLimiter(local, config.server.workers);
  return createResilientLimiter({
    primary: createRedisLimiter(deps.redis, config.redis?.commandTimeout),
    local,
    // Each worker process keeps its own fallback limiter, so each takes its share of its instance's share.
    expectedInstances: config.rateLimiting.expectedInstances * config.server.workers,
    openForMs: config.rateLimiting.breakerOpenFor,
    log: deps.log,
    metrics: deps.metrics,
  });
}
