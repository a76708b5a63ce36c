// The calls a gateway has in flight, from their first byte until their outcome is recorded and their response has left:
// what shutdown drains and, past its deadline, cuts.
import type { Logger } from '../log.js';
import type { AbortReason, CallSignal } from './incoming.js';

/** Created by the composition root; the request context enters every call (health checks excepted). */
export class InFlightCalls {
  private readonly calls = new Set<CallSignal>();
  private idle: Array<() => void> = [];
  private draining = false;

  /** True once drain() began: new calls are refused and responses close their connection. */
  get isDraining(): boolean {
    return this.draining;
  }

  get size(): number {
    return this.calls.size;
  }

  /** Counts a call until the returned function is called (once its outcome is recorded and its response has left). */
  enter(signal: CallSignal): () => void {
    this.calls.add(signal);
    return () => {
      this.calls.delete(signal);
      if (this.calls.size === 0) for (const resolve of this.idle.splice(0)) resolve();
    };
  }

  /** Resolves true once no call is in flight, or false after `ms`. */
  async whenIdle(ms: number): Promise<boolean> {
    if (this.calls.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    let done: (() => void) | undefined;
    const idle = await new Promise<boolean>((resolve) => {
      done = () => resolve(true);
      this.idle.push(done);
      timer = setTimeout(() => resolve(false), ms);
    });
    clearTimeout(timer);
    this.idle = this.idle.filter((r) => r !== done);
    return idle;
  }

  /** Aborts every call in flight (their forwarding is abandoned and their outcome says why). */
  abortAll(reason: AbortReason): number {
    for (const signal of this.calls) signal.abort(reason);
    return this.calls.size;
  }

  /**
   * Shutdown's first step: stops taking new calls and waits up to `deadlineMs` for the calls in
   * flight. Past the deadline, cuts what is left (each abandoned call ends with an
   * aborted_by_shutdown outcome, written before the trail closes) and gives them `graceMs` to say
   * so. Resolves true when every call finished within the deadline.
   */
  async drain(deadlineMs: number, graceMs: number, log: Logger): Promise<boolean> {
    this.draining = true;
    log.info('draining', { inFlight: this.size, deadlineMs });
    if (await this.whenIdle(deadlineMs)) return true;
    const cut = this.abortAll('shutdown');
    log.warn('drain deadline passed; abandoning calls in flight', { inFlight: cut });
    if (!(await this.whenIdle(graceMs))) {
      log.error('calls still in flight after abandoning them', { inFlight: this.size });
    }
    return false;
  }
}
