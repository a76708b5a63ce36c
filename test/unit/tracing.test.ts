// Tracing: which OTEL_* settings turn it on, and the spans of the request path in-process (createApp with a tracer
// whose spans land in memory, the SnapLogic stand-in on loopback, the in-memory audit recorder).
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { createTracing, tracingSettings, type Tracing } from '../../src/ops/tracing.js';
import { START, useInProcess, type InProcessApp } from '../helpers/in-process.js';

describe('tracingSettings: the standard variables', () => {
  const on = (protocol: string) => ({ enabled: true, protocol });
  it.each([
    ['nothing set', {}, { enabled: false }],
    ['an OTLP endpoint', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, on('http/protobuf')],
    ['a traces endpoint', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }, on('http/protobuf')],
    [
      'OTEL_TRACES_EXPORTER=otlp alone (the SDK default endpoint)',
      { OTEL_TRACES_EXPORTER: 'otlp' },
      on('http/protobuf'),
    ],
    ['an empty endpoint', { OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }, { enabled: false }],
    [
      'OTEL_SDK_DISABLED=true, whatever else',
      { OTEL_SDK_DISABLED: 'TRUE', OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' },
      { enabled: false },
    ],
    ['OTEL_SDK_DISABLED=false', { OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' }, on('http/protobuf')],
    [
      'OTEL_TRACES_EXPORTER=none',
      { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' },
      { enabled: false },
    ],
    ['http/json', { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, on('http/json')],
    [
      'the traces protocol over the general one',
      {
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      },
      on('http/json'),
    ],
  ])('%s', (_label, env, expected) => {
    expect(tracingSettings(env)).toEqual(expected);
  });

  it.each([
    [
      'console (it would write to stdout, the audit stream)',
      { OTEL_TRACES_EXPORTER: 'console' },
      /console is not supported/,
    ],
    ['zipkin', { OTEL_TRACES_EXPORTER: 'zipkin', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c' }, /zipkin is not supported/],
    [
      'grpc',
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      /grpc is not supported.*4318/,
    ],
  ])('refuses %s, saying why', (_label, env, why) => {
    const settings = tracingSettings(env);
    expect(settings.enabled).toBe(false);
    expect(settings.enabled === false ? settings.problem : '').toMatch(why);
  });
});

describe('the spans of the request path', () => {
  const world = useInProcess();
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  const caller = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' };
  const traceparent = `00-${caller.traceId}-${caller.spanId}-01`;

  beforeAll(() => {
    tracing = createTracing({
      spanProcessor: new SimpleSpanProcessor(exporter),
      serviceVersion: '0.0.0-test',
      instanceId: 'unit:1',
    });
  });
  afterAll(() => tracing.shutdown());
  beforeEach(() => exporter.reset());

  /** The in-process app built with tracing on (the same deps as `gw.app`, which has none). */
  const traced = (gw: InProcessApp) => createApp({ ...gw.deps, tracing });
  const post = (app: ReturnType<typeof createApp>, path: string, headers: Record<string, string>) =>
    app.request(path, { method: 'POST', headers });
  const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
  const named = (name: string) => spans().filter((s) => s.name === name);
  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

  it('continues the caller trace; internal steps and the client span are children of the server span', async () => {
    const gw = await world.app({ orgs: { 'Acme-Prod': { rateLimit: { limit: 5, window: '60s' } } } });
    const ruuid = world.standIn.addRun('Acme-Prod');
    const res = await post(traced(gw), `${START}/Acme-Prod/${ruuid}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
      traceparent,
      tracestate: 'congo=t61rcWkgMzE',
      'x-request-id': 'unit-trace-1',
    });
    expect(res.status, await res.text()).toBe(200);

    const server = spans().find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.name).toBe('POST /api/1/rest/public/runtime/start/{org}/{ruuid}');
    expect(server.spanContext().traceId).toBe(caller.traceId);
    expect(parentOf(server)).toBe(caller.spanId);
    expect(server.attributes).toEqual({
      'http.request.method': 'POST',
      'http.route': '/api/1/rest/public/runtime/start/{org}/{ruuid}',
      'url.path': '/api/1/rest/public/runtime/start/{org}/{ruuid}',
      'http.response.status_code': 200,
      'snaplogic.org': 'Acme-Prod',
      'snaplogic.action': 'runtime.start',
      'snapgate.request_id': 'unit-trace-1',
      'snapgate.decision': 'allowed',
    });
    for (const name of ['authenticate', 'authorize', 'rate limit', 'audit attempt']) {
      expect(named(name), name).toHaveLength(1);
      expect(named(name)[0]!.kind).toBe(SpanKind.INTERNAL);
      expect(parentOf(named(name)[0]!), name).toBe(server.spanContext().spanId);
    }
    expect(named('rate limit')[0]!.attributes['snapgate.rate_limit.outcome']).toBe('allowed');
    const client = spans().find((s) => s.kind === SpanKind.CLIENT)!;
    expect(parentOf(client)).toBe(server.spanContext().spanId);
    expect(client.attributes['http.response.status_code']).toBe(200);

    const sent = world.standIn.startCalls().at(-1)!;
    expect(sent.headers.traceparent).toBe(`00-${caller.traceId}-${client.spanContext().spanId}-01`);
    expect(sent.headers.tracestate).toBe('congo=t61rcWkgMzE');
    expect(gw.audit.of('unit-trace-1').map((e) => [e.type, e.traceId])).toEqual([
      ['attempt', caller.traceId],
      ['outcome', caller.traceId],
    ]);
  });

  it('marks the step that refused a call, and the server span, with status error and the code', async () => {
    const gw = await world.app({ orgs: { 'Acme-Prod': { rateLimit: { limit: 1, window: '60s' } } } });
    const app = traced(gw);
    const token = await world.signer.mint();
    const call = () =>
      post(app, `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, { authorization: `Bearer ${token}` });
    expect((await call()).status).toBe(200);
    exporter.reset();
    const limited = await call();
    expect(limited.status).toBe(429);
    const code = ((await limited.json()) as { code: string }).code;
    const step = named('rate limit')[0]!;
    expect(step.status).toEqual({ code: SpanStatusCode.ERROR, message: code });
    expect(step.attributes['snapgate.rate_limit.outcome']).toBe('limited');
    const server = spans().find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    expect(server.attributes).toMatchObject({ 'error.type': code, 'snapgate.decision': 'rate_limited' });
    expect(named('audit attempt')).toEqual([]);
    expect(spans().some((s) => s.kind === SpanKind.CLIENT)).toBe(false);
  });

  it('marks a forbidden call at authorize, and an unrecordable attempt at audit attempt', async () => {
    const gw = await world.app();
    const app = traced(gw);
    const forbidden = await post(app, `${START}/Other-Org/${world.standIn.addRun('Other-Org')}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
    });
    expect(forbidden.status).toBe(403);
    expect(named('authorize')[0]!.status.code).toBe(SpanStatusCode.ERROR);

    exporter.reset();
    gw.audit.refuseAttempts = { recorded: false };
    const unrecorded = await post(app, `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
    });
    expect(unrecorded.status).toBe(503);
    expect(named('audit attempt')[0]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'AuditUnavailableError' });
    expect(spans().some((s) => s.kind === SpanKind.CLIENT)).toBe(false);
  });

  it('puts the trace id in the log lines written while the call runs', async () => {
    const gw = await world.app();
    world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
    const res = await post(traced(gw), `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
      traceparent,
      'x-request-id': 'unit-trace-logs',
    });
    expect(res.status).toBe(502);
    const lines = gw.logs.filter((l) => l.requestId === 'unit-trace-logs');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line.traceId).toBe(caller.traceId);
    expect(spans().find((s) => s.kind === SpanKind.CLIENT)!.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('keeps a caller that did not sample unsampled: no span exported, its trace id still passed on', async () => {
    const gw = await world.app();
    const res = await post(traced(gw), `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
      traceparent: `00-${caller.traceId}-${caller.spanId}-00`,
    });
    expect(res.status).toBe(200);
    expect(spans()).toEqual([]);
    expect(world.standIn.startCalls().at(-1)!.headers.traceparent).toMatch(
      new RegExp(`^00-${caller.traceId}-[0-9a-f]{16}-00$`),
    );
  });

  it('starts a new trace for a malformed or repeated traceparent', async () => {
    const gw = await world.app();
    const app = traced(gw);
    for (const bad of ['00-zz-yy-01', `00-${'0'.repeat(32)}-${caller.spanId}-01`, `${traceparent}, ${traceparent}`]) {
      exporter.reset();
      const res = await post(app, `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, {
        authorization: `Bearer ${await world.signer.mint()}`,
        traceparent: bad,
      });
      expect(res.status, bad).toBe(200);
      const server = spans().find((s) => s.kind === SpanKind.SERVER)!;
      expect(server.parentSpanContext, bad).toBeUndefined();
      expect(server.spanContext().traceId, bad).not.toBe(caller.traceId);
    }
  });

  it('names a path that is not a runtime call by its method alone, and records no raw path or foreign method', async () => {
    const gw = await world.app();
    const app = traced(gw);
    const res = await app.request('/api/1/rest/public/runtime/start/Acme-Prod/secret-looking-segment/extra', {
      method: 'POST',
    });
    expect(res.status).toBe(400);
    const server = spans().find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.name).toBe('POST');
    expect(JSON.stringify(server.attributes)).not.toContain('secret-looking-segment');
    exporter.reset();
    await app.request('/anything', { method: 'BREW' });
    expect(spans().find((s) => s.kind === SpanKind.SERVER)!.name).toBe('_OTHER');
  });

  it('makes no span for health checks', async () => {
    const gw = await world.app();
    expect((await traced(gw).request('/livez')).status).toBe(200);
    expect(spans()).toEqual([]);
  });

  it('is not on the request path of an app built without tracing: no trace id in audit events or log lines', async () => {
    const gw = await world.app();
    world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
    const res = await post(gw.app, `${START}/Acme-Prod/${world.standIn.addRun('Acme-Prod')}`, {
      authorization: `Bearer ${await world.signer.mint()}`,
      traceparent,
      'x-request-id': 'unit-trace-off',
    });
    expect(res.status).toBe(502);
    expect(spans()).toEqual([]);
    expect(gw.audit.of('unit-trace-off').length).toBeGreaterThan(0);
    for (const e of gw.audit.of('unit-trace-off')) expect(e).not.toHaveProperty('traceId');
    const lines = gw.logs.filter((l) => l.requestId === 'unit-trace-off');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).not.toHaveProperty('traceId');
    // Off, the caller's traceparent is passed on as it came.
    expect(world.standIn.startCalls().at(-1)!.headers.traceparent).toBe(traceparent);
  });
});
