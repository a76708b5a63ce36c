// OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it; then the OpenTelemetry JS SDK (W3C
// propagation, env-configured sampler, batch span processor, OTLP/HTTP exporter) does the work.
import {
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  type DiagLogger,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { describeError, type Logger } from '../log.js';

/** What the request path traces with (see request-tracing.ts); undefined in AppDeps when tracing is off. */
export interface Tracing {
  readonly tracer: Tracer;
  /** W3C Trace Context only: the caller's `baggage` is neither read nor sent on. */
  readonly propagator: TextMapPropagator;
  /** Exports the spans still queued, then stops the provider; a gateway closer. */
  shutdown(): Promise<void>;
}

export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** Whether the environment asks for traces, and how to send them; `problem` says why a request was refused. */
export type TracingSettings =
  { readonly enabled: true; readonly protocol: OtlpProtocol } | { readonly enabled: false; readonly problem?: string };

type Env = Readonly<Record<string, string | undefined>>;

const set = (env: Env, name: string): string | undefined => {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
};

/**
 * Reads the standard variables: OTEL_SDK_DISABLED=true always wins; OTEL_TRACES_EXPORTER=otlp turns traces on
 * (`none` off; any other exporter is refused: `console` would write to stdout, which carries only audit records);
 * unset, an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns them on. The
 * protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf; grpc is
 * not supported. Pure.
 */
export function tracingSettings(env: Env): TracingSettings {
  if (set(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { enabled: false };
  const exporters = (set(env, 'OTEL_TRACES_EXPORTER') ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e !== '');
  if (exporters.includes('none')) return { enabled: false };
  if (exporters.length > 0 && !exporters.includes('otlp')) {
    return {
      enabled: false,
      problem: `OTEL_TRACES_EXPORTER=${exporters.join(',')} is not supported: snapgate exports traces over OTLP only (otlp or none)`,
    };
  }
  const endpoint = set(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? set(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (exporters.length === 0 && endpoint === undefined) return { enabled: false };
  const protocol = (
    set(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ??
    set(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ??
    'http/protobuf'
  ).toLowerCase();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    return {
      enabled: false,
      problem:
        `OTLP protocol ${protocol} is not supported: use http/protobuf (the default) or http/json, ` +
        'on the collector port for OTLP over HTTP (4318 by default)',
    };
  }
  return { enabled: true, protocol };
}

/**
 * A Tracing over any span processor (tests pass an in-memory one). Registers the AsyncLocalStorage context manager
 * (once per process: what log lines and audit events read the active trace from) and the provider globally; the
 * request path uses `tracer` and `propagator` as passed in. The sampler and span limits come from the environment
 * (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; parent-based always-on by default).
 */
export function createTracing(options: {
  spanProcessor: SpanProcessor;
  serviceVersion: string;
  instanceId: string;
}): Tracing {
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: 'snapgate',
        [ATTR_SERVICE_VERSION]: options.serviceVersion,
        'service.instance.id': options.instanceId,
      }),
    )
    // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win over the defaults above.
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [options.spanProcessor] });
  const propagator = new W3CTraceContextPropagator();
  provider.register({ propagator });
  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer('snapgate', options.serviceVersion),
    propagator,
    shutdown: () => (stopped ??= provider.shutdown()),
  };
}

/**
 * Starts tracing when the environment asks for it (see tracingSettings), or returns undefined: then nothing of the
 * SDK runs and the request path is built without spans. The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers,
 * timeout, compression, certificates) and the batch processor OTEL_BSP_*, from process.env as the SDK does. A
 * setting snapgate cannot honour, or an SDK that fails to start, is logged and leaves tracing off: traces are never
 * a reason not to serve.
 */
export function startTracing(options: {
  env: Env;
  log: Logger;
  serviceVersion: string;
  /** service.instance.id: unique per process (each worker exports its own spans). */
  instanceId: string;
}): Tracing | undefined {
  const { env, log } = options;
  const settings = tracingSettings(env);
  if (!settings.enabled) {
    if (settings.problem !== undefined) log.error(`tracing off: ${settings.problem}`, {});
    return undefined;
  }
  diag.setLogger(diagToLog(log, secretsIn(env)), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  try {
    const exporter = settings.protocol === 'http/json' ? new OtlpJsonExporter() : new OtlpProtobufExporter();
    const tracing = createTracing({
      spanProcessor: new BatchSpanProcessor(exporter),
      serviceVersion: options.serviceVersion,
      instanceId: options.instanceId,
    });
    log.info('tracing on', { protocol: settings.protocol, collector: collectorOf(env) });
    return tracing;
  } catch (err) {
    log.error('tracing off: the OpenTelemetry SDK did not start', { error: describeError(err) });
    return undefined;
  }
}

/** Where spans go, for the start-up line: the endpoint's origin only (no credentials, path or query). */
function collectorOf(env: Env): string {
  const endpoint = set(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? set(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (endpoint === undefined) return 'http://localhost:4318';
  try {
    return new URL(endpoint).origin;
  } catch {
    return 'an endpoint that is not a URL';
  }
}

/** The values the SDK's own messages might quote that must not reach a log line: OTLP headers and endpoints. */
function secretsIn(env: Env): string[] {
  const out: string[] = [];
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS']) {
    const raw = set(env, name);
    if (raw === undefined) continue;
    out.push(raw);
    for (const pair of raw.split(',')) {
      const eq = pair.indexOf('=');
      const value = eq === -1 ? pair.trim() : pair.slice(eq + 1).trim();
      if (value !== '') {
        out.push(value);
        // The SDK percent-decodes header values before it may quote them.
        try {
          out.push(decodeURIComponent(value));
        } catch {
          // Not percent-encoded: the raw value is enough.
        }
      }
    }
  }
  // An endpoint may carry user:password@ or a token in its query.
  for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    const raw = set(env, name);
    if (raw !== undefined) out.push(raw);
  }
  // Longest first, so a value containing another is replaced whole.
  return out.sort((a, b) => b.length - a.length);
}

/**
 * The SDK reports a failed export as the error serialised to JSON (stack and all): its message and code are what an
 * operator reads.
 */
function readable(message: string): string {
  if (!message.startsWith('{')) return message;
  try {
    const err = JSON.parse(message) as { message?: unknown; code?: unknown };
    if (typeof err.message !== 'string') return message;
    return typeof err.code === 'string' ? `${err.message} (${err.code})` : err.message;
  } catch {
    return message;
  }
}

/** How often the same SDK complaint (an unreachable collector, say) may be logged. */
const DIAG_REPEAT_MS = 60_000;

/**
 * The SDK's warnings and errors as log lines, with OTLP header values and endpoints replaced, and each distinct
 * message at most once a minute (a collector that is down fails every batch).
 */
function diagToLog(log: Logger, secrets: readonly string[]): DiagLogger {
  const lastSeen = new Map<string, number>();
  const emit = (level: 'warn' | 'error', message: string, args: unknown[]) => {
    let text = [readable(message), ...args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a)))]
      .join(' ')
      .trim();
    for (const secret of secrets) text = text.split(secret).join('[redacted]');
    text = text.slice(0, 500);
    const key = text.slice(0, 80);
    const now = Date.now();
    const last = lastSeen.get(key);
    if (last !== undefined && now - last < DIAG_REPEAT_MS) return;
    if (lastSeen.size > 100) lastSeen.clear();
    lastSeen.set(key, now);
    // Outside any call: an export runs on a timer armed while some span was active, and is not part of that trace.
    context.with(ROOT_CONTEXT, () => log[level]('tracing: the OpenTelemetry SDK reported a problem', { detail: text }));
  };
  const ignore = () => undefined;
  return {
    error: (message, ...args) => emit('error', message, args),
    warn: (message, ...args) => emit('warn', message, args),
    info: ignore,
    debug: ignore,
    verbose: ignore,
  };
}
