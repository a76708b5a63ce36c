// Builds every dependency from a validated config, serves HTTP, and drains on shutdown. Used by main, the demo and tests.
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { createApp } from './app.js';
import { createAudit, sinksOf, type AuditWrite } from './audit/build.js';
import { answerClientError } from './http/client-error.js';
import { createTokenVerifier } from './auth/verifier.js';
import type { Config } from './config/schema.js';
import { createCredentialStore, type CredentialStore } from './credentials/store.js';
import { problemResponse } from './http/problem.js';
import { InFlightCalls } from './http/in-flight.js';
import { describeError, type Logger } from './log.js';
import type { ReadinessReport } from './ops/health.js';
import { createReadiness } from './ops/readiness.js';
import { createScaledLimiter } from './ratelimit/scaled-limiter.js';
import { createPolicy } from './policy/policy.js';
import { createForwarder } from './upstream/forwarder.js';
import { createRedisClient, waitForRedis, withDeadline } from './redis/client.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { createMemoryLimiter } from './ratelimit/memory-limiter.js';
import { compileOrgLimits, type OrgLimits, type RateLimiter } from './ratelimit/limits.js';
import { createRedisLimiter, warmUpLimiter } from './ratelimit/redis-limiter.js';
import { createResilientLimiter } from './ratelimit/resilient-limiter.js';
import { startAdminServer } from './ops/admin.js';
import { listen } from './http/listen.js';

export interface GatewayOptions {
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  /** Where the stdout audit sink writes (see audit/build.ts). */
  auditWrite: AuditWrite;
  /** With server.workers, this worker's slot (1..N); names its own audit files and spool. */
  workerSlot?: number;
  /** Names this instance in audit events when config has no server.instanceId. */
  instance: string;
  /** Watch secret files for changes (on in production, off in most tests). */
  watchSecretFiles?: boolean;
  /** Include Node process metrics (CPU, memory, event loop) in /metrics. */
  processMetrics?: boolean;
  /** Open the admin listener when config has `admin` (default true); a worker leaves it to its primary. */
  serveAdmin?: boolean;
}

export interface Gateway {
  readonly server: Server;
  readonly port: number;
  /** The admin listener's port (/metrics, /livez, /readyz), when `admin` is configured. */
  readonly adminPort: number | undefined;
  readonly metrics: Metrics;
  readonly credentials: CredentialStore;
  /** What /readyz reports for this process. */
  readiness(): Promise<ReadinessReport>;
  /** Stops accepting, lets in-flight calls finish within `deadlineMs`, then closes pools and Redis. */
  shutdown(deadlineMs?: number): Promise<{ drained: boolean }>;
}

/** How long calls cut at the drain deadline get to write their outcome before connections close. */
const ABORT_GRACE_MS = 2_000;

/**
 * Starts snapgate from a validated config. Throws CredentialError (or a key-loading error) before
 * listening when a secret cannot be resolved.
 */
export async function startGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const { log, env } = options;
  const verifier = await createTokenVerifier(config.auth.issuers, {
    env,
    log,
    cache: { maxEntries: config.auth.cache.maxEntries, maxTtlMs: config.auth.cache.maxTtl },
  });
  const credentials = await createCredentialStore(config.orgs, {
    env,
    log,
    watchFiles: options.watchSecretFiles ?? false,
  });
  const forwarder = createForwarder(config.upstream);

  const redis = config.redis !== undefined ? await createRedisClient(config.redis, { env, log }) : undefined;
  if (redis !== undefined) {
    const ready = await waitForRedis(redis, Math.max(config.redis?.connectTimeout ?? 0, 2_000));
    const warm =
      ready &&
      (await warmUpLimiter(redis, 2_000).then(
        () => true,
        () => false,
      ));
    if (!warm) log.warn('redis not usable at start-up; rate limits use the fallback until it is', {});
  }
  const metrics = createMetrics({ defaultMetrics: options.processMetrics ?? false });

  // Rate limits: Redis shared by every instance when configured, behind a breaker with each
  // org's fallback mode; otherwise this process alone (demo, laptop), a worker taking its share.
  const local = createMemoryLimiter({ maxKeys: config.rateLimiting.localMaxKeys });
  const limiter: RateLimiter =
    redis !== undefined
      ? createResilientLimiter({
          primary: createRedisLimiter(redis, config.redis?.commandTimeout),
          local,
          // Each worker process keeps its own fallback limiter, so each takes its share of its instance's share.
          expectedInstances: config.rateLimiting.expectedInstances * config.server.workers,
          openForMs: config.rateLimiting.breakerOpenFor,
          log,
          metrics,
        })
      : createScaledLimiter(local, config.server.workers);
  const limits = new Map<string, OrgLimits>();
  for (const [org, cfg] of Object.entries(config.orgs)) {
    if (cfg.rateLimit === undefined) continue;
    const t = { ...config.upstream, ...cfg.timeouts };
    const maxCallMs = (t.connect ?? t.connectTimeout) + (t.headers ?? t.headersTimeout) + (t.body ?? t.bodyTimeout);
    limits.set(org, compileOrgLimits(org, cfg.rateLimit, maxCallMs));
  }
  if (limits.size > 0 && redis === undefined) {
    log.warn('rate limits are enforced per instance: no redis is configured', { orgs: [...limits.keys()] });
    const workers = config.server.workers;
    // Each worker enforces at least 1: a limit below the worker count cannot be split exactly.
    const tooSmall = [...limits.values()]
      .filter((l) => l.rate.limit < workers || (l.concurrency?.limit ?? workers) < workers)
      .map((l) => l.org);
    if (workers > 1 && tooSmall.length > 0) {
      log.warn(
        'some limits are below server.workers: each worker admits at least 1, so the instance admits up to one per worker',
        { orgs: tooSmall, workers },
      );
    }
  }
  const sinks = sinksOf(config.audit);
  if (!sinks.some((s) => s.required)) {
    log.warn('audit trail off: calls are forwarded without a write-ahead record (audit.allowUnaudited)', {
      sinks: sinks.length,
    });
  }

  let draining = false;
  const isDraining = () => draining;
  const instance = config.server.instanceId ?? options.instance;
  const audit = await createAudit(config, {
    log,
    instance,
    redis,
    auditWrite: options.auditWrite,
    workerSlot: options.workerSlot,
    metrics,
  });
  const readiness = createReadiness({ verifier, redis, redisConfig: config.redis, isDraining, audit });
  const inFlight = new InFlightCalls();
  const app = createApp({
    verifier,
    policy: createPolicy(config.policy),
    credentials,
    forwarder,
    orgs: config.orgs,
    audit,
    log,
    instance,
    maxBodyBytes: config.server.maxBodyBytes,
    bodyTimeoutMs: config.server.bodyTimeout,
    readiness,
    isDraining,
    inFlight,
    limiter,
    limits,
    metrics,
  });

  const listener = getRequestListener(app.fetch, {
    // Requests node-server cannot even turn into a Request (bad Host, backslash in the path).
    errorHandler: () => problemResponse('invalid_path', 'The request target or Host header is malformed.'),
  });
  const server = createServer(
    {
      requestTimeout: config.server.requestTimeout,
      headersTimeout: Math.min(config.server.headersTimeout, config.server.requestTimeout),
      keepAliveTimeout: config.server.keepAliveTimeout,
      // Node checks the header and request deadlines on this interval (30 s by default).
      connectionsCheckingInterval: 1_000,
      // A request without Host reaches node-server, which answers it as problem+json (not Node's bare 400).
      requireHostHeader: false,
    },
    (req, res) => {
      void listener(req, res);
    },
  );
  server.on('clientError', answerClientError(log));
  // An Expect other than 100-continue: answered by the app like any request, never Node's bare 417.
  server.on('checkExpectation', (req, res) => {
    void listener(req, res);
  });

  const port = await listen(server, config.server.port, config.server.host);
  let admin: Server | undefined;
  let adminPort: number | undefined;
  if (config.admin !== undefined && options.serveAdmin !== false) {
    ({ server: admin, port: adminPort } = await startAdminServer(
      { readiness, metrics: metrics.registry },
      config.admin,
    ));
  }
  log.info('snapgate listening', { host: config.server.host, port, adminPort, orgs: Object.keys(config.orgs).length });

  let shuttingDown: Promise<{ drained: boolean }> | undefined;
  const shutdown = (deadlineMs = config.server.shutdownTimeout): Promise<{ drained: boolean }> => {
    shuttingDown ??= (async () => {
      // The listener stays open while draining: /readyz answers 503 so load balancers stop
      // sending, new calls get 503 shutting_down, and calls in flight finish.
      draining = true;
      log.info('draining', { inFlight: inFlight.size, deadlineMs });
      const drained = await inFlight.whenIdle(deadlineMs);
      if (!drained) {
        // Cut what is left: each abandoned call ends with an aborted_by_shutdown outcome, written
        // before the trail closes.
        const cut = inFlight.abortAll('shutdown');
        log.warn('drain deadline passed; abandoning calls in flight', { inFlight: cut });
        if (!(await inFlight.whenIdle(ABORT_GRACE_MS)))
          log.error('calls still in flight after abandoning them', { inFlight: inFlight.size });
      }
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      if (admin !== undefined) {
        const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeAllConnections();
        await adminClosed;
      }
      await audit.close(config.audit.closeTimeout);
      credentials.close();
      await forwarder
        .close()
        .catch((err: unknown) => log.warn('closing upstream pool failed', { error: describeError(err) }));
      // A stalled Redis must not hold the exit: QUIT gets a second, then the socket is dropped.
      if (redis !== undefined) await withDeadline(redis.quit(), 1_000).catch(() => redis.disconnect());
      log.info('stopped', { drained });
      return { drained };
    })();
    return shuttingDown;
  };

  return { server, port, adminPort, metrics, credentials, readiness, shutdown };
}
