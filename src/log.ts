// Operational log: one JSON object per line on stderr, so that stdout stays free for the audit trail.
import { activeTraceId } from './ops/trace-context.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  /** True when lines of `level` are written: lets a caller skip building fields nobody reads. */
  enabled(level: LogLevel): boolean;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Describes an error for a log line by name, code and message only. Library messages carry
 * host and port at most; request headers and bodies never reach an error we build.
 */
export function describeError(err: unknown): LogFields {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const out: LogFields = { name: err.name, message: err.message };
    if (typeof code === 'string') out.code = code;
    if (err.cause !== undefined && err.cause !== err) out.cause = describeError(err.cause);
    return out;
  }
  return { message: String(err) };
}

/** A logger whose level can change while it runs (log.level is reloadable). */
export interface LevelledLogger extends Logger {
  setLevel(level: LogLevel): void;
}

/**
 * A JSON-lines logger. `write` defaults to stderr; tests pass their own to read what was logged. `base` fields
 * (main passes pid and worker) open every line, after time, level and msg.
 */
export function createLogger(
  options: { level?: LogLevel; write?: (line: string) => void; base?: LogFields } = {},
): LevelledLogger {
  let min = rank[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const base = options.base ?? {};
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (rank[level] < min) return;
    // A line written while a span is active names its trace (tracing on); there is none otherwise.
    const traceId = activeTraceId();
    const line = { time: new Date().toISOString(), level, msg, ...base, ...(traceId ? { traceId } : {}), ...fields };
    write(`${JSON.stringify(line)}\n`);
  };
  return {
    enabled: (level) => rank[level] >= min,
    setLevel: (level) => {
      min = rank[level];
    },
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
  };
}
