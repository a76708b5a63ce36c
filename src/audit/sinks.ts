// Audit sinks: stdout JSON lines, an append-only rotating file, and a Redis Stream. Each appends whole batches in
// order and skips what it already holds.
import { open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Redis, Result } from 'ioredis';
import { batchWritesThisTurn, type RedisClient } from '../redis/client.js';
import type { ChainedRecord } from './chain.js';
import type { TrustedKeys, Witness } from './checkpoint.js';
import type { AuditEvent } from './event.js';
import { planFileRetention, planStreamRetention, rotatedFiles, type RetentionPlan } from './retention.js';

export interface Sink {
  /** Names the sink in logs, metrics and spool files. */
  readonly name: string;
  /**
   * Stores the records, in order, as durably as the sink promises; resolves once stored. Records of
   * one writer whose seq the sink already holds are skipped, so a replay never duplicates. Throws on failure.
   */
  append(records: readonly ChainedRecord[]): Promise<void>;
  close(): Promise<void>;
  /** Names the trail in checkpoints: `file:<base name>`, `redis:<stream>` or `stdout`. */
  readonly store: string;
  /** The other writers this store holds, each at its highest seq (for a checkpoint's witness list). */
  witness?(self: string): Promise<Witness[]>;
  /**
   * The oldest records due for removal (maxLen, maxFiles), if any: see retention.ts. `keys`: whose retention
   * markers are believed (the writer's own key).
   */
  planRetention?(holder: string, keys: TrustedKeys): Promise<RetentionPlan | undefined>;
  /** True when the store has grown past its retention since the last step (the writer need not wait a whole interval). */
  retentionDue?(): boolean;
  /** Makes what was appended durable now, whatever the fsync policy (before a retention removal). */
  sync?(): Promise<void>;
}

const lines = (records: readonly ChainedRecord[]) => {
  let text = '';
  for (const r of records) text += `${r.line}\n`;
  return text;
};

/** An append that lost its turn to a later one before it was written (its caller had given up). */
export class SupersededAppendError extends Error {
  constructor(sink: string) {
    super(`audit sink ${sink}: a later append replaced this one before it was written`);
    this.name = 'SupersededAppendError';
  }
}

/**
 * Appends one at a time. While one is stuck (a stalled reader or Redis), only the newest append
 * waits behind it: an older waiting one is told to give up (its caller, the writer's single loop,
 * has given up on it already). So a stall holds at most two batches, however long it lasts.
 */
class Turns {
  // Settles once the latest append's work finished, whatever its result.
  private inFlight: Promise<void> = Promise.resolve();
  private waiting: { cancel: () => void } | undefined;

  /** Resolves true when it is this append's turn, false when a later append took its place. */
  take(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.waiting?.cancel();
      const me = { cancel: () => resolve(false) };
      this.waiting = me;
      void this.inFlight.then(() => {
        if (this.waiting !== me) return;
        this.waiting = undefined;
        resolve(true);
      });
    });
  }

  /** Marks `work` as the append in flight; returns it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.inFlight = work.then(
      () => undefined,
      () => undefined,
    );
    return work;
  }
}

/**
 * One JSON line per event through `write` (stdout in production), which resolves once the stream's
 * write callback fired (for a pipe: the text is in the kernel's buffer) and rejects when the stream
 * failed (EPIPE, closed). What went down a pipe cannot be read back, so the sink remembers, per
 * writer, the highest seq it handed to the stream and skips those records when a batch comes again
 * (the writer retries a batch whose write outlived its ack timeout). Appends are serialized: each
 * waits until the previous write's callback fired, so a retry with nothing fresh resolves only once
 * the earlier write was really taken, and at most one batch sits in the stream's buffer (see Turns:
 * a stalled reader costs at most two batches). A failed write rejects, and its records count as
 * not handed over.
 */
export function createLineSink(name: string, write: (text: string) => void | Promise<void>): Sink {
  const handed = new Map<string, number>();
  const turns = new Turns();

  return {
    name,
    store: name,
    async append(records) {
      if (!(await turns.take())) throw new SupersededAppendError(name);
      const fresh = records.filter((r) => r.seq > (handed.get(r.writer) ?? 0));
      if (fresh.length === 0) return;
      const before = new Map(fresh.map((r) => [r.writer, handed.get(r.writer)]));
      for (const r of fresh) handed.set(r.writer, r.seq);
      const done = turns.track((async () => write(lines(fresh)))());
      try {
        await done;
      } catch (err) {
        // Nothing after it was handed over meanwhile (appends are serialized): these records may go again.
        for (const [writer, seq] of before) {
          if (seq === undefined) handed.delete(writer);
          else handed.set(writer, seq);
        }
        throw err;
      }
    },
    // A write still stuck is not waited for: it was never acknowledged, so its records are queued or spooled again.
    close: () => Promise.resolve(),
  };
}

export type FsyncPolicy = 'always' | 'interval' | 'never';

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would take the file past this size. Rotated files are kept, never deleted. */
  maxBytes: number;
  /** always: fdatasync before a batch counts as stored; interval: every second; never: leave it to the OS. */
  fsync: FsyncPolicy;
  /** Rotated files kept; the oldest beyond are removed by retention (with checkpoints only). */
  maxFiles?: number;
  now?: () => Date;
}

/** The highest seq per writer already in a file, so replays skip what is there. */
async function lastSeqs(path: string): Promise<Map<string, number>> {
  const seqs = new Map<string, number>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return seqs;
  }
  for (const l of text.split('\n')) {
    if (!l) continue;
    try {
      const c = (JSON.parse(l) as AuditEvent).chain;
      if (c && (seqs.get(c.writer) ?? 0) < c.seq) seqs.set(c.writer, c.seq);
    } catch {
      // A torn last line after a crash: the chain verifier reports it; appending goes on after it.
    }
  }
  return seqs;
}

/** A name no file has yet for the file being rotated: `<path>.<UTC time>`, else with `-0001`, `-0002`, … added. */
async function rotationTarget(path: string, now: () => Date): Promise<string> {
  // One stamp, then a zero-padded counter: the names must sort in rotation order (readers, tail and retention go
  // by name). A stamp taken afresh for a counted name could sort before one made earlier ("…124Z" < "…124Z-1").
  const stamp = now().toISOString().replace(/[:.]/g, '-');
  const taken = (name: string) =>
    stat(name).then(
      () => true,
      () => false,
    );
  let target = `${path}.${stamp}`;
  for (let n = 1; await taken(target); n++) target = `${path}.${stamp}-${String(n).padStart(4, '0')}`;
  return target;
}

/**
 * An append-only JSON-lines file. Writes are serialized; with fsync `always`, a batch is stored
 * only once fdatasync returns. Past `maxBytes` the file is renamed to `<path>.<UTC time>` and a
 * new one started: rotation drops nothing, and the chain simply continues in the new file.
 */
export async function createFileSink(options: FileSinkOptions): Promise<Sink> {
  const now = options.now ?? (() => new Date());
  // The newest rotated file too: a writer whose last records went there at a rotation is still named in the
  // opening checkpoint's witness list, and a replay after a rotation skips what that file holds.
  const seqs = await lastSeqs(options.path);
  const newestRotated = (await rotatedFiles(options.path)).at(-1);
  if (newestRotated !== undefined) {
    for (const [writer, seq] of await lastSeqs(newestRotated)) {
      if ((seqs.get(writer) ?? 0) < seq) seqs.set(writer, seq);
    }
  }
  let handle: FileHandle = await open(options.path, 'a+', 0o640);
  let size = (await stat(options.path)).size;
  // A crash mid-write can leave a torn last line: end it, so the next record starts a line of its own (the verifier
  // reports the torn one, and nothing after it is glued to it).
  let torn = false;
  if (size > 0) {
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    torn = last[0] !== 0x0a;
  }
  let queue: Promise<void> = Promise.resolve();
  let dirty = false;
  /** A rotation since the last retention step: with maxFiles, one may be due. */
  let rotated = false;
  const timer =
    options.fsync === 'interval'
      ? setInterval(() => {
          if (!dirty) return;
          dirty = false;
          queue = queue.then(() => handle.datasync()).catch(() => undefined);
        }, 1_000)
      : undefined;
  timer?.unref();

  const rotate = async (): Promise<void> => {
    await handle.datasync();
    await handle.close();
    await rename(options.path, await rotationTarget(options.path, now));
    handle = await open(options.path, 'a+', 0o640);
    size = 0;
    torn = false;
    rotated = true;
  };

  const write = async (records: readonly ChainedRecord[]): Promise<void> => {
    const fresh = records.filter((r) => r.seq > (seqs.get(r.writer) ?? 0));
    if (fresh.length === 0) return;
    const data = Buffer.from(`${torn ? '\n' : ''}${lines(fresh)}`, 'utf8');
    if (size > 0 && size + data.byteLength > options.maxBytes) await rotate();
    // A short write (a full disk) stores part of a line: write the rest, and on an error cut the file back to where
    // the batch began, so the batch counts as not written and no torn line is left.
    let done = 0;
    try {
      while (done < data.byteLength) {
        const { bytesWritten } = await handle.write(data, done, data.byteLength - done);
        if (bytesWritten === 0) throw new Error('no room to write (the disk is full?)');
        done += bytesWritten;
      }
    } catch (err) {
      if (done > 0) await handle.truncate(size).catch(() => undefined);
      throw err;
    }
    torn = false;
    size += data.byteLength;
    if (options.fsync === 'always') await handle.datasync();
    else dirty = true;
    for (const r of fresh) seqs.set(r.writer, r.seq);
  };

  // The writers the file held when this process opened it: its opening checkpoint names them, so a writer cut
  // out of the file later is missed by name.
  const found = [...seqs].map(([writer, seq]) => ({ writer, seq }));
  const maxFiles = options.maxFiles;
  /** The last retention marker this sink stored (the next step's cut points start from it). */
  const newestMarker: { marker?: string } = {};
  return {
    name: 'file',
    store: `file:${basename(options.path)}`,
    witness: (self) => Promise.resolve(found.filter((w) => w.writer !== self).slice(-MAX_WITNESS)),
    ...(maxFiles !== undefined
      ? {
          planRetention: (_holder: string, keys: TrustedKeys) => {
            rotated = false;
            return planFileRetention(options.path, maxFiles, keys, newestMarker);
          },
          retentionDue: () => rotated,
        }
      : {}),
    append(records) {
      const run = queue.then(() => write(records));
      queue = run.catch(() => undefined);
      return run;
    },
    sync() {
      const run = queue.then(() => handle.datasync());
      queue = run.catch(() => undefined);
      return run;
    },
    async close() {
      clearInterval(timer);
      await queue;
      await handle.datasync().catch(() => undefined);
      await handle.close();
    },
  };
}

/** Most writers a checkpoint's witness list names. */
const MAX_WITNESS = 100;

/**
 * KEYS[1] the stream; KEYS[2] the writer's head (highest seq already in the stream); KEYS[3] the stream's
 * writers (a sorted set: writer by time of its last append, for checkpoints' witness lists; signed mode only).
 * ARGV[1] approximate MAXLEN (0: none, retention is signed and done apart); ARGV[2] head TTL in seconds;
 * ARGV[3] the writer; then pairs of (seq, event JSON), in order.
 * Skips events at or below the head, so replaying a batch whose first write timed out adds nothing twice.
 * Returns the number of entries added, with signed retention the stream's length (else 0), and the head found.
 */
export const STREAM_APPEND_SCRIPT = `
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local before = head
local added = 0
for i = 4, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > head then
    if ARGV[1] == '0' then
      redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 1])
    end
    head = seq
    added = added + 1
  end
end
redis.call('SET', KEYS[2], head, 'EX', ARGV[2])
if ARGV[1] == '0' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[3])
  return {added, redis.call('XLEN', KEYS[1]), before}
end
return {added, 0, before}
`;

/**
 * KEYS[1] the stream's writers (see STREAM_APPEND_SCRIPT). ARGV[1] the head key prefix; ARGV[2] the asking
 * writer; ARGV[3] how far back, ms; ARGV[4] most writers; ARGV[5] forget writers idle longer than this, ms.
 * Returns writer, head seq, last append (ms), … newest first, for writers whose head key exists. Members dated in
 * the future (beyond a minute of clock skew) and members without a head are not writers the append script
 * recorded: they are skipped, so a planted set cannot push the real writers out of the list, and at most 1,000
 * members are looked at.
 */
export const STREAM_WITNESS_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + 60000), '+inf')
local ws = redis.call('ZREVRANGEBYSCORE', KEYS[1], now + 60000, now - tonumber(ARGV[3]), 'WITHSCORES', 'LIMIT', 0, 1000)
local out = {}
local n = 0
for i = 1, #ws, 2 do
  local w = ws[i]
  if w ~= ARGV[2] and n < tonumber(ARGV[4]) then
    local head = redis.call('GET', ARGV[1] .. w)
    if head then
      out[#out + 1] = w
      out[#out + 1] = head
      out[#out + 1] = ws[i + 1]
      n = n + 1
    end
  end
end
return out
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    snapgateAuditAppend(
      numKeys: number,
      ...keysAndArgs: (string | number)[]
    ): Result<[number, number, number], Context>;
    snapgateAuditWitness(numKeys: number, ...keysAndArgs: (string | number)[]): Result<string[], Context>;
  }
}

export const DEFAULT_AUDIT_STREAM = 'audit:{snapgate}:events';

/**
 * The Redis key of a writer's head, named after its stream (two streams, such as the trail and its checkpoint
 * copies, keep apart heads) and in the stream's hash slot (the stream name carries the hash tag).
 */
export function streamHeadKey(stream: string, writer: string): string {
  return `${stream}:head:${writer}`;
}

/** The stream's writers by time of last append, in its hash slot. */
export function streamWritersKey(stream: string): string {
  return `${stream}:writers`;
}

const DAY_MS = 86_400_000;

/**
 * A Redis Stream. Retention: with `signedRetention`, the writer trims past maxLen at its checkpoints, each removal
 * behind a signed marker (retention.ts); without, XADD's approximate MAXLEN trims silently. The stream and its keys
 * share a hash tag, so one script touches them all on Redis Cluster. An append has no deadline of its own: the
 * writer bounds each one by its ackTimeout (see SinkWriter).
 */
export function createRedisStreamSink(
  client: RedisClient,
  options: { stream: string; maxLen: number; signedRetention?: boolean },
): Sink {
  if (typeof (client as Redis).snapgateAuditAppend !== 'function') {
    client.defineCommand('snapgateAuditAppend', { lua: STREAM_APPEND_SCRIPT });
  }
  if (typeof (client as Redis).snapgateAuditWitness !== 'function') {
    client.defineCommand('snapgateAuditWitness', { lua: STREAM_WITNESS_SCRIPT });
  }
  const { stream, maxLen } = options;
  /** The stream's length after the last append (signed retention only). */
  let length = 0;
  const writersKey = streamWritersKey(stream);
  // Serialized: while Redis is stalled (connection open, nothing answered), retries do not pile
  // more batches into the socket's buffer.
  const turns = new Turns();
  return {
    name: 'redis',
    store: `redis:${stream}`,
    async append(records) {
      if (!(await turns.take())) throw new SupersededAppendError('redis');
      await turns.track(appendRuns(records));
    },
    close: () => Promise.resolve(),
    async witness(self) {
      const flat = await (client as Redis).snapgateAuditWitness(
        1,
        writersKey,
        streamHeadKey(stream, ''),
        self,
        DAY_MS,
        MAX_WITNESS,
        30 * DAY_MS,
      );
      const out: Witness[] = [];
      for (let i = 0; i + 2 < flat.length && out.length < MAX_WITNESS; i += 3) {
        out.push({ writer: flat[i]!, seq: Number(flat[i + 1]), at: Number(flat[i + 2]) });
      }
      return out;
    },
    ...(options.signedRetention
      ? {
          planRetention: (holder: string, keys: TrustedKeys) =>
            planStreamRetention(client, stream, maxLen, holder, keys),
          retentionDue: () => length > maxLen,
        }
      : {}),
  };

  async function appendRuns(records: readonly ChainedRecord[]): Promise<void> {
    // One script call per writer's run of records, in order.
    let i = 0;
    while (i < records.length) {
      const writer = records[i]!.writer;
      const args: (string | number)[] = [];
      for (; i < records.length && records[i]!.writer === writer; i++) args.push(records[i]!.seq, records[i]!.line);
      batchWritesThisTurn(client);
      const last = records[i - 1]!.seq;
      const [, len, before] = await (client as Redis).snapgateAuditAppend(
        3,
        stream,
        streamHeadKey(stream, writer),
        writersKey,
        options.signedRetention ? 0 : maxLen,
        30 * 86_400,
        writer,
        ...args,
      );
      length = len;
      // A retry or a spool replay finds the head at most at its own last record. Beyond it, someone moved the head
      // and the script skipped records never stored: fail the write (onFailure applies) rather than lose them.
      if (before > last) {
        throw new Error(
          `the stream's head for writer ${writer} is at seq ${before}, past the records written (up to ${last}): ` +
            `its key ${streamHeadKey(stream, writer)} was changed; records were not stored`,
        );
      }
    }
  }
}
