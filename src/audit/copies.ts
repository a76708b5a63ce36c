// The checkpoint sink: a second copy of every checkpoint, kept away from the trail (another file, another Redis), so
// that whoever can rewrite the trail must also reach this copy to hide a cut. Best effort: the request path never
// waits on it, and its queue is bounded.
import { describeError, type Logger } from '../log.js';
import type { ChainedRecord } from './chain.js';
import type { Sink } from './sinks.js';
import { answeredWithin } from './trail.js';

/** Copies held while the checkpoint sink is down; beyond, the oldest are dropped (newer ones prove more). */
const MAX_HELD = 1_000;

export class CheckpointCopies {
  private readonly held: ChainedRecord[] = [];
  private wake: (() => void) | undefined;
  private closing = false;
  private failing = false;
  private dropped = 0;
  private readonly done: Promise<void>;

  constructor(
    private readonly sink: Sink,
    private readonly log: Logger,
    private readonly timeoutMs: number,
  ) {
    this.done = this.loop();
  }

  push(record: ChainedRecord): void {
    if (this.closing) return;
    if (this.held.length >= MAX_HELD) {
      this.held.shift();
      this.dropped += 1;
    }
    this.held.push(record);
    this.wake?.();
  }

  private async loop(): Promise<void> {
    let backoff = 200;
    for (;;) {
      if (this.held.length === 0) {
        if (this.closing) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      const batch = this.held.slice(0, 100);
      try {
        await answeredWithin(this.sink.append(batch), this.timeoutMs);
        this.held.splice(0, batch.length);
        if (this.failing) this.log.info('checkpoint sink recovered', { sink: this.sink.name, dropped: this.dropped });
        this.failing = false;
        backoff = 200;
      } catch (err) {
        if (!this.failing) {
          this.log.error('checkpoint sink failing; copies are held and retried', {
            sink: this.sink.name,
            error: describeError(err),
          });
        }
        this.failing = true;
        if (this.closing) return;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  /** Writes what is held, for at most `deadlineMs`, then closes the sink. */
  async close(deadlineMs = 5_000): Promise<void> {
    this.closing = true;
    this.wake?.();
    await answeredWithin(this.done, deadlineMs).catch(() => undefined);
    if (this.held.length > 0) {
      this.log.error('checkpoint copies not written at shutdown', { sink: this.sink.name, copies: this.held.length });
    }
    await this.sink.close().catch(() => undefined);
  }
}
