// Starts a gateway: its dependencies (deps.ts), the app on its listener (http/serve.ts), the admin listener, a config
// reload that swaps the generation serving new calls, and a shutdown that drains the calls in flight, then closes
// everything in the reverse of the order it was made.
import type { Server } from 'node:http';
import { createApp } from './app.js';
import { ConfigError } from './config/errors.js';
import { configHash, planReload } from './config/reload-plan.js';
import type { Config } from './config/schema.js';
import { watchConfigFile } from './config/watch.js';
import { CredentialError, type CredentialStore } from './credentials/store.js';
import {
  buildDeps,
  buildGeneration,
  closeAll,
  type Closer,
  type Core,
  type GatewayOptions,
  type Generation,
} from './deps.js';
import { jwksApp, jwksServing } from './credentials/jwks-route.js';
import { closeServer, serve } from './http/serve.js';
import type { LevelledLogger, Logger } from './log.js';
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
  /** The live generation's credential store (a reload that changes the orgs or signing makes a new one). */
  readonly credentials: CredentialStore;
  /** The hash of the config serving new calls (see config/reload-plan.ts). */
  configHash(): string;
  /**
   * Reads the config again (GatewayOptions.configSource) and applies what may change while running; see
   * ReloadResult. Reloads never overlap: one asked for while another runs starts after it.
   */
  reload(reason?: string): Promise<ReloadResult>;
  /** What /readyz reports for this process. */
  readiness(): Promise<ReadinessReport>;
  /**
   * Drains: refuses new calls (503 shutting_down, readiness 503) while the calls in flight finish
   * within `deadlineMs`, then closes the listeners, the audit trail, Redis, the pools and the rest.
   */
  shutdown(deadlineMs?: number): Promise<{ drained: boolean }>;
}

/** What a reload did. A failed one changed nothing: the last good config keeps serving. */
export interface ReloadResult {
  readonly ok: boolean;
  /** The hash of the config serving new calls after the reload. */
  readonly hash: string;
  /** Changed fields now applied (dotted paths). */
  readonly applied: readonly string[];
  /** Changed fields that need a restart, left as they run. */
  readonly needRestart: readonly string[];
  /** Why it failed: every bad field as `path: message`, or the secrets that cannot be resolved. */
  readonly problems: readonly string[];
}

/** How long calls cut at the drain deadline get to write their outcome before connections close. */
const ABORT_GRACE_MS = 2_000;

/**
 * Starts snapgate from a validated config. Throws CredentialError (or a key-loading error) when a
 * secret cannot be resolved, or the listen error; either way after closing what it had made.
 */
export async function startGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const { log } = options;
  const { core, generation, closers } = await buildDeps(config, options);
  // New calls go to the live generation's app; a call keeps the app (and config) it began on until it ends.
  let app = createApp(generation.deps);
  const fetch = (request: Request, env: unknown) => app.fetch(request, env);
  let listening: { server: Server; port: number; adminPort: number | undefined };
  try {
    listening = await listenAll(config, options, core, fetch, closers);
  } catch (err) {
    await closeAll(closers, log);
    throw err;
  }
  const { server, port, adminPort } = listening;
  log.info('snapgate listening', { host: config.server.host, port, adminPort, orgs: generation.deps.orgs.size });
  noteActiveConfig(core, generation.hash);

  const reloader = createReloader(core, (next) => {
    app = createApp(next.deps);
  });
  const source = options.configSource;
  if (source?.watch === true) {
    const watching = await watchConfigFile(source.path, () => void reloader.reload('config file change'), log);
    closers.push({ name: 'config watch', close: () => watching.close() });
  }

  let shuttingDown: Promise<{ drained: boolean }> | undefined;
  const shutdown = (deadlineMs = config.server.shutdownTimeout): Promise<{ drained: boolean }> => {
    // The listener stays open while draining: /readyz answers 503 so load balancers stop
    // sending, new calls get 503 shutting_down, and calls in flight finish.
    shuttingDown ??= core.inFlight.drain(deadlineMs, ABORT_GRACE_MS, log).then(async (drained) => {
      await closeAll(closers, log);
      log.info('stopped', { drained });
      return { drained };
    });
    return shuttingDown;
  };
  const live = (): Generation => core.live.generation!;
  return {
    server,
    port,
    adminPort,
    metrics: core.metrics,
    get credentials() {
      return live().credentials;
    },
    configHash: () => live().hash,
    reload: (reason = 'request') => reloader.reload(reason),
    readiness: core.readiness,
    shutdown,
  };
}

function noteActiveConfig(core: Core, hash: string): void {
  core.metrics.configInfo.reset();
  core.metrics.configInfo.labels(hash).set(1);
  core.metrics.configLoadedAt.set(Math.floor(Date.now() / 1000));
}

/** At most this many changed paths are named in a log line (a change to 1,000 orgs is summarised). */
const MAX_PATHS_LOGGED = 50;

const listed = (paths: readonly string[]): string[] =>
  paths.length <= MAX_PATHS_LOGGED
    ? [...paths]
    : [...paths.slice(0, MAX_PATHS_LOGGED), `…and ${paths.length - MAX_PATHS_LOGGED} more`];

/**
 * Reloads one at a time: a reload asked for while one runs starts after it (it may read a newer file). A config
 * that does not validate, or whose secrets cannot be resolved, changes nothing and is logged in one line with
 * every problem. An unchanged config re-resolves the live credentials (a rotated password file, SIGHUP's old job).
 */
function createReloader(
  core: Core,
  swap: (next: Generation) => void,
): { reload(reason: string): Promise<ReloadResult> } {
  const { log, configSource: source } = core.options;
  const counted = (result: ReloadResult): ReloadResult => {
    core.metrics.configReloads.labels(result.ok ? 'success' : 'failure').inc();
    return result;
  };
  const failed = (problems: readonly string[], reason: string): ReloadResult => {
    const current = core.live.generation!;
    log.error('config reload failed; keeping the last good config', {
      ...(source !== undefined ? { config: source.path } : {}),
      reason,
      hash: current.hash,
      problems,
    });
    return counted({ ok: false, hash: current.hash, applied: [], needRestart: [], problems });
  };

  const reloadOnce = async (reason: string): Promise<ReloadResult> => {
    if (source === undefined) {
      return failed(['(config): this gateway was started without a config file to reload'], reason);
    }
    // Shutdown has begun (its closers may have run): nothing new is made for a process that is leaving.
    if (core.inFlight.isDraining) {
      return failed(['(config): shutting down; the config is read at the next start'], reason);
    }
    let next: Config;
    try {
      next = await source.load();
    } catch (err) {
      return failed(err instanceof ConfigError ? err.problems : [`(config): ${errorText(err)}`], reason);
    }
    const current = core.live.generation!;
    const fileHash = configHash(next);
    if (fileHash === current.fileHash) {
      // The same file: only its secrets are read again (a rotated password file). One that cannot be resolved
      // fails the reload like any other problem (the store keeps the last good credentials).
      const credentials = await current.credentials.reload();
      if (!credentials.ok) return failed(credentials.problems, reason);
      log.info('config reloaded: unchanged', { config: source.path, reason, hash: current.hash });
      return counted({ ok: true, hash: current.hash, applied: [], needRestart: [], problems: [] });
    }
    const plan = planReload(current.config, next);
    let generation: Generation;
    try {
      generation = await buildGeneration(plan.effective, fileHash, core, current);
    } catch (err) {
      if (err instanceof CredentialError) return failed(err.problems, reason);
      return failed([`(config): ${errorText(err)}`], reason);
    }
    if (generation.credentials === current.credentials) {
      const credentials = await generation.credentials.reload();
      if (!credentials.ok) return failed(credentials.problems, reason);
    }
    const hash = generation.hash;
    if (generation.verifier !== current.verifier && !(await readyWithin(generation, 5_000))) {
      log.warn("config reload: an issuer's signing keys are not loaded yet; its calls get 503 until they are", {});
    }
    // Shutdown began while the generation was built (its closers may have run): it is not swapped in.
    if (core.inFlight.isDraining) {
      if (generation.credentials !== current.credentials) generation.credentials.close();
      return failed(['(config): shutting down; the config is read at the next start'], reason);
    }
    core.live.generation = generation;
    swap(generation);
    if (generation.credentials !== current.credentials) {
      current.credentials.close();
      const [before, after] = [current.credentials.keys()?.active, generation.credentials.keys()?.active];
      if (before !== undefined && after !== undefined && before.thumbprint !== after.thumbprint) {
        log.info('signing key rotated: new tokens are signed with the active key', {
          previous: before.kid,
          active: after.kid,
        });
      }
    }
    noteActiveConfig(core, hash);
    log.info('config reloaded', {
      config: source.path,
      reason,
      hash,
      previousHash: current.hash,
      ...(hash !== fileHash ? { fileHash } : {}),
      applied: listed(plan.applied),
    });
    if (plan.needRestart.length > 0) {
      log.warn('config reload: these fields need a restart and were left as they run', {
        config: source.path,
        fields: listed(plan.needRestart),
      });
    }
    // After the lines about this reload, so that a level raised to warn still shows it happened.
    if (plan.applied.includes('log.level') && isLevelled(log)) log.setLevel(next.log.level);
    return counted({ ok: true, hash, applied: plan.applied, needRestart: plan.needRestart, problems: [] });
  };

  let previous: Promise<unknown> = Promise.resolve();
  return {
    reload(reason) {
      const run = previous.then(() => reloadOnce(reason));
      previous = run.catch(() => undefined);
      return run;
    },
  };
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const isLevelled = (log: Logger): log is LevelledLogger =>
  typeof (log as Partial<LevelledLogger>).setLevel === 'function';

/** Gives a new verifier up to `ms` to load its issuers' keys before it takes calls. */
async function readyWithin(generation: Generation, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([generation.verifier.ready().catch(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The callers' listener, then the JWKS and admin ones (unless left to a workers' primary); each added to `closers`. */
async function listenAll(
  config: Config,
  options: GatewayOptions,
  core: Core,
  fetch: (request: Request, env: unknown) => Response | Promise<Response>,
  closers: Closer[],
): Promise<{ server: Server; port: number; adminPort: number | undefined }> {
  const serving = await serve(fetch, config.server, options.log);
  closers.push({ name: 'listener', close: () => serving.close() });
  const jwksPort = config.signing?.jwks.port;
  if (config.signing !== undefined && jwksPort !== undefined) {
    // A listener of its own, for SnapLogic to reach where the callers' listener is internal only. It serves the
    // live generation's keys.
    const { host } = config.signing.jwks;
    const keys = { keys: () => core.live.generation?.credentials.keys() };
    const jwks = await serve(
      jwksApp(jwksServing(config.signing, keys)).fetch,
      { ...config.server, host, port: jwksPort },
      options.log,
    );
    closers.push({ name: 'jwks listener', close: () => jwks.close() });
    options.log.info('jwks listening', { host, jwksPort: jwks.port, path: config.signing.jwks.path });
  }
  if (config.admin === undefined || options.serveAdmin === false) {
    return { server: serving.server, port: serving.port, adminPort: undefined };
  }
  const admin = await startAdminServer({ readiness: core.readiness, metrics: core.metrics.registry }, config.admin);
  closers.push({ name: 'admin listener', close: () => closeServer(admin.server) });
  return { server: serving.server, port: serving.port, adminPort: admin.port };
}
