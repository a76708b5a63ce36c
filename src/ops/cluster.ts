// With server.workers > 1 the primary owns the admin listener: /metrics sums every worker's
// registry (prom-client's AggregatorRegistry) and /readyz asks each worker over IPC. Each worker
// answers. The primary also writes stdout for all workers, relaying whole lines.
import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { startAdminServer } from './admin.js';
import type { ReadinessReport } from './health.js';

const READYZ_ASK = 'snapgate:readyz';
const READYZ_ANSWER = 'snapgate:readyz-answer';

interface Ask {
  type: typeof READYZ_ASK;
  id: number;
}
interface Answer {
  type: typeof READYZ_ANSWER;
  id: number;
  report: ReadinessReport;
}

const isMessage =
  <T extends Ask | Answer>(type: T['type']) =>
  (m: unknown): m is T =>
    typeof m === 'object' &&
    m !== null &&
    (m as { type?: unknown }).type === type &&
    typeof (m as { id?: unknown }).id === 'number';
const isAsk = isMessage<Ask>(READYZ_ASK);
const isAnswer = isMessage<Answer>(READYZ_ANSWER);

/**
 * A worker's side of the IPC channel to its primary: the primary's metrics requests (prom-client)
 * and readiness questions are answered here. Made by main in a worker; `close()` stops answering.
 */
export class PrimaryLink {
  private onMessage: ((message: unknown) => void) | undefined;

  /**
   * Before anything else: answers the primary's metrics requests at once (with no series until
   * `answer`), so a scrape while a worker starts does not wait out prom-client's 5 s.
   */
  constructor(private readonly proc: NodeJS.Process) {
    AggregatorRegistry.setRegistries([]);
    new AggregatorRegistry();
  }

  /** Once the gateway serves: lets the primary read this worker's metrics and readiness. */
  answer(registry: Registry, readiness: () => Promise<ReadinessReport>): void {
    AggregatorRegistry.setRegistries([registry]);
    // Constructing one installs prom-client's worker side: it answers the primary's metrics requests.
    new AggregatorRegistry();
    this.close();
    this.onMessage = (message: unknown) => {
      if (!isAsk(message)) return;
      void readiness()
        .catch((): ReadinessReport => ({ ready: false, checks: { worker: 'readiness check failed' } }))
        .then((report) => this.reply({ type: READYZ_ANSWER, id: message.id, report }));
    };
    this.proc.on('message', this.onMessage);
  }

  close(): void {
    if (this.onMessage !== undefined) this.proc.off('message', this.onMessage);
    this.onMessage = undefined;
  }

  private reply(answer: Answer): void {
    // With a callback, a channel closed meanwhile (the worker is exiting) is not an 'error' event.
    if (this.proc.connected) this.proc.send?.(answer, undefined, {}, () => undefined);
  }
}

/**
 * In the primary: the admin listener for all workers. Ready only when `expected` workers run and
 * each reports ready within `timeoutMs` (a worker still starting has not answered yet, so it is not).
 * Resolves with the server and its port once it listens.
 */
export async function startPrimaryAdmin(options: {
  host: string;
  port: number;
  expected: number;
  timeoutMs?: number;
}): Promise<{ server: Server; port: number }> {
  const timeoutMs = options.timeoutMs ?? 1_000;
  const aggregator = new AggregatorRegistry();
  const waiting = new Map<number, (report: ReadinessReport) => void>();
  let nextId = 0;
  const onAnswer = (_worker: Worker, message: unknown) => {
    if (isAnswer(message)) waiting.get(message.id)?.(message.report);
  };
  cluster.on('message', onAnswer);

  const ask = (worker: Worker) =>
    new Promise<ReadinessReport>((resolve) => {
      const id = nextId++;
      const timer = setTimeout(
        () => settle({ ready: false, checks: { worker: `no answer within ${timeoutMs} ms` } }),
        timeoutMs,
      );
      const settle = (report: ReadinessReport) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(report);
      };
      waiting.set(id, settle);
      // A worker exiting meanwhile: the callback gets the error (no 'error' event) and the answer times out.
      worker.send({ type: READYZ_ASK, id } satisfies Ask, undefined, () => undefined);
    });

  const readiness = async (): Promise<ReadinessReport> => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    const reports = await Promise.all(workers.map(async (w) => [w.process.pid, await ask(w)] as const));
    const checks: Record<string, string> = {
      workers: reports.length === options.expected ? 'ok' : `${reports.length} of ${options.expected} running`,
    };
    for (const [pid, report] of reports) {
      const failing = Object.entries(report.checks).filter(([, v]) => v !== 'ok');
      checks[`worker ${pid}`] = report.ready ? 'ok' : failing.map(([k, v]) => `${k}: ${v}`).join('; ') || 'not ready';
    }
    return { ready: reports.length === options.expected && reports.every(([, r]) => r.ready), checks };
  };

  const metrics = { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() };
  try {
    return await startAdminServer({ readiness, metrics }, options);
  } catch (err) {
    cluster.off('message', onAnswer);
    throw err;
  }
}

export interface LineRelay {
  /** Relays a worker's stdout pipe until it closes. */
  add(source: Readable): void;
  /** Resolves once every worker pipe has closed and `out` has taken what was relayed, or after `timeoutMs`. */
  flushed(timeoutMs: number): Promise<void>;
}

/**
 * In the primary: the one writer of `out` (stdout) for every worker. Each worker's stdout is a pipe
 * to the primary, and only whole lines are written on, one write per run of whole lines, so a line
 * is never split between two writes and two workers' lines never tear into each other (however
 * large a worker's batch). While `out` needs draining every worker pipe is paused: a reader that
 * stalls fills the workers' pipes, which becomes backpressure in their stdout sinks (their ack
 * timeout and onFailure apply). Memory stays bounded: one chunk per worker beyond `out`'s buffer.
 * When `out` fails (EPIPE: the reader is gone), the worker pipes are closed, so each worker's
 * stdout sink fails too and onFailure applies there.
 */
export function relayLines(out: Writable, log: Logger): LineRelay {
  const sources = new Set<Readable>();
  const closed: Promise<void>[] = [];
  let broken = false;
  let paused = false;

  const resumeAll = () => {
    paused = false;
    for (const s of sources) s.resume();
  };
  out.on('error', () => {
    // main.ts logs the failure; here the workers are told, by closing their pipes.
    broken = true;
    for (const s of sources) s.destroy();
  });
  const forward = (text: Buffer) => {
    if (broken) return;
    if (!out.write(text) && !paused) {
      paused = true;
      for (const s of sources) s.pause();
      out.once('drain', resumeAll);
    }
  };

  return {
    add(source) {
      closed.push(new Promise((resolve) => source.once('close', () => resolve())));
      // A pipe closed by `destroy` or a worker gone mid-write: the close below says what was lost.
      source.on('error', () => undefined);
      if (broken) {
        source.destroy();
        return;
      }
      sources.add(source);
      if (paused) source.pause();
      // The start of a line whose end has not come yet.
      let partial: Buffer[] = [];
      let partialBytes = 0;
      source.on('data', (chunk: Buffer) => {
        const end = chunk.lastIndexOf(0x0a);
        if (end < 0) {
          partial.push(chunk);
          partialBytes += chunk.length;
          return;
        }
        const whole = chunk.subarray(0, end + 1);
        forward(partial.length === 0 ? whole : Buffer.concat([...partial, whole]));
        partial = end + 1 < chunk.length ? [chunk.subarray(end + 1)] : [];
        partialBytes = chunk.length - end - 1;
      });
      source.once('close', () => {
        sources.delete(source);
        // Never acknowledged (the worker's write callback had not fired), so nothing the trail relied on.
        if (partialBytes > 0) {
          log.warn('a worker stopped in the middle of an audit line on stdout; the unfinished line was not relayed', {
            bytes: partialBytes,
          });
        }
      });
    },
    async flushed(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      const drained = (async () => {
        await Promise.all(closed);
        if (!broken && out.writableLength > 0) await new Promise<void>((resolve) => out.write('', () => resolve()));
      })();
      await Promise.race([drained, deadline]);
      clearTimeout(timer);
    },
  };
}

/** Names a worker's slot (1..N) in its environment: its audit files and spool are the slot's own. */
export const WORKER_SLOT_ENV = 'SNAPGATE_WORKER_SLOT';

export interface SupervisorOptions {
  workers: number;
  log: Logger;
  /** Where the workers' stdout lines go (stdout): see relayLines. */
  out: Writable;
  /** A worker exiting with this code cannot start with this config: none is replaced, and the primary exits with it. */
  configExitCode: number;
  /** How long the primary waits, at exit, for the workers' last stdout lines to be relayed. */
  relayFlushMs: number;
  /** Ends the primary (main passes process.exit). */
  exit: (code: number) => void;
}

/**
 * The primary of `server.workers` > 1: forks the workers (they share the port through
 * node:cluster), each in a slot 1..N passed in its environment, replaces one that dies in the same
 * slot (waiting longer each time workers keep dying young, up to 30 s), and on stop() lets every
 * worker drain and exits 0 once all have and their last stdout lines are relayed. The workers'
 * stdout comes to the primary through pipes and only the primary writes stdout (relayLines), so
 * audit lines of two workers never tear. A worker that exits with `configExitCode` (its
 * credentials cannot be resolved) is not replaced: every other would fail the same way, so the
 * primary stops the rest and exits with that code too. Made by main, which wires the signals.
 */
export class Supervisor {
  private stopping = false;
  private exitCode = 0;
  private delay = 250;
  private readonly startedAt = new Map<number, number>();
  private readonly slotOf = new Map<number, number>();
  private readonly relay: LineRelay;

  constructor(private readonly options: SupervisorOptions) {
    this.relay = relayLines(options.out, options.log);
  }

  start(): void {
    cluster.setupPrimary({ stdio: ['inherit', 'pipe', 'inherit', 'ipc'] });
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    this.options.log.info('starting workers', { workers: this.options.workers });
    for (let slot = 1; slot <= this.options.workers; slot++) this.fork(slot);
  }

  /** SIGTERM/SIGINT: every worker drains; the primary exits once all have. */
  stop(signal: NodeJS.Signals): void {
    this.stopping = true;
    this.options.log.info('signal received', { signal });
    this.stopAll();
  }

  /** SIGHUP: every worker reloads its config (and the secrets it references). */
  reload(): void {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  }

  private fork(slot: number): void {
    // A restart still waiting when shutdown began must not start a worker nobody will stop.
    if (this.stopping) return;
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot) });
    this.startedAt.set(worker.id, Date.now());
    this.slotOf.set(worker.id, slot);
    if (worker.process.stdout) this.relay.add(worker.process.stdout);
  }

  private exited(worker: Worker, code: number, signal: string): void {
    const lived = Date.now() - (this.startedAt.get(worker.id) ?? 0);
    const slot = this.slotOf.get(worker.id) ?? 1;
    this.startedAt.delete(worker.id);
    this.slotOf.delete(worker.id);
    if (this.stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) this.exit(this.exitCode);
      return;
    }
    const { log } = this.options;
    if (code === this.options.configExitCode) {
      log.error('a worker cannot start with this config; stopping the others', { pid: worker.process.pid, code });
      this.stopping = true;
      this.exitCode = code;
      this.stopAll();
      return;
    }
    this.delay = lived < 10_000 ? Math.min(this.delay * 2, 30_000) : 500;
    log.error('worker died; starting another', {
      pid: worker.process.pid,
      slot,
      code,
      signal,
      restartInMs: this.delay,
    });
    setTimeout(() => this.fork(slot), this.delay);
  }

  private stopAll(): void {
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) this.exit(this.exitCode);
    for (const w of workers) w?.process.kill('SIGTERM');
  }

  private exit(code: number): void {
    void this.relay.flushed(this.options.relayFlushMs).then(() => this.options.exit(code));
  }
}
