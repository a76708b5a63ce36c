// OpenTelemetry traces end to end: the built gateway as a process, exporting over OTLP/HTTP to a local receiver, the
// SnapLogic stand-in recording the traceparent it was sent, and stdout/stderr read for trace ids.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { baseConfig, ROOT, spawnGateway, testSecrets, type GatewayProcess } from '../helpers/gateway.js';
import { resume, resumeNewRun } from '../helpers/http.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';
import { freePort } from '../helpers/redis-server.js';
import { sleep, until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const START_TEMPLATE = '/api/1/rest/public/runtime/start/{org}/{ruuid}';
/** An API key for the collector: sent as an OTLP header, never logged. */
const COLLECTOR_KEY = 'otlp-collector-Key-9f3b2c';
recordSecret(COLLECTOR_KEY);
/** A password in the collector endpoint's URL. */
const ENDPOINT_PASSWORD = 'endpoint-Pa55-7d1e';
recordSecret(ENDPOINT_PASSWORD);

let receiver: OtlpReceiver;
let gw: GatewayProcess;

const hex = (bytes: number) =>
  Array.from({ length: bytes }, () =>
    Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, '0'),
  ).join('');
const callerTrace = () => ({ traceId: hex(16), spanId: hex(8) });
const traceparent = (t: { traceId: string; spanId: string }) => `00-${t.traceId}-${t.spanId}-01`;

/** The spans of `traceId` once its server span (ended last) has arrived. */
async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  await until(
    () => receiver.trace(traceId).some((s) => s.kind === 'server'),
    10_000,
    () => `the server span of trace ${traceId} (received: ${receiver.spans.map((s) => s.name).join(', ')})`,
  );
  // The batch the server span came in holds its children too (they end first); allow one more batch.
  await sleep(300);
  return receiver.trace(traceId);
}

const auditOf = (p: GatewayProcess, requestId: string): AuditEvent[] =>
  p.stdout.flatMap((l) => {
    try {
      const e = JSON.parse(l) as AuditEvent;
      return e.requestId === requestId ? [e] : [];
    } catch {
      return [];
    }
  });

const logsOf = (p: GatewayProcess, requestId: string): Record<string, unknown>[] =>
  p.stderr.flatMap((l) => {
    try {
      const line = JSON.parse(l) as Record<string, unknown>;
      return line.requestId === requestId ? [line] : [];
    } catch {
      return [];
    }
  });

/** No attribute, name or status of any span carries a secret or a header. */
function expectNothingSecret(spans: ReceivedSpan[], secrets: string[]): void {
  const text = JSON.stringify(spans);
  for (const secret of [...secrets, testSecrets.ACME_SL_PASSWORD, COLLECTOR_KEY]) {
    expect(text).not.toContain(secret);
  }
  expect(text).not.toContain(
    Buffer.from(`${testSecrets.ACME_SL_USER}:${testSecrets.ACME_SL_PASSWORD}`).toString('base64'),
  );
  for (const span of spans) {
    for (const key of Object.keys(span.attributes)) {
      expect(key).not.toMatch(/authorization|cookie|header|token|password|body/i);
    }
  }
}

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  gw = await spawnGateway(baseConfig(world.standIn, world.issuer), {
    built: true,
    env: {
      ...testSecrets,
      // The protocol left to its default (http/protobuf).
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_HEADERS: `x-collector-key=${COLLECTOR_KEY}`,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  });
  expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
});

afterAll(async () => {
  if (gw !== undefined && gw.port > 0) await gw.stop();
  await receiver?.close();
});

describe('a resume with a caller traceparent', () => {
  let caller: { traceId: string; spanId: string };
  let spans: ReceivedSpan[];
  let jwt: string;
  let ruuid: string;
  const requestId = 'trace-req-1';

  beforeAll(async () => {
    caller = callerTrace();
    ruuid = world.standIn.addRun('Acme-Prod');
    jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const res = await resume(gw.url, 'Acme-Prod', ruuid, jwt, {
      traceparent: traceparent(caller),
      tracestate: 'vendor=abc',
      'x-request-id': requestId,
    });
    expect(res.status, res.text).toBe(200);
    spans = await spansOf(caller.traceId);
  });

  /** The one span of `kind` named `name`. */
  const one = (name: string, kind: ReceivedSpan['kind'] = 'internal'): ReceivedSpan => {
    const found = spans.filter((s) => s.name === name && s.kind === kind);
    expect(found, `${kind} spans named ${name} in ${JSON.stringify(spans.map((s) => [s.kind, s.name]))}`).toHaveLength(
      1,
    );
    return found[0]!;
  };
  const serverSpan = () => one(`POST ${START_TEMPLATE}`, 'server');

  it('continues the caller trace: the server span is a child of the caller span, named by the route template', () => {
    const server = serverSpan();
    expect(server.kind).toBe('server');
    expect(server.encoding).toBe('protobuf');
    expect(server.parentSpanId).toBe(caller.spanId);
    expect(server.traceState).toBe('vendor=abc');
    expect(server.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': START_TEMPLATE,
      'url.path': START_TEMPLATE,
      'http.response.status_code': 200,
      'snaplogic.org': 'Acme-Prod',
      'snaplogic.action': 'runtime.start',
      'snapgate.request_id': requestId,
      'snapgate.decision': 'allowed',
    });
    expect(server.status.code).toBe('unset');
    // The run id is in no span name or attribute: the raw path is never recorded.
    expect(JSON.stringify(spans)).not.toContain(ruuid);
  });

  it('has authenticate, authorize, rate limit and audit attempt as children of the server span', () => {
    const server = serverSpan();
    for (const name of ['authenticate', 'authorize', 'rate limit', 'audit attempt']) {
      const span = one(name);
      expect(span.kind, name).toBe('internal');
      expect(span.parentSpanId, name).toBe(server.spanId);
      expect(span.status.code, name).toBe('unset');
    }
  });

  it('sends SnapLogic the traceparent of its client span, not the caller one', () => {
    const server = serverSpan();
    const client = one(`POST ${START_TEMPLATE}`, 'client');
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.attributes).toMatchObject({
      'http.request.method': 'POST',
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(world.standIn.url).port),
      'http.response.status_code': 200,
    });
    const received = world.standIn.startCalls().find((r) => r.headers['x-request-id'] === requestId);
    expect(received?.headers.traceparent).toBe(`00-${caller.traceId}-${client.spanId}-01`);
    expect(received?.headers.tracestate).toBe('vendor=abc');
  });

  it('puts the trace id in the attempt and outcome audit events', () => {
    const events = auditOf(gw, requestId);
    expect(events.map((e) => e.type)).toEqual(['attempt', 'outcome']);
    for (const e of events) expect(e.traceId).toBe(caller.traceId);
  });

  it('records service name, version and instance, and sends the OTLP headers', () => {
    const server = serverSpan();
    expect(server.resource['service.name']).toBe('snapgate');
    expect(server.resource['service.version']).toBe(version);
    expect(server.resource['service.instance.id']).toMatch(/:\d+$/);
    expect(receiver.requests.some((r) => r.headers['x-collector-key'] === COLLECTOR_KEY)).toBe(true);
  });

  it('records no token, credential or header in any span', () => {
    expectNothingSecret(spans, [jwt, jwt.split('.')[2]!]);
    expect(gw.stderr.join('\n')).not.toContain(COLLECTOR_KEY);
  });
});

describe('calls that do not go as planned', () => {
  it('a refused token still yields a server span, with status error and the refusal code', async () => {
    const caller = callerTrace();
    const bad = `${await world.issuer.mint({ sub: 'svc-billing' })}x`;
    const res = await resume(gw.url, 'Acme-Prod', world.standIn.addRun('Acme-Prod'), bad, {
      traceparent: traceparent(caller),
      'x-request-id': 'trace-req-refused',
    });
    expect(res.status, res.text).toBe(401);
    const spans = await spansOf(caller.traceId);
    const server = spans.find((s) => s.kind === 'server')!;
    expect(server.name).toBe(`POST ${START_TEMPLATE}`);
    expect(server.parentSpanId).toBe(caller.spanId);
    expect(server.status.code).toBe('error');
    expect(server.attributes).toMatchObject({
      'http.response.status_code': 401,
      'snapgate.decision': 'unauthenticated',
      'error.type': res.json.code,
    });
    const auth = spans.find((s) => s.name === 'authenticate')!;
    expect(auth.status).toEqual({ code: 'error', message: res.json.code });
    expect(auth.parentSpanId).toBe(server.spanId);
    // Refused before authorize: no later step, no SnapLogic call.
    expect(spans.map((s) => s.name).sort()).toEqual(['authenticate', `POST ${START_TEMPLATE}`].sort());
    expectNothingSecret(spans, [bad, bad.split('.')[2]!]);
    const events = auditOf(gw, 'trace-req-refused');
    expect(events.map((e) => [e.type, e.traceId])).toEqual([['decision', caller.traceId]]);
  });

  it('puts the trace id in the log lines of a call, and marks the failed SnapLogic call', async () => {
    const caller = callerTrace();
    world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
    try {
      const res = await resume(
        gw.url,
        'Acme-Prod',
        world.standIn.addRun('Acme-Prod'),
        await world.issuer.mint({ sub: 'svc-billing' }),
        {
          traceparent: traceparent(caller),
          'x-request-id': 'trace-req-rejected',
        },
      );
      expect(res.status, res.text).toBe(502);
    } finally {
      world.standIn.setFault(undefined);
    }
    const spans = await spansOf(caller.traceId);
    const client = spans.find((s) => s.kind === 'client')!;
    expect(client.status.code).toBe('error');
    expect(client.attributes['http.response.status_code']).toBe(401);
    expect(spans.find((s) => s.kind === 'server')!.status.code).toBe('error');
    await until(
      () => logsOf(gw, 'trace-req-rejected').length >= 2,
      5_000,
      () => 'the call log lines',
    );
    const lines = logsOf(gw, 'trace-req-rejected');
    for (const line of lines) expect(line.traceId, JSON.stringify(line)).toBe(caller.traceId);
  });

  it('starts a new trace for a malformed traceparent, and sends SnapLogic a valid one of its own', async () => {
    const before = new Set(receiver.spans.map((s) => s.traceId));
    const res = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
      headers: { traceparent: '00-not-a-trace-01', tracestate: 'x=y', 'x-request-id': 'trace-req-malformed' },
    });
    expect(res.status, res.text).toBe(200);
    const received = world.standIn.startCalls().find((r) => r.headers['x-request-id'] === 'trace-req-malformed');
    const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(received?.headers.traceparent));
    expect(sent, String(received?.headers.traceparent)).not.toBeNull();
    const traceId = sent![1]!;
    expect(before.has(traceId)).toBe(false);
    // A tracestate without a valid traceparent is not carried on.
    expect(received?.headers.tracestate).toBeUndefined();
    const spans = await spansOf(traceId);
    const server = spans.find((s) => s.kind === 'server')!;
    expect(server.parentSpanId).toBe('');
    expect(spans.find((s) => s.kind === 'client')!.spanId).toBe(sent![2]);
  });

  it('keeps tracing the calls served after a config reload (SIGHUP)', async () => {
    const reloads = () => gw.stderr.filter((l) => l.includes('"config reloaded')).length;
    const before = reloads();
    gw.kill('SIGHUP');
    await until(
      () => reloads() > before,
      10_000,
      () => `the config reload line in ${gw.stderr.slice(-6).join('\n')}`,
    );
    const caller = callerTrace();
    const res = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
      headers: { traceparent: traceparent(caller) },
    });
    expect(res.status, res.text).toBe(200);
    const spans = await spansOf(caller.traceId);
    expect(spans.map((s) => s.name)).toEqual(
      expect.arrayContaining(['authenticate', 'authorize', 'rate limit', 'audit attempt']),
    );
    expect(spans.filter((s) => s.kind === 'client')).toHaveLength(1);
  });

  it('exports no span for health checks', async () => {
    const count = receiver.spans.length;
    const res = await fetch(`${gw.url}/livez`);
    expect(res.status).toBe(200);
    await sleep(500);
    expect(receiver.spans.slice(count).filter((s) => s.kind === 'server')).toEqual([]);
  });
});

describe('switched by the standard variables', () => {
  it('exports OTLP JSON to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, named by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES', async () => {
    const json = await spawnGateway(baseConfig(world.standIn, world.issuer), {
      built: true,
      env: {
        ...testSecrets,
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'snapgate-eu',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,service.instance.id=gw-7',
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    try {
      const caller = callerTrace();
      const res = await resumeNewRun(json.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
        headers: { traceparent: traceparent(caller) },
      });
      expect(res.status, res.text).toBe(200);
      const spans = await spansOf(caller.traceId);
      const server = spans.find((s) => s.kind === 'server')!;
      expect(server.encoding).toBe('json');
      expect(server.resource).toMatchObject({
        'service.name': 'snapgate-eu',
        'service.version': version,
        'service.instance.id': 'gw-7',
        'deployment.environment.name': 'test',
      });
    } finally {
      await json.stop();
    }
  });

  it('exports the spans of the last calls at shutdown', async () => {
    const slow = await spawnGateway(baseConfig(world.standIn, world.issuer), {
      built: true,
      env: {
        ...testSecrets,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        // Longer than the test: only the flush at shutdown sends them.
        OTEL_BSP_SCHEDULE_DELAY: '60000',
      },
    });
    const caller = callerTrace();
    try {
      const res = await resumeNewRun(slow.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
        headers: { traceparent: traceparent(caller) },
      });
      expect(res.status, res.text).toBe(200);
      await sleep(300);
      expect(receiver.trace(caller.traceId)).toEqual([]);
    } finally {
      expect(await slow.stop()).toBe(0);
    }
    expect(receiver.trace(caller.traceId).map((s) => s.kind)).toContain('server');
  });

  it('exports from each worker with server.workers, each under its own service.instance.id', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    (doc.server as Record<string, unknown>).workers = 2;
    const workers = await spawnGateway(doc, {
      built: true,
      env: { ...testSecrets, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    try {
      await until(() => workers.listeners() === 2);
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      const callers = Array.from({ length: 6 }, callerTrace);
      for (const caller of callers) {
        const res = await resumeNewRun(workers.url, world.standIn, jwt, {
          headers: { traceparent: traceparent(caller) },
        });
        expect(res.status, res.text).toBe(200);
      }
      const instances = new Set<unknown>();
      for (const caller of callers) {
        const server = (await spansOf(caller.traceId)).find((s) => s.kind === 'server')!;
        instances.add(server.resource['service.instance.id']);
      }
      // The primary hands connections to the workers in turn: both served, and each exported its own.
      expect(instances.size).toBe(2);
    } finally {
      expect(await workers.stop()).toBe(0);
    }
  });

  it('serves on when the collector is down, and says so without quoting its key or endpoint credentials', async () => {
    const port = await freePort();
    const down = await spawnGateway(baseConfig(world.standIn, world.issuer), {
      built: true,
      env: {
        ...testSecrets,
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://collector:${ENDPOINT_PASSWORD}@127.0.0.1:${port}`,
        OTEL_EXPORTER_OTLP_HEADERS: `x-collector-key=${COLLECTOR_KEY}`,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_EXPORTER_OTLP_TIMEOUT: '500',
      },
    });
    try {
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      for (let i = 0; i < 3; i++) {
        const res = await resumeNewRun(down.url, world.standIn, jwt);
        expect(res.status, res.text).toBe(200);
        await sleep(200);
      }
      const problems = () => down.stderr.filter((l) => l.includes('the OpenTelemetry SDK reported a problem'));
      await until(
        () => problems().length > 0,
        10_000,
        () => `an export failure line in ${down.stderr.join('\n')}`,
      );
      // The same failure of every batch is logged once a minute, not once a batch.
      await sleep(1_000);
      const details = problems().map((l) => (JSON.parse(l) as { detail: string }).detail);
      expect(new Set(details).size, details.join('\n')).toBe(details.length);
      const stderr = down.stderr.join('\n');
      expect(stderr).not.toContain(COLLECTOR_KEY);
      expect(stderr).not.toContain(ENDPOINT_PASSWORD);
    } finally {
      expect(await down.stop()).toBe(0);
    }
  });

  const offCases: [string, () => Record<string, string>][] = [
    ['no OTEL_* variable', () => ({})],
    [
      'OTEL_SDK_DISABLED=true beside an endpoint',
      () => ({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' }),
    ],
    [
      'OTEL_TRACES_EXPORTER=none beside an endpoint',
      () => ({
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      }),
    ],
  ];
  for (const [label, env] of offCases) {
    it(`is off with ${label}: nothing sent, no trace id, the caller traceparent passed on as it was`, async () => {
      const exports = receiver.requests.length;
      const off = await spawnGateway(baseConfig(world.standIn, world.issuer), {
        built: true,
        env: { ...testSecrets, ...env() },
      });
      try {
        const caller = callerTrace();
        const requestId = `trace-req-off-${label.length}`;
        world.standIn.setFault({ kind: 'status', status: 401, count: 1 });
        const res = await resumeNewRun(off.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
          headers: { traceparent: traceparent(caller), 'x-request-id': requestId },
        });
        world.standIn.setFault(undefined);
        expect(res.status, res.text).toBe(502);
        const received = world.standIn.startCalls().find((r) => r.headers['x-request-id'] === requestId);
        expect(received?.headers.traceparent).toBe(traceparent(caller));
        await sleep(500);
        expect(receiver.trace(caller.traceId)).toEqual([]);
        const events = auditOf(off, requestId);
        expect(events.length).toBeGreaterThan(0);
        for (const e of events) expect(e).not.toHaveProperty('traceId');
        const lines = logsOf(off, requestId);
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line).not.toHaveProperty('traceId');
        expect(off.stderr.join('\n')).not.toContain('"tracing on"');
      } finally {
        world.standIn.setFault(undefined);
        await off.stop();
      }
      // Not even at shutdown.
      expect(receiver.requests.length).toBe(exports);
    });
  }
});
