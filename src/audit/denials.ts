// Bounds the cost of auditing denials: full events up to a rate per caller and reason, then one folded count per
// second.
import type { AuditEvent } from './event.js';

export interface DenialBoundOptions {
  /** Full events per (caller, reason) per second before folding. */
  fullPerSecond: number;
  /** Distinct (caller, reason) pairs tracked per second; beyond, denials fold into one "*" entry. */
  maxKeys: number;
}

interface Folded {
  sample: AuditEvent;
  count: number;
  first: Date;
  last: Date;
}

/**
 * Per second, each (caller, reason) gets `fullPerSecond` full events; the rest are folded and
 * emitted by `flush()` as one `denials` event with a count. So a flood of bad tokens costs at most
 * maxKeys × (fullPerSecond + 1) + 1 events per second, however fast it comes.
 */
export class DenialBound {
  private second = -1;
  private seen = new Map<string, number>();
  private folded = new Map<string, Folded>();

  constructor(private readonly options: DenialBoundOptions) {}

  /** True when the event should be written in full; otherwise it was folded into a count. */
  admit(event: AuditEvent, key: string, now: Date): boolean {
    const second = Math.floor(now.getTime() / 1000);
    if (second !== this.second) {
      this.second = second;
      this.seen = new Map();
    }
    let k = `${key}\u0000${event.reason ?? ''}`;
    if (!this.seen.has(k) && this.seen.size >= this.options.maxKeys) k = `*\u0000*`;
    const n = (this.seen.get(k) ?? 0) + 1;
    this.seen.set(k, n);
    if (n <= this.options.fullPerSecond && !k.startsWith('*\u0000')) return true;
    const f = this.folded.get(k);
    if (f) {
      f.count += 1;
      f.last = now;
    } else {
      this.folded.set(k, { sample: event, count: 1, first: now, last: now });
    }
    return false;
  }

  /** The folded counts since the last flush, to be written as `denials` events. */
  flush(): { sample: AuditEvent; count: number; first: Date; last: Date; wildcard: boolean }[] {
    const out = [...this.folded.entries()].map(([k, f]) => ({ ...f, wildcard: k.startsWith('*\u0000') }));
    this.folded = new Map();
    return out;
  }
}
