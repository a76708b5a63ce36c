// Starts a gateway: its dependencies (deps.ts), the app on its listener (http/serve.ts), the admin listener, and a
// shutdown that drains the calls in flight, then closes everything in the reverse of the order it was made.
import type { Server } from 'node:http';
import { createApp } from './app.js';
import type { Config } from './config/schema.js';
import type { CredentialStore } from './credentials/store.js';
import { buildDeps, closeAll, type Closer, type GatewayOptions } from './deps.js';
import { jwksApp, jwksServing } from './credentials/jwks-route.js';
import { closeServer, serve } from './http/serve.js';
import type { ReadinessReport } from './ops/health.js';
import type { Metrics } from './ops/metrics.js';
import { startAdminServer } from './ops/admin.js';

export type { GatewayOptions } from './deps.js';

export interface Gateway {
  readonly server: Server;
  readonly port: number;
  /** The admin listener's port (/metrics, /livez, /readyz), when `admin` is configured. */
  readonly adminPort: number | undefined;
  readonly metrics: Metrics;
  readonly credentials: CredentialStore;
  /** What /readyz reports for this process. */
  readiness(): Promise<ReadinessReport>;
  /**
   * Drains: refuses new calls (503 shutting_down, readiness 503) while the calls in flight finish
   * within `deadlineMs`, then closes the listeners, the audit trail, Redis, the pools and the rest.
   */
  shutdown(deadlineMs?: number): Promise<{ drained: boolean }>;
}

/** How long calls cut at the drain deadline get to write their outcome before connections close. */
const ABORT_GRACE_MS = 2_000;

/**
 * Starts snapgate from a validated config. Throws CredentialError (or a key-loading error) when a
 * secret cannot be resolved, or the listen error; either way after closing what it had made.
 */
export async function startGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const { log } = options;
  const { deps, closers } = await buildDeps(config, options);
  let listening: { server: Server; port: number; adminPort: number | undefined };
  try {
    listening = await listenAll(config, options, deps, closers);
  } catch (err) {
    await closeAll(closers, log);
    throw err;
  }
  const { server, port, adminPort } = listening;
  log.info('snapgate listening', { host: config.server.host, port, adminPort, orgs: deps.orgs.size });

  let shuttingDown: Promise<{ drained: boolean }> | undefined;
  const shutdown = (deadlineMs = config.server.shutdownTimeout): Promise<{ drained: boolean }> => {
    // The listener stays open while draining: /readyz answers 503 so load balancers stop
    // sending, new calls get 503 shutting_down, and calls in flight finish.
    shuttingDown ??= deps.inFlight.drain(deadlineMs, ABORT_GRACE_MS, log).then(async (drained) => {
      await closeAll(closers, log);
      log.info('stopped', { drained });
      return { drained };
    });
    return shuttingDown;
  };
  const { metrics, credentials, readiness } = deps;
  return { server, port, adminPort, metrics, credentials, readiness, shutdown };
}

/** The callers' listener, then the admin one (unless left to a workers' primary); each added to `closers`. */
async function listenAll(
  config: Config,
  options: GatewayOptions,
  deps: Parameters<typeof createApp>[0],
  closers: Closer[],
): Promise<{ server: Server; port: number; adminPort: number | undefined }> {
  const serving = await serve(createApp(deps).fetch, config.server, options.log);
  closers.push({ name: 'listener', close: () => serving.close() });
  const jwksPort = config.signing?.jwks.port;
  if (config.signing !== undefined && jwksPort !== undefined) {
    // A listener of its own, for SnapLogic to reach where the callers' listener is internal only.
    const { host } = config.signing.jwks;
    const jwks = await serve(
      jwksApp(jwksServing(config.signing, deps.credentials)).fetch,
      { ...config.server, host, port: jwksPort },
      options.log,
    );
    closers.push({ name: 'jwks listener', close: () => jwks.close() });
    options.log.info('jwks listening', { host, jwksPort: jwks.port, path: config.signing.jwks.path });
  }
  if (config.admin === undefined || options.serveAdmin === false) {
    return { server: serving.server, port: serving.port, adminPort: undefined };
  }
  const admin = await startAdminServer({ readiness: deps.readiness, metrics: deps.metrics.registry }, config.admin);
  closers.push({ name: 'admin listener', close: () => closeServer(admin.server) });
  return { server: serving.server, port: serving.port, adminPort: admin.port };
}
