// Builds the audit trail from config: one writer (chain, queue, spool) per sink, and the recorder the request path
// uses.
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, parse } from 'node:path';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import type { RedisClient } from '../redis/client.js';
import { createAuditRecorder, type AuditRecorder } from './recorder.js';
import { createFileSink, createLineSink, createRedisStreamSink, type Sink } from './sinks.js';
import { AuditTrail, SinkWriter } from './trail.js';

/**
 * Where the stdout sink writes; main passes stdout. Resolves once the stream's write callback fired
 * (the text is handed over) and rejects when the stream failed (EPIPE, closed): see createLineSink.
 */
export type AuditWrite = (text: string) => void | Promise<void>;

/**
 * A worker slot's own file: `audit.jsonl` → `audit.w1.jsonl` (a name without an extension gets
 * `.w1`). Its rotated files are `audit.w1.jsonl.<time>`, so `audit verify --file audit.w1.jsonl`
 * reads one slot's whole trail. Without a slot (one process), the path as configured.
 */
export function slotPath(path: string, slot: number | undefined): string {
  if (slot === undefined) return path;
  const p = parse(path);
  return join(p.dir, `${p.name}.w${slot}${p.ext}`);
}

export interface AuditDeps {
  log: Logger;
  /** Names this process's chains. */
  instance: string;
  redis: RedisClient | undefined;
  auditWrite: AuditWrite;
  metrics: Metrics;
  /** With server.workers, this worker's slot (1..N, kept by its replacement); undefined in a single process. */
  workerSlot: number | undefined;
}

/** The sinks a config declares: `audit.sinks`, or one required stdout sink when `audit.stdout` (the default). */
export function sinksOf(audit: Config['audit']): NonNullable<Config['audit']['sinks']> {
  return audit.sinks ?? (audit.stdout ? [{ type: 'stdout', required: true }] : []);
}

/** The audit sinks from config, each behind a writer with its chain, queue and spool. */
export async function createAudit(
  config: Config,
  deps: AuditDeps,
): Promise<AuditRecorder & { health(): { ready: boolean; detail: string } }> {
  const a = config.audit;
  const sinkConfigs = sinksOf(a);
  if (!sinkConfigs.some((s) => s.required)) {
    deps.log.warn('audit trail off: calls are forwarded without a write-ahead record (audit.allowUnaudited)', {
      sinks: sinkConfigs.length,
    });
  }
  // With workers, each slot spools in its own directory (<spoolDir>/w<slot>/<sink>.spool.jsonl): one
  // worker's replay never truncates another's spooled attempts, and a replacement replays its slot's.
  const baseSpoolDir = a.spoolDir ?? join(tmpdir(), 'snapgate-spool');
  const spoolDir = deps.workerSlot === undefined ? baseSpoolDir : join(baseSpoolDir, `w${deps.workerSlot}`);
  if (a.onFailure === 'spool') await mkdir(spoolDir, { recursive: true });
  const writers: SinkWriter[] = [];
  const ofType = new Map<string, number>();
  for (const sc of sinkConfigs) {
    // The second sink of a type spools to `<type>.2.spool.jsonl`, so sinks never share a spool.
    const n = (ofType.get(sc.type) ?? 0) + 1;
    ofType.set(sc.type, n);
    let sink: Sink;
    if (sc.type === 'stdout') sink = createLineSink('stdout', deps.auditWrite);
    else if (sc.type === 'file') {
      sink = await createFileSink({ path: slotPath(sc.path, deps.workerSlot), maxBytes: sc.maxBytes, fsync: sc.fsync });
    } else if (deps.redis !== undefined) {
      sink = createRedisStreamSink(deps.redis, { stream: sc.stream, maxLen: sc.maxLen });
    } else throw new Error('audit redis sink without redis');
    writers.push(
      new SinkWriter({
        sink,
        required: sc.required,
        onFailure: a.onFailure,
        ackTimeoutMs: a.ackTimeout,
        spoolDir,
        instance: deps.instance,
        log: deps.log,
        maxQueue: a.maxQueue,
        onDropped: (name) => deps.metrics.auditDropped.inc({ sink: name }),
        spoolName: n === 1 ? sc.type : `${sc.type}.${n}`,
      }),
    );
  }
  const trail = new AuditTrail(writers);
  // From 0, so that an alert on increase() sees the first drop.
  for (const w of writers) deps.metrics.auditDropped.labels(w.label).inc(0);
  collectSinkStates(trail, deps.metrics);
  await trail.start();
  const recorder = createAuditRecorder(trail, { ...a.denials, log: deps.log });
  return { ...recorder, health: () => trail.health(a.onFailure) };
}

/** The sinks' gauges (up, queue, spool), read at scrape time: nothing on the request path. */
function collectSinkStates(trail: AuditTrail, metrics: Metrics): void {
  type State = ReturnType<AuditTrail['sinkStates']>[number];
  const gauges: Array<[Metrics['auditQueueDepth'], (s: State) => number]> = [
    [metrics.auditQueueDepth, (s) => s.depth],
    [metrics.auditSinkUp, (s) => (s.up ? 1 : 0)],
    [metrics.auditSpoolEvents, (s) => s.spooledEvents],
    [metrics.auditSpoolBytes, (s) => s.spooledBytes],
  ];
  for (const [gauge, value] of gauges) {
    gauge.reset();
    // prom-client calls a gauge's collect() before each scrape reads it.
    (gauge as unknown as { collect?: () => void }).collect = () => {
      for (const s of trail.sinkStates()) gauge.set({ sink: s.sink }, value(s));
    };
  }
}
