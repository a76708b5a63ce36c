// Builds the audit trail from config: one writer (chain, queue, spool) per sink, and the recorder the request path
// uses.
import type { KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, parse } from 'node:path';
import type { Config } from '../config/schema.js';
import { parseSecretRef, resolveSecret, SecretResolutionError } from '../config/secret-ref.js';
import { CredentialError } from '../credentials/store.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../ops/metrics.js';
import { createRedisClient, withDeadline, type RedisClient } from '../redis/client.js';
import { checkpointSigner, CheckpointKeyError, parsePublicKeys, type CheckpointSigner } from './checkpoint.js';
import { CheckpointCopies } from './copies.js';
import { createAuditRecorder, type AuditRecorder } from './recorder.js';
import { createFileSink, createLineSink, createRedisStreamSink, type Sink } from './sinks.js';
import { AuditTrail, SinkWriter, type CheckpointOptions } from './trail.js';

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
  /** Resolves audit.checkpoints' key and the checkpoint sink's Redis password. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** The checkpoint key from its reference; a key that cannot be read or used stops start-up, naming the reference. */
async function signerOf(ref: string, env: NonNullable<AuditDeps['env']>): Promise<CheckpointSigner> {
  const problem = (why: string) => new CredentialError([`audit.checkpoints.key: ${ref} ${why}`]);
  try {
    return checkpointSigner(await resolveSecret(parseSecretRef(ref)!, env));
  } catch (err) {
    if (err instanceof SecretResolutionError) throw new CredentialError([`audit.checkpoints.key: ${err.message}`]);
    if (err instanceof CheckpointKeyError) throw problem(err.message);
    throw err;
  }
}

/** The retired checkpoint keys' public halves; a file that holds none stops start-up, naming it. */
async function previousKeysOf(paths: readonly string[]): Promise<KeyObject[]> {
  const keys: KeyObject[] = [];
  for (const [i, path] of paths.entries()) {
    try {
      keys.push(...parsePublicKeys(await readFile(path, 'utf8')));
    } catch (err) {
      const code = (err as { code?: string }).code;
      const why =
        err instanceof CheckpointKeyError
          ? err.message
          : code !== undefined && !code.startsWith('ERR_')
            ? `cannot be read (${code})`
            : 'holds no usable Ed25519 public key (PEM, JWK or JWKS)';
      throw new CredentialError([`audit.checkpoints.previousKeys.${i}: ${path} ${why}`]);
    }
  }
  return keys;
}

type CheckpointConfig = NonNullable<Config['audit']['checkpoints']>;

/** Where checkpoint copies go (a worker's file gets its slot's name, like the trail's). */
async function copiesOf(
  sink: NonNullable<CheckpointConfig['sink']>,
  deps: AuditDeps,
  ackTimeoutMs: number,
): Promise<CheckpointCopies> {
  if (sink.type === 'file') {
    const path = slotPath(sink.path, deps.workerSlot);
    const file = await createFileSink({ path, maxBytes: sink.maxBytes, fsync: 'always' }).catch((err: unknown) => {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new Error(
        `audit.checkpoints.sink.path: cannot open ${path} (${code}); create its directory or fix the path`,
        {
          cause: err,
        },
      );
    });
    return new CheckpointCopies(file, deps.log, ackTimeoutMs);
  }
  let client = deps.redis;
  let own: RedisClient | undefined;
  if (sink.url !== undefined) {
    own = await createRedisClient(
      {
        url: sink.url,
        ...(sink.password !== undefined ? { password: sink.password } : {}),
        tls: sink.url.startsWith('rediss:'),
        requiredForReadiness: false,
        connectTimeout: 1_000,
        commandTimeout: ackTimeoutMs,
      },
      { env: deps.env ?? {}, log: deps.log },
    );
    client = own;
  }
  if (client === undefined) throw new Error('checkpoint copies to redis without a redis');
  const stream = createRedisStreamSink(client, { stream: sink.stream, maxLen: 1_000_000 });
  const quit = own === undefined ? undefined : () => withDeadline(own.quit(), 1_000).catch(() => own.disconnect());
  return new CheckpointCopies(
    {
      name: stream.name,
      store: stream.store,
      append: (records) => stream.append(records),
      close: async () => {
        await stream.close();
        await quit?.();
      },
    },
    deps.log,
    ackTimeoutMs,
  );
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
  let checkpoints: CheckpointOptions | undefined;
  let copies: CheckpointCopies | undefined;
  if (a.checkpoints !== undefined) {
    const signer = await signerOf(a.checkpoints.key, deps.env ?? {});
    const previousKeys = await previousKeysOf(a.checkpoints.previousKeys ?? []);
    copies = a.checkpoints.sink !== undefined ? await copiesOf(a.checkpoints.sink, deps, a.ackTimeout) : undefined;
    const onStored = copies !== undefined ? copies.push.bind(copies) : undefined;
    checkpoints = {
      signer,
      intervalMs: a.checkpoints.interval,
      previousKeys,
      ...(onStored ? { onStored } : {}),
      onSigned: (sink, reason) => deps.metrics.auditCheckpoints.inc({ sink, reason }),
      onRemoved: (sink, entries) => deps.metrics.auditRetentionRemoved.inc({ sink }, entries),
    };
    deps.log.info('audit checkpoints on', { key: signer.kid, interval: a.checkpoints.interval });
  }
  const writers: SinkWriter[] = [];
  const ofType = new Map<string, number>();
  for (const sc of sinkConfigs) {
    // The second sink of a type spools to `<type>.2.spool.jsonl`, so sinks never share a spool.
    const n = (ofType.get(sc.type) ?? 0) + 1;
    ofType.set(sc.type, n);
    let sink: Sink;
    if (sc.type === 'stdout') sink = createLineSink('stdout', deps.auditWrite);
    else if (sc.type === 'file') {
      sink = await createFileSink({
        path: slotPath(sc.path, deps.workerSlot),
        maxBytes: sc.maxBytes,
        fsync: sc.fsync,
        ...(sc.maxFiles !== undefined ? { maxFiles: sc.maxFiles } : {}),
      });
    } else if (deps.redis !== undefined) {
      sink = createRedisStreamSink(deps.redis, {
        stream: sc.stream,
        maxLen: sc.maxLen,
        signedRetention: checkpoints !== undefined,
      });
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
        ...(checkpoints !== undefined ? { checkpoints } : {}),
      }),
    );
  }
  const trail = new AuditTrail(writers, copies !== undefined ? [copies] : []);
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
