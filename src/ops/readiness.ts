// What /readyz reports: each dependency's state, computed at most once per interval however often it is asked.
import type { TokenVerifier } from '../auth/verifier.js';
import type { RedisConfig } from '../config/schema.js';
import { RedisDeadlineError, withDeadline, type RedisClient } from '../redis/client.js';
import type { ReadinessProbe, ReadinessReport } from './health.js';

export interface ReadinessDeps {
  verifier: Pick<TokenVerifier, 'ready'>;
  redis: RedisClient | undefined;
  redisConfig: RedisConfig | undefined;
  isDraining: () => boolean;
  /** The audit trail's state: not ready while a required sink fails and calls would be refused. */
  audit: { health(): { ready: boolean; detail: string } };
  /** Longest a computed report is reused, ms. */
  cacheMs?: number;
  now?: () => number;
}

/**
 * Readiness for this process. The checks (JWKS loaded, Redis PING) run at most once per `cacheMs`
 * (1 s) and concurrent askers share one run, so a flood of /readyz costs nothing extra; draining
 * shows at once. Check values are fixed words, never a library's message.
 */
export function createReadiness(deps: ReadinessDeps): ReadinessProbe {
  const now = deps.now ?? Date.now;
  const cacheMs = deps.cacheMs ?? 1_000;
  const timeoutMs = deps.redisConfig?.commandTimeout ?? 100;
  let last: { at: number; report: ReadinessReport } | undefined;
  let running: Promise<ReadinessReport> | undefined;

  const compute = async (): Promise<ReadinessReport> => {
    const checks: Record<string, string> = { config: 'ok', credentials: 'ok' };
    checks.jwks = (await deps.verifier.ready()) ? 'ok' : 'signing keys not loaded';
    if (deps.redis !== undefined) {
      checks.redis = await withDeadline(deps.redis.ping(), timeoutMs).then(
        () => 'ok',
        (err: unknown) => (err instanceof RedisDeadlineError ? `no answer within ${timeoutMs} ms` : 'unreachable'),
      );
    }
    const audit = deps.audit.health();
    checks.audit = audit.detail;
    const blocking = Object.entries(checks).filter(
      ([name]) =>
        (name !== 'redis' || deps.redisConfig?.requiredForReadiness !== false) && (name !== 'audit' || !audit.ready),
    );
    return { ready: blocking.every(([, v]) => v === 'ok'), checks };
  };

  return async () => {
    let report: ReadinessReport;
    if (last !== undefined && now() - last.at < cacheMs) report = last.report;
    else {
      running ??= compute()
        .then((r) => {
          last = { at: now(), report: r };
          return r;
        })
        .finally(() => {
          running = undefined;
        });
      report = await running;
    }
    if (!deps.isDraining()) return report;
    return { ready: false, checks: { ...report.checks, shutdown: 'draining' } };
  };
}
