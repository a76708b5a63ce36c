// The in-process tier: createApp() driven through app.request(), with fakes of snapgate's own interfaces (audit
// recorder, limiter, forwarder, readiness) and the real parts where they are cheap (verifier on a JWKS file, policy,
// credentials from env vars, memory limiter, forwarder to the SnapLogic stand-in on loopback). No Redis, no child
// process, no dist/ build.
import { writeFileSync } from 'node:fs';
import { IncomingMessage } from 'node:http';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { createApp, type AppDeps } from '../../src/app.js';
import type { AuditEvent } from '../../src/audit/event.js';
import type { AuditRecorder } from '../../src/audit/recorder.js';
import { AuditUnavailableError } from '../../src/audit/trail.js';
import { createTokenVerifier } from '../../src/auth/verifier.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { jwksServing } from '../../src/credentials/jwks-route.js';
import { createCredentialStore } from '../../src/credentials/store.js';
import { createUpstreamAuth } from '../../src/credentials/upstream-auth.js';
import type { AppEnv } from '../../src/http/app-env.js';
import { InFlightCalls } from '../../src/http/in-flight.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { ReadinessReport } from '../../src/ops/health.js';
import { createMetrics, type Metrics } from '../../src/ops/metrics.js';
import { createPolicy } from '../../src/policy/policy.js';
import { compileLimits } from '../../src/ratelimit/build.js';
import type { LimitDecision, LimitRequest, RateLimiter } from '../../src/ratelimit/limits.js';
import { createMemoryLimiter } from '../../src/ratelimit/memory-limiter.js';
import { LimiterUnavailableError } from '../../src/ratelimit/resilient-limiter.js';
import { createRunCoordination, runGuardOrgs } from '../../src/runs/build.js';
import {
  createForwarder,
  type Forwarder,
  type UpstreamRequest,
  type UpstreamResponse,
} from '../../src/upstream/forwarder.js';
import { upstreamOrgs } from '../../src/upstream/orgs.js';
import { startTestStandIn, tempDir, testOrgs, testPolicy, testSecrets } from './gateway.js';
import { recordOutput, recordSecret } from './leak-scan.js';
import type { SnapLogicStandIn } from './snaplogic-stand-in.js';

export const ISSUER = 'https://idp.in-process.test';
export const AUDIENCE = 'snapgate';
export const START = '/api/1/rest/public/runtime/start';
/** A ruuid of SnapLogic's shape that no stand-in run has. */
export const SOME_RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';

/** A caller granted runtime.start on Acme-Prod by sub, and one granted every org by claims (see the policy below). */
export const BILLING = { sub: 'svc-billing' };
export const DATA_ENG = { sub: 'svc-data-eng', scope: 'openid snaplogic:runtime:start', groups: ['data-eng'] };

export interface MintOptions {
  /** Seconds from now; negative for an expired token; null leaves exp out. Default 300. */
  expiresIn?: number | null;
  /** Seconds from now for nbf. */
  notBefore?: number;
  iss?: string;
  aud?: string;
  /** The kid in the header (default: the published key's); null leaves it out. */
  kid?: string | null;
  /** Signs with a key that is not in the JWKS file (keeping the published kid): a bad signature. */
  unpublishedKey?: boolean;
}

/** An identity provider without a server: an ES256 key published in a JWKS file, and tokens signed with it. */
export class TestSigner {
  static readonly KID = 'in-process-key-1';

  private constructor(
    readonly jwksFile: string,
    private readonly key: CryptoKey,
    private readonly rogue: CryptoKey,
  ) {}

  static async create(dir = tempDir('snapgate-in-process-')): Promise<TestSigner> {
    const [published, rogue] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256')]);
    const jwk = { ...(await exportJWK(published.publicKey)), kid: TestSigner.KID, alg: 'ES256', use: 'sig' };
    const jwksFile = join(dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
    return new TestSigner(jwksFile, published.privateKey, rogue.privateKey);
  }

  /** A signed token for `claims` (svc-billing unless they name another sub). */
  async mint(claims: JWTPayload = BILLING, options: MintOptions = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const header: { alg: string; typ: string; kid?: string } = { alg: 'ES256', typ: 'JWT' };
    if (options.kid !== null) header.kid = options.kid ?? TestSigner.KID;
    const jwt = new SignJWT({ aud: options.aud ?? AUDIENCE, ...claims })
      .setProtectedHeader(header)
      .setIssuer(options.iss ?? ISSUER)
      .setIssuedAt(now);
    if (options.expiresIn !== null) jwt.setExpirationTime(now + (options.expiresIn ?? 300));
    if (options.notBefore !== undefined) jwt.setNotBefore(now + options.notBefore);
    return secret(await jwt.sign(options.unpublishedKey ? this.rogue : this.key));
  }

  /** An otherwise valid token with `alg: none` and an empty signature. */
  unsigned(claims: JWTPayload = BILLING): string {
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const exp = Math.floor(Date.now() / 1000) + 300;
    return secret(`${enc({ alg: 'none', typ: 'JWT' })}.${enc({ aud: AUDIENCE, iss: ISSUER, exp, ...claims })}.`);
  }

  /** An otherwise valid token signed HS256 with a guessable secret, naming the published kid (algorithm confusion). */
  async hs256(claims: JWTPayload = BILLING): Promise<string> {
    const jwt = new SignJWT({ aud: AUDIENCE, ...claims })
      .setProtectedHeader({ alg: 'HS256', kid: TestSigner.KID })
      .setIssuer(ISSUER)
      .setExpirationTime('5m');
    return secret(await jwt.sign(new TextEncoder().encode('guessable')));
  }
}

/** Every token a test file makes: secrets for the whole-run leak scan, and for this tier's own check. */
export const tokensMade: string[] = [];
/** Everything the app said in this test file: answers (status, headers, body), audit events and log lines. */
export const outputSeen: string[] = [];

function seen(text: string): void {
  outputSeen.push(text);
  recordOutput(text);
}
function secret(token: string): string {
  tokensMade.push(token);
  recordSecret(token);
  return token;
}

/** The org passwords and the Basic values made of them: none may appear in any answer or audit event. */
export const credentialSecrets: readonly string[] = [
  testSecrets.ACME_SL_PASSWORD,
  testSecrets.OTHER_SL_PASSWORD,
  Buffer.from(`${testSecrets.ACME_SL_USER}:${testSecrets.ACME_SL_PASSWORD}`).toString('base64'),
  Buffer.from(`${testSecrets.OTHER_SL_USER}:${testSecrets.OTHER_SL_PASSWORD}`).toString('base64'),
];

/** The Basic authorization value SnapLogic expects for an org of the stand-in. */
export function basicFor(org: 'Acme-Prod' | 'Other-Org'): string {
  const [user, password] =
    org === 'Acme-Prod'
      ? [testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD]
      : [testSecrets.OTHER_SL_USER, testSecrets.OTHER_SL_PASSWORD];
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/**
 * An AuditRecorder that keeps every event in memory, in order. `refuseAttempts` makes attempt() reject with
 * AuditUnavailableError, as the trail does when a required sink cannot take it (`recorded`: whether the refused
 * attempt was still queued, so that an outcome must follow it).
 */
export class MemoryAudit implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  readonly attempts: AuditEvent[] = [];
  readonly outcomes: AuditEvent[] = [];
  readonly decisions: AuditEvent[] = [];
  /** The denial key each decision was written with (the caller's sub, or its address). */
  readonly denialKeys: string[] = [];
  /** Every event, serialised as a sink would write it. */
  readonly lines: string[] = [];
  refuseAttempts: { recorded: boolean } | undefined;
  closed = false;

  attempt(event: AuditEvent): Promise<void> {
    if (this.refuseAttempts !== undefined) {
      if (this.refuseAttempts.recorded) this.keep(event, this.attempts);
      return Promise.reject(new AuditUnavailableError('memory', { recorded: this.refuseAttempts.recorded }));
    }
    this.keep(event, this.attempts);
    return Promise.resolve();
  }

  outcome(event: AuditEvent): void {
    this.keep(event, this.outcomes);
  }

  decision(event: AuditEvent, denialKey: string): void {
    this.denialKeys.push(denialKey);
    this.keep(event, this.decisions);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** The events of one request, in the order they were written. */
  of(requestId: string): AuditEvent[] {
    return this.events.filter((e) => e.requestId === requestId);
  }

  private keep(event: AuditEvent, list: AuditEvent[]): void {
    const line = JSON.stringify(event);
    this.lines.push(line);
    seen(line);
    list.push(event);
    this.events.push(event);
  }
}

/** A limiter whose store is down and whose org is set to refuse (onRedisError: closed): every check throws. */
export class UnavailableLimiter implements RateLimiter {
  readonly checks: LimitRequest[] = [];
  constructor(private readonly retryAfterMs = 2_500) {}

  check(request: LimitRequest): Promise<LimitDecision> {
    this.checks.push(request);
    return Promise.reject(new LimiterUnavailableError(this.retryAfterMs, { cause: new Error('connection refused') }));
  }
}

type Answer = (req: UpstreamRequest) => Promise<UpstreamResponse>;

/** A forwarder that answers every call with `answer` (a response, or a thrown error) and keeps what it was asked. */
export class FakeForwarder implements Forwarder {
  readonly calls: UpstreamRequest[] = [];
  constructor(public answer: Answer) {}

  /** SnapLogic's 200 to a resume, as the forwarder hands it back once it was sent. */
  static resumed(): Answer {
    return (req) => {
      req.onDispatch?.();
      const body = Buffer.from(JSON.stringify({ response_map: {}, http_status_code: 200 }));
      return Promise.resolve({ status: 200, headers: { 'content-type': 'application/json' }, body });
    };
  }

  /** Throws `error` once the call was handed to SnapLogic (`sent`), or before it was. */
  static failing(error: Error, sent: boolean): Answer {
    return (req) => {
      if (sent) req.onDispatch?.();
      return Promise.reject(error);
    };
  }

  forward(req: UpstreamRequest): Promise<UpstreamResponse> {
    this.calls.push(req);
    return this.answer(req);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The config document of the in-process app: both stand-in orgs on `pod`, the JWKS file, the test policy. */
export function inProcessDocument(pod: string, jwksFile: string): Record<string, any> {
  return {
    server: { maxBodyBytes: 1_024, bodyTimeout: '1s' },
    auth: { issuers: [{ issuer: ISSUER, audience: AUDIENCE, jwksFile, algorithms: ['ES256'] }] },
    policy: testPolicy(),
    orgs: testOrgs(pod),
    upstream: { connectTimeout: '1s', headersTimeout: '2s', bodyTimeout: '2s' },
  };
}

export interface InProcessOverrides {
  /** Fields merged into each named org's config, e.g. `{ 'Acme-Prod': { rateLimit: { limit: 2, window: '60s' } } }`. */
  orgs?: Record<string, Record<string, unknown>>;
  server?: Record<string, unknown>;
  upstream?: Record<string, unknown>;
  /** Replaces the real memory limiter (a function gets the app's log and metrics, for limiters that report). */
  limiter?: RateLimiter | ((parts: { log: Logger; metrics: Metrics }) => RateLimiter);
  /** Replaces the real forwarder to the stand-in. */
  forwarder?: Forwarder;
  /** The pod of every org (default: the stand-in). */
  pod?: string;
  /** Replaces the policy (default: testPolicy()). */
  policy?: Record<string, unknown>[];
  /** Merged into the audit section (e.g. `{ reads: 'denied' }`). */
  audit?: Record<string, unknown>;
  /** The signing section (issue 13: JWTs snapgate signs for jwt orgs). */
  signing?: Record<string, unknown>;
  /** Environment entries beside testSecrets, for more secret references (env:NAME). */
  env?: Record<string, string>;
}

/** One answer of the app, read whole. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when it is not JSON. */
  json: any;
  /** The X-Request-Id the test sent (undefined when it sent none). */
  sentRequestId: string | undefined;
  /** The answer's X-Request-Id. */
  requestId: string;
}

export interface CallOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  headers?: Record<string, string>;
  body?: string;
  /** The X-Request-Id to send; by default a fresh plain one; null sends none. */
  requestId?: string | null;
}

export interface InProcessApp {
  app: Hono<AppEnv>;
  deps: AppDeps;
  config: Config;
  audit: MemoryAudit;
  metrics: Metrics;
  inFlight: InFlightCalls;
  logs: Record<string, unknown>[];
  /** What the readiness probe answers. */
  readiness: ReadinessReport;
  /** Sets what isDraining() answers. */
  setDraining(on: boolean): void;
  /** POST runtime start for org/ruuid. */
  resume(org: string, ruuid: string, options?: CallOptions): Promise<Reply>;
  /** Any method and path, through a WHATWG Request (the URL is normalised: dot segments are folded). */
  send(method: string, path: string, options?: CallOptions): Promise<Reply>;
  /**
   * A request shaped like one from @hono/node-server: Node's IncomingMessage with the raw target and header lines as a
   * client sent them (repeated headers included), for what only the raw request shows.
   */
  sendRaw(method: string, target: string, headerLines: Array<[string, string]>): Promise<Reply>;
  close(): Promise<void>;
}

let requestCounter = 0;

/** Builds the whole app from its dependencies as src/deps.ts does, with fakes where the test needs control. */
export async function inProcessApp(
  world: { standIn: SnapLogicStandIn; signer: TestSigner },
  overrides: InProcessOverrides = {},
): Promise<InProcessApp> {
  const doc = inProcessDocument(overrides.pod ?? world.standIn.url, world.signer.jwksFile);
  for (const [org, fields] of Object.entries(overrides.orgs ?? {})) doc.orgs[org] = { ...doc.orgs[org], ...fields };
  doc.server = { ...doc.server, ...overrides.server };
  doc.upstream = { ...doc.upstream, ...overrides.upstream };
  if (overrides.policy !== undefined) doc.policy = overrides.policy;
  if (overrides.audit !== undefined) doc.audit = { ...doc.audit, ...overrides.audit };
  if (overrides.signing !== undefined) doc.signing = overrides.signing;
  const env = { ...testSecrets, ...overrides.env };
  const config = parseConfig(doc, 'in-process test', env);

  const logs: Record<string, unknown>[] = [];
  const log = createLogger({
    level: 'debug',
    write: (line) => {
      seen(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const verifier = await createTokenVerifier(config.auth.issuers, {
    env: testSecrets,
    log,
    cache: { maxEntries: config.auth.cache.maxEntries, maxTtlMs: config.auth.cache.maxTtl },
  });
  const credentials = await createCredentialStore(config, { env, log });
  const metrics = createMetrics({ signingKeys: () => credentials.keyInfo() });
  const upstreamAuth = createUpstreamAuth(config, credentials, {
    onMint: (org) => metrics.jwtMinted.labels(org).inc(),
  });
  const forwarder = overrides.forwarder ?? createForwarder(config.upstream);
  const orgs = upstreamOrgs(config);
  const audit = new MemoryAudit();
  const inFlight = new InFlightCalls();
  let draining = false;
  const readiness: ReadinessReport = { ready: true, checks: { credentials: 'ok' } };

  const deps: AppDeps = {
    verifier,
    policy: createPolicy(config.policy),
    credentials,
    upstreamAuth,
    onCredentialFallback: (org, identity) => metrics.credentialFallbacks.labels(org, identity).inc(),
    ...(config.signing !== undefined && config.signing.jwks.port === undefined
      ? { jwks: jwksServing(config.signing, credentials) }
      : {}),
    forwarder,
    orgs,
    audit,
    log,
    instance: 'in-process',
    maxBodyBytes: config.server.maxBodyBytes,
    bodyTimeoutMs: config.server.bodyTimeout,
    inFlight,
    readiness: () => Promise.resolve(draining ? { ready: false, checks: { draining: 'yes' } } : readiness),
    isDraining: () => draining,
    limiter:
      typeof overrides.limiter === 'function'
        ? overrides.limiter({ log, metrics })
        : (overrides.limiter ?? createMemoryLimiter({ maxKeys: config.rateLimiting.localMaxKeys })),
    limits: compileLimits(config, orgs),
    metrics,
    runs: { ...createRunCoordination(config, undefined), orgs: runGuardOrgs(config, orgs) },
    auditReads: config.audit.reads,
  };
  const app = createApp(deps);

  const answer = async (res: Response, sentRequestId: string | undefined): Promise<Reply> => {
    const text = await res.text();
    // Every answer is checked for secrets at the end of the run.
    seen(`${res.status} ${JSON.stringify([...res.headers])} ${text}`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: res.status,
      headers: res.headers,
      text,
      json,
      sentRequestId,
      requestId: res.headers.get('x-request-id') ?? '',
    };
  };

  const send = async (method: string, path: string, options: CallOptions = {}): Promise<Reply> => {
    const headers = new Headers(options.headers);
    if (options.token !== undefined) headers.set('authorization', `Bearer ${options.token}`);
    const requestId = options.requestId === undefined ? `t-${++requestCounter}` : (options.requestId ?? undefined);
    if (requestId !== undefined && !headers.has('x-request-id')) headers.set('x-request-id', requestId);
    const init: RequestInit = { method, headers, ...(options.body !== undefined ? { body: options.body } : {}) };
    const res = await app.request(`http://snapgate.test${path}`, init);
    return answer(res, headers.get('x-request-id') ?? undefined);
  };

  return {
    app,
    deps,
    config,
    audit,
    metrics,
    inFlight,
    logs,
    readiness,
    setDraining: (on) => {
      draining = on;
    },
    resume: (org, ruuid, options) => send('POST', `${START}/${org}/${ruuid}`, options),
    send,
    async sendRaw(method, target, headerLines) {
      const incoming = new IncomingMessage(new Socket());
      incoming.method = method;
      incoming.url = target;
      incoming.rawHeaders = headerLines.flat();
      const headers: Record<string, string> = {};
      // Node keeps the first of a repeated Authorization (and most other single-valued fields).
      for (const [name, value] of headerLines) headers[name.toLowerCase()] ??= value;
      incoming.headers = headers;
      incoming.push(null);
      const init: RequestInit = { method, headers };
      const res = await app.request(`http://snapgate.test${target}`, init, { incoming });
      return answer(res, headers['x-request-id']);
    },
    async close() {
      credentials.close();
      await forwarder.close();
    },
  };
}

/**
 * The parts a test file shares (the SnapLogic stand-in on loopback and a signer), started before its first test and
 * stopped after its last; `app()` builds an app, closed after the test that built it.
 */
export function useInProcess(): {
  readonly standIn: SnapLogicStandIn;
  readonly signer: TestSigner;
  app(overrides?: InProcessOverrides): Promise<InProcessApp>;
} {
  const world = {} as { standIn: SnapLogicStandIn; signer: TestSigner };
  const open: InProcessApp[] = [];
  beforeAll(async () => {
    [world.standIn, world.signer] = await Promise.all([startTestStandIn(), TestSigner.create()]);
  });
  afterEach(async () => {
    world.standIn.setFault(undefined);
    world.standIn.onRequest = undefined;
    await Promise.all(open.splice(0).map((a) => a.close()));
  });
  afterAll(async () => {
    await world.standIn?.close();
  });
  return {
    get standIn() {
      return world.standIn;
    },
    get signer() {
      return world.signer;
    },
    async app(overrides) {
      const built = await inProcessApp(world, overrides);
      open.push(built);
      return built;
    },
  };
}

/**
 * Asserts a snapgate error: its status, problem+json with the stable code (and its type and status fields), no
 * caching, and the request id echoed (the one sent, when it was plain).
 */
export function expectProblem(reply: Reply, status: number, code: string): void {
  expect(reply.status, reply.text).toBe(status);
  expect(reply.headers.get('content-type')).toBe('application/problem+json');
  expect(reply.headers.get('cache-control')).toBe('no-store');
  expect(reply.json, reply.text).toMatchObject({ status, code });
  expect(typeof reply.json.detail).toBe('string');
  if (reply.sentRequestId !== undefined) expect(reply.requestId).toBe(reply.sentRequestId);
  else expect(reply.requestId).toMatch(/^[0-9a-f-]{36}$/);
}

/** What every audit event of a call on one of Acme-Prod's runs says of its caller and target. */
export function onAcme(ruuid: string, sub: string): Record<string, unknown> {
  return { caller: { iss: ISSUER, sub }, org: 'Acme-Prod', ruuid, action: 'runtime.start' };
}

/** The one decision event of a request that was not forwarded; asserts there is exactly one event and no attempt. */
export function onlyDecision(audit: MemoryAudit, reply: Reply): AuditEvent {
  const events = audit.of(reply.requestId);
  expect(
    events.map((e) => e.type),
    JSON.stringify(events),
  ).toEqual(['decision']);
  return events[0]!;
}

/**
 * Asserts that nothing this test file made the app say (answers with their headers, audit events, log lines) holds an
 * org's password, a Basic value made of one, or any token a test sent (whole, or its signature).
 */
export function expectNoSecrets(): void {
  // Something was said, and tokens were sent: the check below has material to fail on.
  expect(outputSeen.length).toBeGreaterThan(10);
  expect(tokensMade.length).toBeGreaterThan(0);
  const everything = outputSeen.join('\n');
  for (const s of credentialSecrets) expect(everything.includes(s), 'an org credential leaked').toBe(false);
  for (const token of tokensMade) {
    expect(everything.includes(token), `a token leaked: ${token.slice(0, 20)}…`).toBe(false);
    const signature = token.split('.')[2] ?? '';
    if (signature.length > 0) expect(everything.includes(signature), 'a token signature leaked').toBe(false);
  }
}
