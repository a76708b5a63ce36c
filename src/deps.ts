// Builds every dependency of a gateway from a validated config, with what closes each. Nothing here listens.
import { createTokenVerifier } from './auth/verifier.js';
import { createAudit, type AuditWrite } from './audit/build.js';
import type { AppDeps } from './app.js';
import type { Config, SigningConfig } from './config/schema.js';
import { jwksServing } from './credentials/jwks-route.js';
import { createCredentialStore } from './credentials/store.js';
import { createUpstreamAuth } from './credentials/upstream-auth.js';
import { InFlightCalls } from './http/in-flight.js';
import { describeError, type Logger } from './log.js';
import { createMetrics, seriesOf } from './ops/metrics.js';
import { createReadiness } from './ops/readiness.js';
import { createPolicy } from './policy/policy.js';
import { compileLimits, createLimiter, warnPerInstanceLimits } from './ratelimit/build.js';
import { warmUpLimiter } from './ratelimit/redis-limiter.js';
import { createRedisClient, waitForRedis, withDeadline, type RedisClient } from './redis/client.js';
import { createRunCoordination, runGuardOrgs } from './runs/build.js';
import { createForwarder } from './upstream/forwarder.js';
import { upstreamOrgs } from './upstream/orgs.js';

export interface GatewayOptions {
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  /** Where the stdout audit sink writes (see audit/build.ts). */
  auditWrite: AuditWrite;
  /** With server.workers, this worker's slot (1..N); names its own audit files and spool. */
  workerSlot?: number;
  /** Names this instance in audit events when config has no server.instanceId. */
  instance: string;
  /**
   * Re-reads the config file's signing keys on each credential reload (SIGHUP, file change), so key states rotate
   * without a restart. The rest of the config is read at start-up only.
   */
  reloadSigning?: { path: string; read(): Promise<Pick<SigningConfig, 'keys'> | undefined> };
  /** Watch secret files for changes (on in production, off in most tests). */
  watchSecretFiles?: boolean;
  /** Include Node process metrics (CPU, memory, event loop) in /metrics. */
  processMetrics?: boolean;
  /** Open the admin listener when config has `admin` (default true); a worker leaves it to its primary. */
  serveAdmin?: boolean;
}

/** Something to close at shutdown; closers run in the reverse of the order they were made. */
export interface Closer {
  readonly name: string;
  close(): void | Promise<void>;
  /** How long its close may take before shutdown moves on (default CLOSE_DEADLINE_MS). */
  readonly deadlineMs?: number;
}

/** The longest a closer without its own deadline may hold shutdown. */
const CLOSE_DEADLINE_MS = 2_000;

/** Closes `closers` last-made first, each within its deadline; a failure is logged and the rest still close. */
export async function closeAll(closers: readonly Closer[], log: Logger): Promise<void> {
  for (const closer of [...closers].reverse()) {
    const deadlineMs = closer.deadlineMs ?? CLOSE_DEADLINE_MS;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), deadlineMs)));
    try {
      const result = await Promise.race([Promise.resolve(closer.close()).then(() => 'closed' as const), late]);
      if (result === 'late') log.warn(`closing ${closer.name} took longer than ${deadlineMs} ms; moving on`, {});
    } catch (err) {
      log.warn(`closing ${closer.name} failed`, { error: describeError(err) });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Every dependency of the app, and their closers. Throws CredentialError (or a key-loading error)
 * when a secret cannot be resolved, after closing whatever it had already made.
 */
export async function buildDeps(
  config: Config,
  options: GatewayOptions,
): Promise<{ deps: AppDeps; closers: Closer[] }> {
  const closers: Closer[] = [];
  try {
    return { deps: await build(config, options, closers), closers };
  } catch (err) {
    await closeAll(closers, options.log);
    throw err;
  }
}

async function build(config: Config, options: GatewayOptions, closers: Closer[]): Promise<AppDeps> {
  const { log, env } = options;
  const verifier = await createTokenVerifier(config.auth.issuers, {
    env,
    log,
    cache: { maxEntries: config.auth.cache.maxEntries, maxTtlMs: config.auth.cache.maxTtl },
  });
  const credentials = await createCredentialStore(config, {
    env,
    log,
    watchFiles: !!options.watchSecretFiles,
    ...(options.reloadSigning !== undefined ? { readSigning: options.reloadSigning } : {}),
  });
  closers.push({ name: 'credentials', close: () => credentials.close() });
  const metrics = createMetrics({
    defaultMetrics: options.processMetrics ?? false,
    signingKeys: () => credentials.keyInfo(),
  });
  const minted = seriesOf((org) => metrics.jwtMinted.labels(org));
  const upstreamAuth = createUpstreamAuth(config, credentials, {
    onMint: (org) => minted(org).inc(),
    onPromote: (org, identity) =>
      log.warn('the next password worked where the current one got 401: it is sent first from now on', {
        org,
        identity,
        hint: 'move it into password and drop nextPassword',
      }),
  });
  const forwarder = createForwarder(config.upstream);
  closers.push({ name: 'upstream pool', close: () => forwarder.close() });
  const redis = await connectRedis(config, env, log);
  // A stalled Redis must not hold the exit: QUIT gets a second, then the socket is dropped.
  if (redis !== undefined) closers.push({ name: 'redis', close: () => quitWithin(redis, 1_000) });

  const orgs = upstreamOrgs(config);
  const limits = compileLimits(config, orgs);
  if (redis === undefined) warnPerInstanceLimits(limits, config.server.workers, log);
  const limiter = createLimiter(config, { redis, log, metrics });

  const instance = config.server.instanceId ?? options.instance;
  const { auditWrite, workerSlot } = options;
  const audit = await createAudit(config, { log, instance, redis, auditWrite, workerSlot, metrics });
  // The trail bounds its own close (what it cannot write by then is spooled or reported): closeTimeout, plus the
  // batch in progress (ackTimeout + 1 s); this deadline is a backstop beyond both.
  const auditDeadlineMs = config.audit.closeTimeout + config.audit.ackTimeout + 1_000 + CLOSE_DEADLINE_MS;
  closers.push({
    name: 'audit trail',
    close: () => audit.close(config.audit.closeTimeout),
    deadlineMs: auditDeadlineMs,
  });

  const inFlight = new InFlightCalls();
  const isDraining = () => inFlight.isDraining;
  const readiness = createReadiness({ verifier, redis, redisConfig: config.redis, isDraining, audit });
  const { maxBodyBytes, bodyTimeout: bodyTimeoutMs } = config.server;
  const policy = createPolicy(config.policy);
  return {
    verifier,
    policy,
    credentials,
    upstreamAuth,
    onCredentialFallback: (org, identity) => metrics.credentialFallbacks.labels(org, identity).inc(),
    ...(config.signing !== undefined && config.signing.jwks.port === undefined
      ? { jwks: jwksServing(config.signing, credentials) }
      : {}),
    forwarder,
    orgs,
    audit,
    log,
    instance,
    maxBodyBytes,
    bodyTimeoutMs,
    inFlight,
    readiness,
    isDraining,
    limiter,
    limits,
    metrics,
    runs: { ...createRunCoordination(config, redis), orgs: runGuardOrgs(config, orgs) },
    auditReads: config.audit.reads,
  };
}

/** The Redis client when configured; a Redis not usable yet is not fatal (the limits use their fallback). */
async function connectRedis(config: Config, env: GatewayOptions['env'], log: Logger): Promise<RedisClient | undefined> {
  if (config.redis === undefined) return undefined;
  const redis = await createRedisClient(config.redis, { env, log });
  const ready = await waitForRedis(redis, Math.max(config.redis.connectTimeout, 2_000));
  const warm =
    ready &&
    (await warmUpLimiter(redis, 2_000).then(
      () => true,
      () => false,
    ));
  if (!warm) log.warn('redis not usable at start-up; rate limits use the fallback until it is', {});
  return redis;
}

async function quitWithin(redis: RedisClient, ms: number): Promise<void> {
  await withDeadline(redis.quit(), ms).catch(() => redis.disconnect());
}
