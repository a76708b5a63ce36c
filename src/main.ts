#!/usr/bin/env node
// The CLI: load config, then start the gateway (or, with several workers, supervise them) and wire signals. The
// only file that reaches for process.*; the cluster objects it makes are handed the process they use.
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { ConfigError } from './config/errors.js';
import { loadConfigIsolated } from './config/load-isolated.js';
import { CredentialError } from './credentials/store.js';
import { startGateway, type Gateway } from './gateway.js';
import { createLogger, describeError, type Logger } from './log.js';
import { PrimaryLink, startPrimaryAdmin, Supervisor, WORKER_SLOT_ENV } from './ops/cluster.js';
import type { Tracing } from './ops/tracing.js';
import { snapgateVersion } from './version.js';
import type { Config } from './config/schema.js';

/** Exit code for a config that cannot be used (sysexits EX_CONFIG). */
const EX_CONFIG = 78;

/** How long the primary waits, at exit, for the workers' last stdout lines to be relayed. */
const RELAY_FLUSH_MS = 2_000;

/**
 * stdout and stderr are often pipes whose reader can go away (`| head`, a log shipper restarting).
 * A failed stdout write is the stdout audit sink's failure (its append rejects, onFailure applies)
 * and a failed stderr write is a lost log line: neither may become an unhandled 'error' event.
 */
function guardStdio(log: Logger): void {
  let reported = false;
  process.stdout.on('error', (err) => {
    if (reported) return;
    reported = true;
    log.error('stdout failed: audit lines written to it fail from now on (audit.onFailure applies)', {
      error: describeError(err),
    });
  });
  // Nowhere left to say it.
  process.stderr.on('error', () => undefined);
}

/** Resolves once stdout's write callback fired (the text is handed over); rejects when stdout failed. */
const writeStdout = (text: string) =>
  new Promise<void>((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });

const usage = `usage: snapgate [serve]
       snapgate config check [--config FILE] [--print] [--json]
       snapgate audit verify|query|tail ...
       snapgate keys generate --out FILE [--alg ES256|RS256|Ed25519] [--kid KID]
       snapgate credentials check [ORG] [--json]
       snapgate --version | --help

  serve        run the gateway (default). Config: $SNAPGATE_CONFIG (default config/snapgate.yaml)
  config       check a config: every problem at once, secret references resolved (snapgate config --help)
  audit        check the audit trail's hash chains, or read it (snapgate audit --help)
  keys         make a new signing key for the JWTs sent to SnapLogic (snapgate keys --help)
  credentials  try each org identity's credential against SnapLogic (snapgate credentials --help)

Every command takes --help (-h); --version (-V) prints snapgate's version.
Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the config and every secret it references.`;

const serveUsage = `usage: snapgate [serve]

  Runs the gateway. Config: $SNAPGATE_CONFIG (default config/snapgate.yaml); check it first with
  snapgate config check. Environment overrides: SNAPGATE_PORT, SNAPGATE_HOST, SNAPGATE_WORKERS,
  SNAPGATE_LOG_LEVEL, SNAPGATE_REDIS_URL, SNAPGATE_ADMIN_HOST.
Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the config and every secret it references.
Exit: 0 after a drain, 78 the config or a credential cannot be used, 1 any other start-up failure.`;

/** Loads the config or exits 78 with every bad field named. */
async function loadOrExit(configPath: string, bootLog: Logger): Promise<Config> {
  try {
    return await loadConfigIsolated(configPath, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // One JSON line like every other (pid included); `snapgate config check` prints the same problems for people.
      bootLog.error('invalid config', { config: configPath, problems: err.problems });
      process.exit(EX_CONFIG);
    }
    throw err;
  }
}

/**
 * SIGHUP from the first line of `serve` on: its default action ends the process, so one that lands while the
 * gateway starts (connecting to Redis, fetching keys; a worker being replaced while its primary forwards a reload)
 * is remembered until `handle` is given, then acted on: the file may have changed after start-up read it.
 */
function hangups(): { handle(reload: () => void, pending: boolean): void } {
  let handler: (() => void) | undefined;
  let missed = false;
  process.on('SIGHUP', () => {
    if (handler === undefined) missed = true;
    else handler();
  });
  return {
    handle(reload, pending) {
      handler = reload;
      if (missed && pending) reload();
    },
  };
}

/** The primary of several workers: serves the admin listener for all of them and supervises them. */
async function superviseWorkers(config: Config, log: Logger, hangup: ReturnType<typeof hangups>): Promise<void> {
  if (config.admin !== undefined) {
    // The primary serves /metrics and /readyz for all workers (each worker's own would answer for itself only).
    try {
      const { host, port } = config.admin;
      const admin = await startPrimaryAdmin({ host, port, expected: config.server.workers });
      log.info('admin listening', { host, adminPort: admin.port, workers: config.server.workers });
    } catch (err) {
      log.error('start-up failed', { error: describeError(err) });
      process.exit(1);
    }
  }
  const supervisor = new Supervisor({
    workers: config.server.workers,
    log,
    out: process.stdout,
    configExitCode: EX_CONFIG,
    relayFlushMs: RELAY_FLUSH_MS,
    exit: (code) => process.exit(code),
  });
  supervisor.start();
  process.on('SIGTERM', () => supervisor.stop('SIGTERM'));
  process.on('SIGINT', () => supervisor.stop('SIGINT'));
  // One that came before is dropped: the workers forked just now read the file as it is.
  hangup.handle(() => supervisor.reload(), false);
}

/** This process's slot among the workers (1..N), or undefined when it is not a worker. */
function workerSlotOrExit(log: Logger): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  if (Number.isInteger(slot) && slot >= 1) return slot;
  log.error('start-up failed', { error: { message: `a worker needs ${WORKER_SLOT_ENV} (1..N) from its primary` } });
  process.exit(1);
}

/** Starts the gateway in this process, or exits 78 (credentials) or 1 (anything else). */
async function startOrExit(config: Config, configPath: string, log: Logger, tracing?: Tracing): Promise<Gateway> {
  try {
    return await startGateway(config, {
      env: process.env,
      log,
      auditWrite: writeStdout,
      workerSlot: workerSlotOrExit(log),
      instance: `${hostname()}:${process.pid}`,
      watchSecretFiles: true,
      configSource: { path: configPath, load: () => loadConfigIsolated(configPath, process.env), watch: true },
      processMetrics: true,
      serveAdmin: !cluster.isWorker,
      ...(tracing !== undefined ? { tracing } : {}),
    });
  } catch (err) {
    if (err instanceof CredentialError) {
      log.error('cannot resolve credentials', { config: configPath, problems: err.problems });
      process.exit(EX_CONFIG);
    }
    log.error('start-up failed', { error: describeError(err) });
    process.exit(1);
  }
}

async function serve(): Promise<void> {
  const hangup = hangups();
  const link = cluster.isWorker ? new PrimaryLink(process) : undefined;
  const configPath = process.env.SNAPGATE_CONFIG ?? 'config/snapgate.yaml';
  // Every line says which process wrote it: with workers, several write to the same stderr.
  const base = { pid: process.pid, ...(cluster.isWorker ? { worker: Number(process.env[WORKER_SLOT_ENV]) } : {}) };
  const bootLog = createLogger({ write: (l) => process.stderr.write(l), base });
  guardStdio(bootLog);
  const config = await loadOrExit(configPath, bootLog);
  const log = createLogger({ level: config.log.level, write: (l) => process.stderr.write(l), base });
  if (config.server.workers > 1 && cluster.isPrimary) return superviseWorkers(config, log, hangup);

  // Each process that serves (each worker) exports its own spans; a workers' primary serves no call.
  const instanceId = `${hostname()}:${process.pid}`;
  // The SDK (and its exporters) is loaded only when an OTEL_* variable is set: without one tracing is off, and the
  // serving process does not carry its modules (measured: 2 MB less RSS after start in the benchmark).
  const tracing = Object.keys(process.env).some((name) => name.startsWith('OTEL_'))
    ? (await import('./ops/tracing.js')).startTracing({
        env: process.env,
        log,
        serviceVersion: snapgateVersion(),
        instanceId,
      })
    : undefined;
  const gateway = await startOrExit(config, configPath, log, tracing);
  link?.answer(gateway.metrics.registry, () => gateway.readiness());
  const stop = (signal: string) => {
    log.info('signal received', { signal });
    gateway.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: describeError(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  hangup.handle(() => {
    log.info('signal received', { signal: 'SIGHUP' });
    void gateway.reload('SIGHUP');
  }, true);
}

const [command = 'serve', ...args] = process.argv.slice(2);
const wantsHelp = (argv: readonly string[]) => argv.includes('--help') || argv.includes('-h');

/** Prints a usage: on stdout with exit 0 when it was asked for, on stderr with exit 2 after a usage error. */
function usageExit(text: string, asked: boolean): never {
  (asked ? process.stdout : process.stderr).write(`${text}\n`);
  process.exit(asked ? 0 : 2);
}

if (command === 'serve') {
  if (args.length > 0) usageExit(serveUsage, wantsHelp(args));
  await serve();
} else if (command === '--version' || command === '-V' || command === 'version') {
  if (args.length > 0) usageExit(usage, wantsHelp(args));
  process.stdout.write(`snapgate ${snapgateVersion()}\n`);
  process.exit(0);
} else if (command === '--help' || command === '-h' || command === 'help') {
  usageExit(usage, true);
} else if (command === 'audit') {
  // Loaded only for this command: the serving process does not need the CLI.
  const { auditUsage, runAuditCli } = await import('./audit/cli.js');
  // `snapgate audit query … | head`: the reader leaving ends the command quietly, like any Unix tool.
  process.stdout.on('error', () => process.exit(0));
  process.stderr.on('error', () => undefined);
  // `audit COMMAND --help` is runAuditCli's to answer, with the usage of that command.
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h') usageExit(auditUsage, args.length > 0);
  const interrupted = new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  const code = await runAuditCli(args, {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    interrupted,
  });
  process.exit(code);
} else if (command === 'keys' || command === 'credentials' || command === 'config') {
  // Loaded only for these commands, like audit's.
  process.stdout.on('error', () => process.exit(0));
  process.stderr.on('error', () => undefined);
  const io = {
    out: (t: string) => process.stdout.write(t),
    err: (t: string) => process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
  };
  let code: number;
  if (command === 'config') {
    const { configUsage, runConfigCli } = await import('./config/cli.js');
    if (args.length === 0) usageExit(configUsage, false);
    code = await runConfigCli(args, io);
  } else {
    const { credentialsUsage, keysUsage, runCredentialsCli, runKeysCli } = await import('./credentials/cli.js');
    if (args.length === 0) usageExit(command === 'keys' ? keysUsage : credentialsUsage, false);
    code = await (command === 'keys' ? runKeysCli : runCredentialsCli)(args, io);
  }
  process.exit(code);
} else {
  usageExit(usage, false);
}
