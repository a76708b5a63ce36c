// Builds every dependency of a gateway from a validated config, with what closes each: the core that lives as long as
// the process (Redis, the audit trail, the limiter, the pool, metrics) and a generation that a config reload replaces
// (issuers, policy, orgs, limits, credentials). Nothing here listens.
import { createTokenVerifier, type TokenVerifier } from './auth/verifier.js';
import { createAudit, type AuditWrite } from './audit/build.js';
import type { AuditRecorder } from './audit/recorder.js';
import type { AppDeps } from './app.js';
import { configHash } from './config/reload-plan.js';
import type { Config } from './config/schema.js';
import { jwksServing } from './credentials/jwks-route.js';
import { createCredentialStore, type CredentialStore } from './credentials/store.js';
import { createUpstreamAuth } from './credentials/upstream-auth.js';
import { InFlightCalls } from './http/in-flight.js';
import { describeError, type Logger } from './log.js';
import { createMetrics, seriesOf, type Metrics } from './ops/metrics.js';
import type { Tracing } from './ops/tracing.js';
import type { ReadinessProbe } from './ops/health.js';
import { createReadiness } from './ops/readiness.js';
import { createPolicy } from './policy/policy.js';
import { compileLimits, createLimiter, warnPerInstanceLimits } from './ratelimit/build.js';
import type { RateLimiter } from './ratelimit/limits.js';
import { warmUpLimiter } from './ratelimit/redis-limiter.js';
import { createRedisClient, waitForRedis, withDeadline, type RedisClient } from './redis/client.js';
import { createRunCoordination, runGuardOrgs } from './runs/build.js';
import type { RunGuardDeps } from './runs/run-guard.js';
import { createForwarder, type Forwarder } from './upstream/forwarder.js';
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
   * Where the config came from, for reloads (SIGHUP, gateway.reload()): `load` reads and validates it again. With
   * `watch`, a change to the file (or its directory, for mounted ConfigMaps) reloads it too.
   */
  configSource?: { path: string; load(): Promise<Config>; watch?: boolean };
  /** Watch secret files for changes (on in production, off in most tests). */
  watchSecretFiles?: boolean;
  /** Include Node process metrics (CPU, memory, event loop) in /metrics. */
  processMetrics?: boolean;
  /** Open the admin listener when config has `admin` (default true); a worker leaves it to its primary. */
  serveAdmin?: boolean;
  /** Started by main when OTEL_* asks for traces (ops/tracing.ts); the gateway shuts it down last. */
  tracing?: Tracing;
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

/** What lives as long as the process: built once from the start-up config, whose restart-only fields it holds. */
export interface Core {
  /** The start-up config: its restart-only fields (listeners, Redis, sinks, pool, …) stay as they are until a restart. */
  readonly config: Config;
  readonly options: GatewayOptions;
  readonly instance: string;
  readonly metrics: Metrics;
  readonly forwarder: Forwarder;
  readonly redis: RedisClient | undefined;
  readonly limiter: RateLimiter;
  readonly audit: AuditRecorder;
  readonly inFlight: InFlightCalls;
  readonly readiness: ReadinessProbe;
  readonly coordination: Omit<RunGuardDeps, 'readState' | 'orgs'>;
  /** The generation serving new calls; a reload replaces it (see gateway.ts). */
  readonly live: { generation: Generation | undefined };
}

/** What a config reload replaces: everything a call reads from config. Calls in flight keep the one they began on. */
export interface Generation {
  /** The config it was built from (restart-only fields as the core runs them). */
  readonly config: Config;
  /** configHash of the config it runs (what snapgate_config_info shows). */
  readonly hash: string;
  /**
   * configHash of the config file as loaded: differs from `hash` while a restart-only change waits for a restart
   * (what `snapgate config check` prints for the file).
   */
  readonly fileHash: string;
  readonly deps: AppDeps;
  readonly verifier: TokenVerifier;
  readonly credentials: CredentialStore;
}

/**
 * The core, the first generation and the closers. Throws CredentialError (or a key-loading error) when a secret
 * cannot be resolved, after closing whatever it had already made.
 */
export async function buildDeps(
  config: Config,
  options: GatewayOptions,
): Promise<{ core: Core; generation: Generation; deps: AppDeps; closers: Closer[] }> {
  const closers: Closer[] = [];
  try {
    const core = await buildCore(config, options, closers);
    const generation = await buildGeneration(config, configHash(config), core, undefined);
    core.live.generation = generation;
    return { core, generation, deps: generation.deps, closers };
  } catch (err) {
    await closeAll(closers, options.log);
    throw err;
  }
}

async function buildCore(config: Config, options: GatewayOptions, closers: Closer[]): Promise<Core> {
  const { log, env, tracing } = options;
  // Made first so it closes last: the spans of the calls drained at shutdown are exported.
  if (tracing !== undefined) closers.push({ name: 'tracing', close: () => tracing.shutdown() });
  const live: Core['live'] = { generation: undefined };
  // Whichever store is live at shutdown stops watching its files; a replaced one was closed when it was replaced.
  closers.push({ name: 'credentials', close: () => live.generation?.credentials.close() });
  const inFlight = new InFlightCalls();
  const metrics = createMetrics({
    defaultMetrics: options.processMetrics ?? false,
    inFlight: () => inFlight.size,
    signingKeys: () => live.generation?.credentials.keyInfo() ?? [],
  });
  const forwarder = createForwarder(config.upstream);
  closers.push({ name: 'upstream pool', close: () => forwarder.close() });
  const redis = await connectRedis(config, env, log);
  // A stalled Redis must not hold the exit: QUIT gets a second, then the socket is dropped.
  if (redis !== undefined) closers.push({ name: 'redis', close: () => quitWithin(redis, 1_000) });
  const limiter = createLimiter(config, { redis, log, metrics });

  const instance = config.server.instanceId ?? options.instance;
  const { auditWrite, workerSlot } = options;
  const audit = await createAudit(config, { log, instance, redis, auditWrite, workerSlot, metrics, env });
  // The trail bounds its own close (what it cannot write by then is spooled or reported): closeTimeout, plus the
  // batch in progress (ackTimeout + 1 s); this deadline is a backstop beyond both.
  const auditDeadlineMs = config.audit.closeTimeout + config.audit.ackTimeout + 1_000 + CLOSE_DEADLINE_MS;
  closers.push({
    name: 'audit trail',
    close: () => audit.close(config.audit.closeTimeout),
    deadlineMs: auditDeadlineMs,
  });

  const isDraining = () => inFlight.isDraining;
  // Readiness asks the live generation's verifier: after a reload, the new issuers' keys.
  const verifier = { ready: () => live.generation?.verifier.ready() ?? Promise.resolve(false) };
  const readiness = createReadiness({ verifier, redis, redisConfig: config.redis, isDraining, audit });
  const coordination = createRunCoordination(config, redis);
  return {
    config,
    options,
    instance,
    metrics,
    forwarder,
    redis,
    limiter,
    audit,
    inFlight,
    readiness,
    coordination,
    live,
  };
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * A generation from `config` (restart-only fields already as the core runs them, see config/reload-plan.ts). What did
 * not change is carried over from `previous`: the verifier (its JWKS and token caches) when `auth` is the same, the
 * credential store (its promotions and file watches) when the orgs and signing are. Throws CredentialError when a
 * new store cannot resolve a secret.
 */
export async function buildGeneration(
  config: Config,
  fileHash: string,
  core: Core,
  previous: Generation | undefined,
): Promise<Generation> {
  const { log, env } = core.options;
  const { metrics } = core;
  for (const issuer of config.auth.issuers) {
    if (issuer.jwksUri === undefined) continue;
    // From 0, so that an alert on increase() sees the first failed fetch.
    for (const result of ['ok', 'error']) metrics.jwksFetches.labels(issuer.issuer, result).inc(0);
  }
  const verifier =
    previous !== undefined && sameJson(previous.config.auth, config.auth)
      ? previous.verifier
      : await createTokenVerifier(config.auth.issuers, {
          env,
          log,
          cache: { maxEntries: config.auth.cache.maxEntries, maxTtlMs: config.auth.cache.maxTtl },
          onJwksFetch: (issuer, result) => metrics.jwksFetches.labels(issuer, result).inc(),
          ...(previous !== undefined ? { previous: previous.verifier } : {}),
        });
  const credentials =
    previous !== undefined &&
    sameJson(previous.config.orgs, config.orgs) &&
    sameJson(previous.config.signing, config.signing)
      ? previous.credentials
      : await createCredentialStore(config, {
          env,
          log,
          watchFiles: !!core.options.watchSecretFiles,
          onReload: (ok) => metrics.credentialReloads.labels(ok ? 'success' : 'failure').inc(),
        });
  // A store made here (with its secret-file watches) is closed again when the rest cannot be built.
  try {
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
    const orgs = upstreamOrgs(config);
    const limits = compileLimits(config, orgs);
    if (core.redis === undefined && previous === undefined) warnPerInstanceLimits(limits, config.server.workers, log);
    const { maxBodyBytes, bodyTimeout: bodyTimeoutMs } = config.server;
    const { tracing } = core.options;
    const deps: AppDeps = {
      verifier,
      policy: createPolicy(config.policy),
      credentials,
      upstreamAuth,
      onCredentialFallback: (org, identity) => metrics.credentialFallbacks.labels(org, identity).inc(),
      ...(config.signing !== undefined && config.signing.jwks.port === undefined
        ? { jwks: jwksServing(config.signing, credentials) }
        : {}),
      forwarder: core.forwarder,
      orgs,
      audit: core.audit,
      log,
      instance: core.instance,
      maxBodyBytes,
      bodyTimeoutMs,
      inFlight: core.inFlight,
      readiness: core.readiness,
      isDraining: () => core.inFlight.isDraining,
      limiter: core.limiter,
      limits,
      metrics,
      runs: { ...core.coordination, orgs: runGuardOrgs(config, orgs) },
      auditReads: config.audit.reads,
      ...(tracing !== undefined ? { tracing } : {}),
    };
    return { config, hash: configHash(config), fileHash, deps, verifier, credentials };
  } catch (err) {
    if (credentials !== previous?.credentials) credentials.close();
    throw err;
  }
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
