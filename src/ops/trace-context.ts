// The trace id of the active span, for log lines and audit events. Costs one lookup of an empty context when
// tracing is off (no context manager is registered then).
import { isSpanContextValid, trace } from '@opentelemetry/api';

/** The active span's trace id (32 hex digits), or undefined when no span is active. */
export function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  if (span === undefined) return undefined;
  const ctx = span.spanContext();
  return isSpanContextValid(ctx) ? ctx.traceId : undefined;
}
