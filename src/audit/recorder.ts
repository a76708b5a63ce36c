// What the request path uses: write-ahead attempts that must be acknowledged, and outcomes and decisions that follow.
import type { Logger } from '../log.js';
import { DenialBound, type DenialBoundOptions } from './denials.js';
import type { AuditEvent } from './event.js';
import type { AuditTrail } from './trail.js';

export interface AuditRecorder {
  /** Records an attempt before forwarding; resolves once the required sinks hold it. Throws AuditUnavailableError. */
  attempt(event: AuditEvent): Promise<void>;
  /** Records an outcome (always in full). */
  outcome(event: AuditEvent): void;
  /** Records a request that was never forwarded; bounded per caller and reason (see DenialBound). */
  decision(event: AuditEvent, denialKey: string): void;
  close(deadlineMs?: number): Promise<void>;
}

/** Wires the trail and the denial bound; folded denials are written once a second. */
export function createAuditRecorder(trail: AuditTrail, options: DenialBoundOptions & { log: Logger }): AuditRecorder {
  const bound = new DenialBound(options);
  const flush = () => {
    for (const f of bound.flush()) {
      const { chain: _c, ...sample } = f.sample;
      void trail.record({
        ...sample,
        id: `${sample.id}+${f.count}`,
        type: 'denials',
        time: f.last.toISOString(),
        count: f.count,
        window: { from: f.first.toISOString(), to: f.last.toISOString() },
        ...(f.wildcard ? { caller: null, reason: '*', client: { address: null, userAgent: null } } : {}),
      });
    }
  };
  const timer = setInterval(flush, 1_000);
  timer.unref();
  const fail = (err: unknown) =>
    options.log.error('audit record failed', { error: err instanceof Error ? err.message : String(err) });
  return {
    attempt: (event) => trail.record(event, true),
    outcome: (event) => void trail.record(event).catch(fail),
    decision(event, denialKey) {
      if (bound.admit(event, denialKey, new Date(event.time))) void trail.record(event).catch(fail);
    },
    async close(deadlineMs) {
      clearInterval(timer);
      flush();
      await trail.close(deadlineMs);
    },
  };
}
