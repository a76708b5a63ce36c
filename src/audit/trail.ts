// The audit trail: chains events per sink, writes them in order, acknowledges write-ahead attempts, and spools or
// rejects when a required sink fails.
import type { KeyObject } from 'node:crypto';
import { open, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError, type Logger } from '../log.js';
import { ChainWriter, eventBody, GENESIS, recordOf, type ChainedRecord } from './chain.js';
import {
  signCheckpoint,
  trustedKeys,
  type TrustedKeys,
  type CheckpointFields,
  type CheckpointReason,
  type CheckpointSigner,
  type Witness,
} from './checkpoint.js';
import { buildAuditEvent, type AuditEvent } from './event.js';
import type { RetentionPlan } from './retention.js';
import type { Sink } from './sinks.js';

export type OnFailure = 'reject' | 'spool';

/**
 * A write-ahead event was not stored in time by a required sink (in spool mode: nor by its spool), or was
 * not even queued.
 */
export class AuditUnavailableError extends Error {
  /** False when the event was not even queued (the sink's queue was full): it will never be written. */
  readonly recorded: boolean;
  constructor(sink: string, options?: { cause?: unknown; recorded?: boolean }) {
    super(`audit sink ${sink} did not acknowledge the attempt`, options);
    this.name = 'AuditUnavailableError';
    this.recorded = options?.recorded ?? true;
  }
}

interface Pending {
  record: ChainedRecord;
  resolve?: () => void;
  reject?: (err: unknown) => void;
  /** A checkpoint (its reason): copied to the checkpoint sink once stored. */
  checkpoint?: CheckpointReason;
  /** Called once the sink itself (not the spool) holds it: a retention marker waits for that. */
  inSink?: () => void;
}

/** How a writer signs its chain (see checkpoint.ts and retention.ts). */
export interface CheckpointOptions {
  signer: CheckpointSigner;
  intervalMs: number;
  /** Retired keys' public halves: their retention markers are believed too (see retention.ts). */
  previousKeys?: readonly KeyObject[];
  /** Given each checkpoint once the sink or spool holds it: the copy for the checkpoint sink. */
  onStored?: (record: ChainedRecord) => void;
  /** Told of each checkpoint stored and each retention removal (for metrics). */
  onSigned?: (sink: string, reason: CheckpointReason) => void;
  onRemoved?: (sink: string, entries: number) => void;
}

/** How long a retention step may take to read what it removes, and to store its marker. */
const RETENTION_STEP_MS = 30_000;

const BATCH = 500;
/** Events held in memory per sink while it is down, by default; past this, new ones are counted and dropped. */
const DEFAULT_MAX_QUEUE = 10_000;

/** Waits for `work`, but no longer than `ms`. */
async function waitAtMost(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settles like `work`, or rejects when `ms` pass without an answer (the sink counts as failing). */
export async function answeredWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const silence = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, silence]);
  } finally {
    clearTimeout(timer);
  }
}

export interface SinkWriterOptions {
  sink: Sink;
  required: boolean;
  onFailure: OnFailure;
  /**
   * ms the sink has to answer each write or spool replay before it counts as failing and onFailure applies;
   * a write-ahead attempt waits this long (spool mode: 1 s more, for the spool write).
   */
  ackTimeoutMs: number;
  spoolDir: string;
  instance: string;
  log: Logger;
  /** Events held in memory while the sink is down (attempts included); beyond, counted and dropped. */
  maxQueue?: number;
  /** Told of every event dropped because the queue was full (for a metric). */
  onDropped?: (sink: string) => void;
  /** Names the spool file (default: the sink's name); two sinks of one type need two names. */
  spoolName?: string;
  /** Signed checkpoints: at start, every interval, before each retention removal and at close. */
  checkpoints?: CheckpointOptions;
}

/**
 * Owns one sink: its hash chain, its queue and its spool file. A single loop writes in order.
 * `spool` mode: a batch the sink does not take in time goes to `<spoolDir>/<spoolName>.spool.jsonl`
 * (fsynced) and counts as stored; once anything is spooled, later events queue behind it, and the
 * spool is replayed into the sink (the sink skips what it already has) before new events.
 * `reject` mode: the batch stays queued and is retried; write-ahead waiters are refused.
 */
export class SinkWriter {
  private readonly chain: ChainWriter;
  private readonly queue: Pending[] = [];
  private readonly spoolPath: string;
  private spooled = 0;
  private spooledBytes = 0;
  private running = false;
  private wake: (() => void) | undefined;
  private closing = false;
  private closed = false;
  /** Events taken out of the queue for the write in progress: they count against maxQueue too. */
  private writing = 0;
  private failing = false;
  private dropped = 0;
  private droppedSince: Date | undefined;
  private readonly maxQueue: number;
  private loopDone: Promise<void> = Promise.resolve();
  /** The chain hash of this writer's last checkpoint record. */
  private lastCheckpoint = GENESIS;
  private lastCheckpointMs = 0;
  /** Whose retention markers a retention step believes: this writer's own key. */
  private readonly ownKey: TrustedKeys;
  private ticker: NodeJS.Timeout | undefined;
  private ticking = false;
  private lastEarly = 0;
  /** The checkpoint step in progress (close lets it finish, so a removal never outlives its sink). */
  private tickDone: Promise<void> = Promise.resolve();
  /** Set once the shutdown checkpoint is linked: nothing of this writer may follow it. */
  private signedOff = false;

  constructor(private readonly o: SinkWriterOptions) {
    this.chain = new ChainWriter(o.instance);
    const cp = o.checkpoints;
    this.ownKey = trustedKeys(cp === undefined ? [] : [cp.signer.publicKey, ...(cp.previousKeys ?? [])]);
    this.maxQueue = o.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.spoolPath = join(o.spoolDir, `${o.spoolName ?? o.sink.name}.spool.jsonl`);
  }

  get name(): string {
    return this.o.sink.name;
  }

  /** Tells sinks of one type apart in metrics: the sink's type, then `redis.2`, … (as its spool file is named). */
  get label(): string {
    return this.o.spoolName ?? this.o.sink.name;
  }

  get required(): boolean {
    return this.o.required;
  }

  /** Events waiting in memory for the sink. */
  get queueDepth(): number {
    return this.queue.length;
  }

  /** Events and bytes in the spool file, waiting to be replayed into the sink. */
  get spoolSize(): { events: number; bytes: number } {
    return { events: this.spooled, bytes: this.spooledBytes };
  }

  /** Loads a spool left by an earlier process, then starts the write loop. */
  async start(): Promise<void> {
    if (this.o.onFailure === 'spool') {
      const text = await readFile(this.spoolPath, 'utf8').catch(() => '');
      this.spooled = text.split('\n').filter(Boolean).length;
      this.spooledBytes = Buffer.byteLength(text);
      if (this.spooled > 0) {
        this.o.log.info('audit spool found; replaying it first', { sink: this.name, events: this.spooled });
      }
    }
    this.running = true;
    this.loopDone = this.loop();
    const cp = this.o.checkpoints;
    if (cp !== undefined) {
      // The opening checkpoint is the chain's first record: a chain that begins otherwise was not written by us.
      this.linkCheckpoint('open', { witness: await this.witness() });
      this.ticker = setInterval(() => {
        // A tick skipped because a step is under way must not replace the promise close() waits for.
        if (!this.ticking) this.tickDone = this.tick();
      }, cp.intervalMs);
      this.ticker.unref();
    }
  }

  /** The writer id of this sink's chain. */
  get writer(): string {
    return this.chain.writer;
  }

  /** Signs the chain's head and queues the checkpoint (past maxQueue: it is one record, and it must not be lost). */
  private linkCheckpoint(
    reason: CheckpointReason,
    extra: Pick<CheckpointFields, 'witness' | 'retention'>,
    inSink?: () => void,
  ): string {
    const cp = this.o.checkpoints!;
    const head = this.chain.head;
    // Never earlier than the previous checkpoint, even when the clock steps back (NTP, a resumed VM).
    this.lastCheckpointMs = Math.max(Date.now(), this.lastCheckpointMs);
    const body = signCheckpoint(
      {
        time: new Date(this.lastCheckpointMs).toISOString(),
        writer: this.chain.writer,
        seq: head.seq,
        head: head.hash,
        prevCheckpoint: this.lastCheckpoint,
        reason,
        interval: cp.intervalMs,
        store: this.o.sink.store,
        ...extra,
      },
      cp.signer,
    );
    const record = this.chain.link(body);
    this.lastCheckpoint = this.chain.head.hash;
    this.enqueue({ record, checkpoint: reason, ...(inSink !== undefined ? { inSink } : {}) });
    return record.line;
  }

  /** The other writers of this store, for a checkpoint; none when the sink cannot say in time. */
  private async witness(): Promise<Witness[] | undefined> {
    if (this.o.sink.witness === undefined) return undefined;
    let list: Witness[] | undefined;
    await waitAtMost(
      this.o.sink.witness(this.chain.writer).then(
        (w) => (list = w),
        () => undefined,
      ),
      this.o.ackTimeoutMs,
    );
    return list;
  }

  /** An interval checkpoint (also when idle), then the store's retention step, if one is due. */
  private async tick(): Promise<void> {
    if (this.ticking || this.signedOff) return;
    this.ticking = true;
    try {
      const witness = await this.witness();
      if (this.signedOff) return;
      this.linkCheckpoint('interval', { witness });
      await this.retain();
    } catch (err) {
      this.o.log.warn('audit retention step failed; it is tried again at the next checkpoint', {
        sink: this.name,
        error: describeError(err),
      });
    } finally {
      this.ticking = false;
    }
  }

  /**
   * A retention step before the next interval when the store has grown past its retention (a busy stream would
   * otherwise grow by a whole interval's events beyond maxLen), at most one a second.
   */
  private retainEarly(): void {
    if (this.o.checkpoints === undefined || this.ticking || this.signedOff) return;
    if (!(this.o.sink.retentionDue?.() ?? false) || Date.now() - this.lastEarly < 1_000) return;
    this.lastEarly = Date.now();
    this.ticking = true;
    this.tickDone = this.retain()
      .catch((err: unknown) => {
        this.o.log.warn('audit retention step failed; it is tried again at the next checkpoint', {
          sink: this.name,
          error: describeError(err),
        });
      })
      .finally(() => {
        this.ticking = false;
      });
  }

  /**
   * Removes what the store's retention says is due, only once a signed marker of it is in the sink itself (not
   * merely spooled): verify then tells the removal from tampering. Not while the sink fails or a spool waits.
   */
  private async retain(): Promise<void> {
    if (this.o.sink.planRetention === undefined || this.failing || this.spooled > 0) return;
    let plan: RetentionPlan | undefined;
    await answeredWithin(
      this.o.sink.planRetention(this.chain.writer, this.ownKey).then((p) => (plan = p)),
      RETENTION_STEP_MS,
    );
    if (plan === undefined) return;
    if (this.signedOff) {
      await plan.abandon();
      return;
    }
    for (const u of plan.unvouched) {
      // Removed all the same (retention must go on), but not explained: verify reports the chain's start.
      this.o.log.warn('audit retention: removed records that do not hold together are not vouched for', {
        sink: this.name,
        writer: u.writer,
        why: u.why,
      });
    }
    let marker: string | undefined;
    try {
      await answeredWithin(
        new Promise<void>((resolve) => {
          const line = this.linkCheckpoint('retention', { retention: plan!.facts }, resolve);
          marker = line;
        }),
        RETENTION_STEP_MS,
      );
      // On disk before anything goes, whatever the fsync policy: a crash must not leave the removal unexplained.
      await this.o.sink.sync?.();
    } catch (err) {
      marker = undefined;
      throw err;
    } finally {
      await (marker !== undefined ? plan.apply(marker) : plan.abandon());
    }
    this.o.checkpoints?.onRemoved?.(this.label, plan.facts.entries);
    this.o.log.info('audit retention: oldest records removed behind a signed marker', {
      sink: this.name,
      reason: plan.facts.reason,
      entries: plan.facts.entries,
    });
  }

  /**
   * Chains and queues an event's body (from `eventBody`). With `ack`, resolves once the sink (or, in
   * spool mode, the spool) holds it, and rejects with AuditUnavailableError when neither happens
   * within ackTimeoutMs (spool mode: ackTimeoutMs + 1 s, time for the spool write after a sink timeout).
   */
  submit(body: string, ack: boolean): Promise<void> {
    if (this.closed) {
      // Shutdown waits for calls in flight before closing the trail, so this is a bug: say so.
      this.o.log.error('audit event arrived after the trail closed; not written', { sink: this.name });
      return this.notRecorded(ack);
    }
    if (this.queue.length + this.writing >= this.maxQueue) {
      // Memory stays bounded through any outage. Nothing is linked into the chain (it stays whole);
      // a `dropped` event says how many were lost once there is room again.
      this.countDropped();
      return this.notRecorded(ack);
    }
    const record = this.chain.link(body);
    if (!ack) {
      this.enqueue({ record });
      return Promise.resolve();
    }
    if (this.failing && this.o.onFailure === 'reject') {
      // Known down: refuse at once rather than make the caller wait out the timeout.
      this.enqueue({ record });
      return Promise.reject(new AuditUnavailableError(this.name));
    }
    return this.acknowledged(record);
  }

  /** An event that will never be written: a write-ahead caller is refused, others go on. */
  private notRecorded(ack: boolean): Promise<void> {
    return ack ? Promise.reject(new AuditUnavailableError(this.name, { recorded: false })) : Promise.resolve();
  }

  private countDropped(): void {
    if (this.dropped++ === 0) {
      this.droppedSince = new Date();
      this.o.log.error('audit queue full; dropping events until the sink recovers', {
        sink: this.name,
        maxQueue: this.maxQueue,
      });
    }
    this.o.onDropped?.(this.label);
  }

  private enqueue(pending: Pending): void {
    this.queue.push(pending);
    this.wake?.();
  }

  /** Queues a write-ahead event; settles once it is stored, or rejects when the ack timeout passes first. */
  private acknowledged(record: ChainedRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { record, resolve, reject };
      this.enqueue(pending);
      const timer = setTimeout(
        () => {
          // The event stays queued (the chain stays whole); only the caller stops waiting.
          pending.resolve = undefined;
          pending.reject = undefined;
          reject(new AuditUnavailableError(this.name));
        },
        this.o.ackTimeoutMs + (this.o.onFailure === 'spool' ? 1_000 : 0),
      );
      const settle =
        <T>(fn: ((v: T) => void) | undefined) =>
        (v: T) => {
          clearTimeout(timer);
          fn?.(v);
        };
      pending.resolve = settle(resolve);
      pending.reject = settle(reject);
    });
  }

  /**
   * Writes what is queued (waiting up to `deadlineMs`) and stops; what the sink did not take is spooled
   * in spool mode, else logged as lost.
   */
  async close(deadlineMs = 5_000): Promise<void> {
    clearInterval(this.ticker);
    if (this.o.checkpoints !== undefined && !this.signedOff && this.running) {
      this.signedOff = true;
      this.linkCheckpoint('shutdown', {});
    }
    this.closing = true;
    this.wake?.();
    await waitAtMost(this.loopDone, deadlineMs);
    this.running = false;
    this.wake?.();
    // Let the loop finish the step it is in (a write or spool of a batch it took out), so what is
    // spooled below comes after it, in order.
    await waitAtMost(this.loopDone, this.o.ackTimeoutMs + 1_000);
    if (this.queue.length > 0) {
      // The sink did not take everything in time: keep it on disk when we may, else say what is lost.
      if (this.o.onFailure === 'spool') await this.spool(this.queue.splice(0));
      else {
        this.o.log.error('audit events not written at shutdown: the sink is unavailable', {
          sink: this.name,
          events: this.queue.length,
        });
      }
    }
    this.closed = true;
    // A retention step under way removes its records once its marker (queued before the shutdown checkpoint) is
    // stored: let it, before the sink closes.
    await waitAtMost(this.tickDone, this.o.ackTimeoutMs + 1_000);
    await this.o.sink.close().catch(() => undefined);
  }

  /** False while the sink fails to take events (until a write succeeds again). */
  get healthy(): boolean {
    return !this.failing;
  }

  /** Waits for new events (wake) or `ms`, whichever comes first. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => {
      this.wake = undefined;
    });
  }

  private async loop(): Promise<void> {
    let backoff = 100;
    // Spool mode: when the next replay of the spool into the sink may be tried.
    let replayAt = 0;
    while (this.running) {
      if (this.queue.length === 0 && this.spooled === 0) {
        if (this.closing) return;
        await this.pause(60_000);
        continue;
      }
      if (this.spooled > 0) {
        // Order: what is spooled goes first. New events join the spool at once (so their
        // write-ahead acks come from the spool, never waiting on a sink that is down), and replays
        // into the sink are paced, each bounded by ackTimeout.
        if (this.queue.length > 0) {
          await this.spool(this.queue.splice(0, BATCH));
          continue;
        }
        if (Date.now() >= replayAt) {
          if (await this.replay()) {
            backoff = 100;
            replayAt = 0;
            continue;
          }
          replayAt = Date.now() + backoff;
          backoff = Math.min(backoff * 2, 2_000);
        }
        if (this.closing) return;
        // Events that arrived during the replay go to the spool now, not after the pause.
        if (this.queue.length === 0) await this.pause(replayAt - Date.now());
        continue;
      }
      const batch = this.queue.splice(0, BATCH);
      if (await this.write(batch)) {
        backoff = 100;
        continue;
      }
      if (this.o.onFailure === 'spool') {
        await this.spool(batch);
        replayAt = Date.now() + backoff;
        backoff = Math.min(backoff * 2, 2_000);
        continue;
      }
      this.queue.unshift(...batch);
      for (const p of batch) p.reject?.(new AuditUnavailableError(this.name));
      for (const p of batch) {
        p.resolve = undefined;
        p.reject = undefined;
      }
      if (this.closing) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 2_000);
    }
  }

  private async write(batch: Pending[]): Promise<boolean> {
    this.writing = batch.length;
    try {
      await answeredWithin(this.o.sink.append(batch.map((p) => p.record)), this.o.ackTimeoutMs);
      for (const p of batch) {
        p.resolve?.();
        p.inSink?.();
      }
      this.copyCheckpoints(batch);
      this.markHealthy();
      this.retainEarly();
      return true;
    } catch (err) {
      this.markFailing(err);
      return false;
    } finally {
      this.writing = 0;
    }
  }

  private async spool(batch: Pending[]): Promise<void> {
    try {
      const fh = await open(this.spoolPath, 'a', 0o600);
      const text = batch.map((p) => `${p.record.line}\n`).join('');
      try {
        await fh.write(text);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.spooled += batch.length;
      this.spooledBytes += Buffer.byteLength(text);
      for (const p of batch) p.resolve?.();
      this.copyCheckpoints(batch);
    } catch (err) {
      this.o.log.error('audit spool write failed', { sink: this.name, error: describeError(err) });
      this.queue.unshift(...batch);
      for (const p of batch) p.reject?.(new AuditUnavailableError(this.name, { cause: err }));
    }
  }

  private async replay(): Promise<boolean> {
    const text = await readFile(this.spoolPath, 'utf8').catch(() => '');
    // A torn last line from a crash mid-write is dropped: that event was never acknowledged.
    const events = text.split('\n').flatMap((l) => recordOf(l) ?? []);
    try {
      // Bounded like any write: a stalled sink must not hold the loop (new events keep spooling).
      await answeredWithin(this.appendInBatches(events), this.o.ackTimeoutMs);
      await truncate(this.spoolPath, 0);
      this.o.log.info('audit spool replayed', { sink: this.name, events: events.length });
      this.spooled = 0;
      this.spooledBytes = 0;
      this.markHealthy();
      return true;
    } catch (err) {
      this.markFailing(err);
      return false;
    }
  }

  /** Hands the checkpoints of a stored batch to the checkpoint sink (only stored ones: a copy never runs ahead). */
  private copyCheckpoints(batch: readonly Pending[]): void {
    const cp = this.o.checkpoints;
    if (cp === undefined) return;
    for (const p of batch) {
      if (p.checkpoint === undefined) continue;
      cp.onStored?.(p.record);
      cp.onSigned?.(this.label, p.checkpoint);
    }
  }

  private async appendInBatches(records: readonly ChainedRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += BATCH) await this.o.sink.append(records.slice(i, i + BATCH));
  }

  private markFailing(err: unknown): void {
    if (!this.failing) {
      this.o.log.error('audit sink failing', {
        sink: this.name,
        onFailure: this.o.onFailure,
        error: describeError(err),
      });
    }
    this.failing = true;
  }

  private markHealthy(): void {
    if (this.failing) this.o.log.info('audit sink recovered', { sink: this.name });
    this.failing = false;
    if (this.dropped > 0 && this.queue.length < this.maxQueue) {
      this.o.log.error('audit events dropped while the sink was down', { sink: this.name, dropped: this.dropped });
      const now = new Date();
      const event = buildAuditEvent({
        type: 'dropped',
        time: now,
        requestId: '-',
        instance: this.o.instance,
        caller: undefined,
        fields: {},
        decision: 'unavailable',
        reason: 'audit_queue_full',
        status: undefined,
        latencyMs: undefined,
        client: { address: undefined, userAgent: undefined },
        count: this.dropped,
        window: { from: this.droppedSince ?? now, to: now },
        sink: this.name,
      });
      this.dropped = 0;
      this.droppedSince = undefined;
      // Into this sink's own chain, past the cap: it is one event, and the queue has room again.
      this.queue.push({ record: this.chain.link(eventBody(event)) });
    }
  }
}

/** Every sink's writer; `record` fans an event out to all of them. */
export class AuditTrail {
  constructor(
    private readonly writers: readonly SinkWriter[],
    /** Closed after the writers (the checkpoint copies, which the writers feed until they close). */
    private readonly after: readonly { close(deadlineMs?: number): Promise<void> }[] = [],
  ) {}

  async start(): Promise<void> {
    await Promise.all(this.writers.map((w) => w.start()));
  }

  /**
   * Records an event everywhere. With `writeAhead`, resolves only once every required sink holds
   * it (or its spool does), and rejects with AuditUnavailableError otherwise.
   */
  async record(event: AuditEvent, writeAhead = false): Promise<void> {
    if (this.writers.length === 0) return;
    // Serialized once; every sink chains and stores this same text.
    const body = eventBody(event);
    const acks = this.writers.map((w) => w.submit(body, writeAhead && w.required));
    if (!writeAhead) return;
    const results = await Promise.allSettled(acks);
    const failed = results
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r) => r.reason as unknown);
    if (failed.length === 0) return;
    // Recorded when some sink holds it, or will (queued): then an outcome must follow it. A sink
    // that dropped it instead writes a `dropped` event saying so.
    const recorded = results.some(
      (r) => r.status === 'fulfilled' || !(r.reason instanceof AuditUnavailableError) || r.reason.recorded,
    );
    throw new AuditUnavailableError(
      this.writers
        .filter((w) => w.required)
        .map((w) => w.name)
        .join(', '),
      { cause: failed[0], recorded },
    );
  }

  /**
   * For readiness: not ready while a required sink fails in `reject` mode (every call would get
   * 503). In `spool` mode calls go on, so it stays ready and says it is spooling.
   */
  health(onFailure: OnFailure): { ready: boolean; detail: string } {
    const failing = this.writers.filter((w) => w.required && !w.healthy).map((w) => w.name);
    if (failing.length === 0) return { ready: true, detail: 'ok' };
    return {
      ready: onFailure === 'spool',
      detail: `${onFailure === 'spool' ? 'spooling' : 'failing'}: ${failing.join(', ')}`,
    };
  }

  /** Each sink's state, for metrics: taking events or failing, its queue and its spool. */
  sinkStates(): Array<{ sink: string; up: boolean; depth: number; spooledEvents: number; spooledBytes: number }> {
    return this.writers.map((w) => ({
      sink: w.label,
      up: w.healthy,
      depth: w.queueDepth,
      spooledEvents: w.spoolSize.events,
      spooledBytes: w.spoolSize.bytes,
    }));
  }

  async close(deadlineMs?: number): Promise<void> {
    await Promise.all(this.writers.map((w) => w.close(deadlineMs)));
    for (const a of this.after) await a.close(deadlineMs);
  }
}
