// Builds every dependency from a validated config, serves HTTP, and drains on shutdown. Used by main, the demo and tests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Redis } from 'ioredis';
import { createApp } from './app.js';
import { createLineSink, type AuditSink } from './audit/event.js';
import { createTokenVerifier } from './auth/verifier.js';
import type { Config } from './config/schema.js';
import { parseSecretRef, resolveSecret } from './config/secret-ref.js';
import { createCredentialStore, type CredentialStore } from './credentials/store.js';
import { problemResponse } from './http/problem.js';
import { opsPaths } from './http/request-context.js';
import { describeError, type Logger } from './log.js';
import type { ReadinessReport } from './ops/health.js';
import { createPolicy } from './policy/policy.js';
import { createForwarder } from './upstream/forwarder.js';

export interface GatewayOptions {
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  /** Where audit lines go when `audit.stdout` is on; main passes stdout. */
  auditWrite: (line: string) => void;
  /** Names this instance in audit events when config has no server.instanceId. */
  instance: string;
  /** Watch secret files for changes (on in production, off in most tests). */
  watchSecretFiles?: boolean;
}

export interface Gateway {
  readonly server: Server;
  readonly port: number;
  readonly credentials: CredentialStore;
  /** Stops accepting, lets in-flight calls finish within `deadlineMs`, then closes pools and Redis. */
  shutdown(deadlineMs?: number): Promise<{ drained: boolean }>;
}

function createRedis(config: NonNullable<Config['redis']>, password: string | undefined, log: Logger): Redis {
  const redis = new Redis(config.url, {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(password !== undefined ? { password } : {}),
    connectTimeout: config.connectTimeout,
    commandTimeout: config.commandTimeout,
    // Fail fast instead of queueing while Redis is away: a queued command is a stalled request.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    lazyConnect: false,
  });
  let up = false;
  redis.on('ready', () => {
    if (!up) log.info('redis connected', { url: config.url });
    up = true;
  });
  redis.on('error', (err) => {
    if (up) log.warn('redis connection lost', { url: config.url, error: err.message });
    up = false;
  });
  return redis;
}

/**
 * Starts snapgate from a validated config. Throws CredentialError (or a key-loading error) before
 * listening when a secret cannot be resolved.
 */
export async function startGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const { log, env } = options;
  const verifier = await createTokenVerifier(config.auth.issuers, { env, log });
  const credentials = await createCredentialStore(config.orgs, { env, log, watchFiles: options.watchSecretFiles ?? false });
  const forwarder = createForwarder(config.upstream);

  let redis: Redis | undefined;
  if (config.redis !== undefined) {
    const ref = config.redis.password !== undefined ? parseSecretRef(config.redis.password) : undefined;
    const password = ref !== undefined ? await resolveSecret(ref, env) : undefined;
    redis = createRedis(config.redis, password, log);
  }

  let draining = false;
  const readiness = async (): Promise<ReadinessReport> => {
    const checks: Record<string, string> = { config: 'ok', credentials: 'ok' };
    if (draining) checks.shutdown = 'draining';
    checks.jwks = (await verifier.ready()) ? 'ok' : 'signing keys not loaded';
    if (redis !== undefined) {
      checks.redis = await redis.ping().then(
        () => 'ok',
        (err: unknown) => `unreachable (${err instanceof Error ? err.message : 'error'})`,
      );
    }
    return { ready: Object.values(checks).every((v) => v === 'ok'), checks };
  };

  const audit: AuditSink = config.audit.stdout ? createLineSink(options.auditWrite) : { write() {} };
  const app = createApp({
    verifier,
    policy: createPolicy(config.policy),
    credentials,
    forwarder,
    orgs: config.orgs,
    audit,
    log,
    instance: config.server.instanceId ?? options.instance,
    maxBodyBytes: config.server.maxBodyBytes,
    readiness,
    isDraining: () => draining,
  });

  const listener = getRequestListener(app.fetch, {
    // Requests node-server cannot even turn into a Request (bad Host, backslash in the path).
    errorHandler: () => problemResponse('invalid_path', 'The request target or Host header is malformed.'),
  });
  const server = createServer({ requestTimeout: 60_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 }, (req, res) => {
    void listener(req, res);
  });
  // Calls in flight, health checks excepted: shutdown waits for these to finish.
  let inFlight = 0;
  const idle: Array<() => void> = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (opsPaths.has((req.url ?? '').split('?', 1)[0] ?? '')) return;
    inFlight += 1;
    res.on('close', () => {
      inFlight -= 1;
      if (inFlight === 0) idle.splice(0).forEach((resolve) => resolve());
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info('snapgate listening', { host: config.server.host, port, orgs: Object.keys(config.orgs).length });

  let shuttingDown: Promise<{ drained: boolean }> | undefined;
  const shutdown = (deadlineMs = config.server.shutdownTimeout): Promise<{ drained: boolean }> => {
    shuttingDown ??= (async () => {
      // The listener stays open while draining: /readyz answers 503 so load balancers stop
      // sending, new calls get 503 shutting_down, and calls in flight finish.
      draining = true;
      log.info('draining', { inFlight, deadlineMs });
      const allDone = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve));
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        allDone.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      if (!drained) log.warn('drain deadline passed; closing remaining connections', { inFlight });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      credentials.close();
      await forwarder.close().catch((err: unknown) => log.warn('closing upstream pool failed', { error: describeError(err) }));
      if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect());
      log.info('stopped', { drained });
      return { drained };
    })();
    return shuttingDown;
  };

  return { server, port, credentials, shutdown };
}
