#!/usr/bin/env node
// Composition root and CLI: load config, start the gateway, wire signals. The only file that touches process.*.
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { ConfigError } from './config/errors.js';
import { loadConfigIsolated } from './config/load-isolated.js';
import { CredentialError } from './credentials/store.js';
import { startGateway } from './gateway.js';
import { createLogger, describeError, type Logger } from './log.js';
import { answerPrimary, joinPrimary, relayLines, startPrimaryAdmin } from './ops/cluster.js';

/** Exit code for a config that cannot be used (sysexits EX_CONFIG). */
const EX_CONFIG = 78;

/** Names a worker's slot (1..N) in its environment: its audit files and spool are the slot's own. */
const WORKER_SLOT_ENV = 'SNAPGATE_WORKER_SLOT';

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
       snapgate audit verify|query|tail ...

  serve   run the gateway (default). Config: $SNAPGATE_CONFIG (default config/snapgate.yaml)
  audit   check the audit trail's hash chains, or read it (snapgate audit --help)

Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads SnapLogic credentials.`;

async function serve(): Promise<void> {
  if (cluster.isWorker) joinPrimary();
  const configPath = process.env.SNAPGATE_CONFIG ?? 'config/snapgate.yaml';
  const bootLog = createLogger({ write: (l) => process.stderr.write(l) });
  guardStdio(bootLog);
  let config;
  try {
    config = await loadConfigIsolated(configPath, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`snapgate: ${err.message}\n`);
      bootLog.error('invalid config', { config: configPath, problems: err.problems });
      process.exit(EX_CONFIG);
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, write: (l) => process.stderr.write(l) });
  if (config.server.workers > 1 && cluster.isPrimary) {
    if (config.admin !== undefined) {
      // The primary serves /metrics and /readyz for all workers (each worker's own would answer for itself only).
      try {
        const admin = await startPrimaryAdmin({
          host: config.admin.host,
          port: config.admin.port,
          expected: config.server.workers,
        });
        log.info('admin listening', { host: config.admin.host, adminPort: admin.port, workers: config.server.workers });
      } catch (err) {
        log.error('start-up failed', { error: describeError(err) });
        process.exit(1);
      }
    }
    supervise(config.server.workers, log);
    return;
  }
  const workerSlot = cluster.isWorker ? Number(process.env[WORKER_SLOT_ENV]) : undefined;
  if (workerSlot !== undefined && !(Number.isInteger(workerSlot) && workerSlot >= 1)) {
    log.error('start-up failed', { error: { message: `a worker needs ${WORKER_SLOT_ENV} (1..N) from its primary` } });
    process.exit(1);
  }
  let gateway;
  try {
    gateway = await startGateway(config, {
      env: process.env,
      log,
      auditWrite: writeStdout,
      workerSlot,
      instance: `${hostname()}:${process.pid}`,
      watchSecretFiles: true,
      processMetrics: true,
      serveAdmin: !cluster.isWorker,
    });
  } catch (err) {
    if (err instanceof CredentialError) {
      process.stderr.write(`snapgate: ${err.message}\n`);
      log.error('cannot resolve credentials', { config: configPath, problems: err.problems });
      process.exit(EX_CONFIG);
    }
    log.error('start-up failed', { error: describeError(err) });
    process.exit(1);
  }

  if (cluster.isWorker) answerPrimary(gateway.metrics.registry, () => gateway.readiness());

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
  process.on('SIGHUP', () => {
    log.info('signal received', { signal: 'SIGHUP' });
    void gateway.credentials.reload();
  });
}

/**
 * The primary of `server.workers` > 1: forks the workers (they share the port through
 * node:cluster), each in a slot 1..N passed in its environment, replaces one that dies in the same
 * slot (waiting longer each time workers keep dying young, up to 30 s), forwards SIGHUP, and on
 * SIGTERM/SIGINT lets every worker drain and exits 0 once all have and their last stdout lines are
 * relayed. The workers' stdout comes to the primary through pipes and only the primary writes
 * stdout (relayLines), so audit lines of two workers never tear.
 * A worker that exits with EX_CONFIG (its credentials cannot be resolved) is not replaced: every
 * other would fail the same way, so the primary stops the rest and exits 78 too.
 */
function supervise(count: number, log: Logger): void {
  let stopping = false;
  let exitCode = 0;
  let delay = 250;
  const startedAt = new Map<number, number>();
  const slotOf = new Map<number, number>();
  const relay = relayLines(process.stdout, log);
  cluster.setupPrimary({ stdio: ['inherit', 'pipe', 'inherit', 'ipc'] });
  const fork = (slot: number) => {
    // A restart still waiting when shutdown began must not start a worker nobody will stop.
    if (stopping) return;
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot) });
    startedAt.set(worker.id, Date.now());
    slotOf.set(worker.id, slot);
    if (worker.process.stdout) relay.add(worker.process.stdout);
  };
  const exit = (code: number) => void relay.flushed(RELAY_FLUSH_MS).then(() => process.exit(code));
  const stopAll = () => {
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) exit(exitCode);
    for (const w of workers) w?.process.kill('SIGTERM');
  };
  log.info('starting workers', { workers: count });
  for (let slot = 1; slot <= count; slot++) fork(slot);
  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - (startedAt.get(worker.id) ?? 0);
    const slot = slotOf.get(worker.id) ?? 1;
    startedAt.delete(worker.id);
    slotOf.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) exit(exitCode);
      return;
    }
    if (code === EX_CONFIG) {
      log.error('a worker cannot start with this config; stopping the others', { pid: worker.process.pid, code });
      stopping = true;
      exitCode = EX_CONFIG;
      stopAll();
      return;
    }
    delay = lived < 10_000 ? Math.min(delay * 2, 30_000) : 500;
    log.error('worker died; starting another', { pid: worker.process.pid, slot, code, signal, restartInMs: delay });
    setTimeout(() => fork(slot), delay);
  });
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    log.info('signal received', { signal });
    stopAll();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
}

const [command = 'serve', ...args] = process.argv.slice(2);
if (command === 'serve') {
  await serve();
} else if (command === 'audit') {
  // Loaded only for this command: the serving process does not need the CLI.
  const { auditUsage, runAuditCli } = await import('./audit/cli.js');
  // `snapgate audit query … | head`: the reader leaving ends the command quietly, like any Unix tool.
  process.stdout.on('error', () => process.exit(0));
  process.stderr.on('error', () => undefined);
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(`${auditUsage}\n`);
    process.exit(args.length === 0 ? 2 : 0);
  }
  const interrupted = new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  const code = await runAuditCli(args, {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    interrupted,
  });
  process.exit(code);
} else {
  process.stderr.write(`${usage}\n`);
  process.exit(command === '--help' || command === '-h' ? 0 : 2);
}
