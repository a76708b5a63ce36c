// A local stand-in of SnapLogic's public runtime API (shared/docs/snaplogic-api.md) for tests, demo and benchmark.
//
// Routes (under /api/1/rest/public/runtime, org names case-sensitive, per-org auth, anything else 404):
//   POST start/:org/:ruuid, POST stop/:org/:ruuid, GET :org (list), GET :org/:ruuid (level=summary|detail),
//   GET api-stats/:org, GET api-stats/:org/daily, GET api-stats/:org/concurrent.
// Every answer is JSON with `X-SL-StatusCode` equal to the HTTP status; errors are
// `{"response_map":{"error_list":[{"message":"..."}]},"http_status_code":n}`.
//
// State machine per run (each arrow after `transitionMs`, or on `advance()` when `transitionMs` is 0):
//   Suspended --start--> Resuming --> Started --> Completed (or Failing --> Failed, or Suspending --> Suspended,
//   per the run's `outcome`); stop on a run not finished --> Stopping --> Stopped.
//
// Auth (shared/docs/snaplogic-api.md §4): `Authorization: Basic` with the org's credential, or `Authorization: Bearer
// <JWT>` from the issuer registered for the org (`jwtIssuer`: issuer id + JWKS URL, fetched over HTTP). A JWT must be
// RS256 or ES256, signed by a key of that JWKS (found by `kid`), and carry `iss` = the issuer id, `aud` = the
// expected audience (default `<stand-in origin>/api/1/rest/public`), `exp` and `iat` (`nbf` checked when present),
// `sub` = a SnapLogic user of the org (`jwtUsers`, default any non-empty) and `org` = the org in the path
// (case-sensitive). Any failure of either
// scheme is the same generic 401; an org with `jwtOnly` answers Basic with 403. SnapLogic's alternative claim names
// (`snaplogic_username`, `snaplogic_aud`, `snaplogic_org`) are not accepted here.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { listenOnLoopback, type Listening } from './loopback.js';

export type RunState =
  | 'Queued'
  | 'NoUpdate'
  | 'Prepared'
  | 'Started'
  | 'Completed'
  | 'Failing'
  | 'Failed'
  | 'Stopped'
  | 'Stopping'
  | 'Suspending'
  | 'Suspended'
  | 'Resuming';

/** Where a resumed run ends once Started: Completed, Failed (via Failing) or Suspended again (via Suspending). */
export type RunOutcome = 'Completed' | 'Failed' | 'Suspended';

export interface Run {
  ruuid: string;
  org: string;
  state: RunState;
  stateLog: { timestamp: number; new_state: RunState }[];
  label: string;
  createTime: number;
  /** How many times a resume (start) was accepted for this run. */
  resumes: number;
  /** How many times a stop was accepted for this run. */
  stops: number;
  outcome: RunOutcome;
  invoker: string;
  userId: string;
  /** The project path, e.g. `/Acme-Prod/projects/ops`. */
  pathId: string;
  snaplexLabel: string;
  ccLabel: string;
  reason: string;
  documents: number;
  errorDocuments: number;
}

/** Optional fields of a run added with `addRun`. */
export type RunFields = Partial<
  Pick<
    Run,
    | 'label'
    | 'createTime'
    | 'outcome'
    | 'invoker'
    | 'userId'
    | 'pathId'
    | 'snaplexLabel'
    | 'ccLabel'
    | 'reason'
    | 'documents'
    | 'errorDocuments'
  >
>;

/** What a request was, by its route; `other` is anything the stand-in answers 404. */
export type PathKind = 'start' | 'stop' | 'status' | 'list' | 'stats' | 'other';

export interface ReceivedRequest {
  at: number;
  method: string;
  path: string;
  /** The query parameters (the last value of a repeated one). */
  query: Record<string, string>;
  kind: PathKind;
  /** The Basic user name the request authenticated as, when it sent a Basic header. */
  authUser?: string;
  authScheme?: string;
  /** Which credential the request sent: a Basic header or a Bearer token (absent: neither). */
  auth?: 'basic' | 'jwt';
  /**
   * For a Bearer token: the `kid` and `alg` of its header (read before any check), its `sub` once it verified,
   * whether it verified (false too when a fault answered before auth ran), and `tokenFingerprint(token)`.
   * The token itself is not kept: in `headers`, its `authorization` reads `Bearer <fingerprint>`.
   */
  jwt?: { kid?: string; alg?: string; sub?: string; verified: boolean; fingerprint: string };
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

interface FaultScope {
  /** How many matching requests the fault applies to; while set, when omitted. */
  count?: number;
  /** Which kinds of request it applies to. Default: every request, except `unknown-outcome` (start and stop). */
  on?: PathKind | readonly PathKind[];
}

/** A fault applied to the next `count` matching requests (or all while set, when count is omitted). */
export type Fault = FaultScope &
  (
    | { kind: 'latency'; ms: number }
    | { kind: 'hang' }
    | { kind: 'reset' }
    | { kind: 'status'; status: number; retryAfter?: number }
    | { kind: 'non-json' }
    /** A 200 whose JSON body is `bytes` long, sent in 1 KiB chunks without Content-Length. */
    | { kind: 'large'; bytes: number }
    /**
     * The unknown outcome: the request is received and recorded, but its answer never comes (or comes after
     * `answerAfterMs`, longer than the client waits). `applied: true`: the request takes effect as usual (a start moves
     * the run to Resuming, a stop to Stopping) and the late answer is the normal one. `applied: false`: nothing
     * changes (the run stays Suspended) and the late answer is a 504 error.
     */
    | { kind: 'unknown-outcome'; applied: boolean; answerAfterMs?: number }
  );

export interface ApiStats {
  dailyLimit: number;
  dailyCallUsed: number;
  concurrentLimit: number;
  concurrentCallInProgress: number;
  tasks: { task_id: string; task_name: string; task_path: string; task_owner: string; api_count: number }[];
}

/** A JWT issuer registered for an org, as an org admin does in SnapLogic's Admin Manager. */
export interface JwtIssuer {
  /** The `iss` a token must carry. */
  issuerId: string;
  /** Where the stand-in fetches the issuer's public keys (a JWKS), over HTTP. */
  jwksUrl: string;
}

export interface StandInOrg {
  username: string;
  password: string;
  /** More Basic users of the org (user → password): service accounts beside the main one. */
  users?: Readonly<Record<string, string>>;
  /** Basic is disabled: a Basic header answers 403. */
  jwtOnly?: boolean;
  /** The registered JWT issuer; without one, every Bearer token is refused (401). */
  jwtIssuer?: JwtIssuer;
  /** The SnapLogic users a token's `sub` may name. Default: any non-empty `sub`. */
  jwtUsers?: readonly string[];
}

export interface StandInOptions {
  /** Per-org credentials SnapLogic accepts (Basic, and a JWT issuer if registered). Org names are case-sensitive. */
  orgs: Record<string, StandInOrg>;
  /**
   * The `aud` a JWT must carry. SnapLogic documents `https://<controlplane_path>/api/1/rest/public`, i.e. the pod
   * origin followed by the public API path; the default is this stand-in's own origin (`url`, plain http on
   * 127.0.0.1) followed by `/api/1/rest/public`, the value a client configured with `url` as its pod would compute.
   */
  jwtAudience?: string;
  /**
   * How the fetched JWKS are cached (one cache per JWKS URL, via jose's createRemoteJWKSet). A JWKS is refetched on
   * the first token after `cacheMaxAgeMs` (default 1000), so a key removed from it is refused from then on; a token
   * whose `kid` is not in the cached set triggers a refetch unless the last fetch was less than `cooldownMs` ago
   * (default 100), so a newly published key is accepted at once (or after the cooldown). A fetch times out after
   * `timeoutMs` (default 2000); an unreachable or invalid JWKS refuses the token (401). Changing an org's issuer with
   * `setJwtIssuer` drops the cache of the URLs involved.
   */
  jwks?: { cacheMaxAgeMs?: number; cooldownMs?: number; timeoutMs?: number };
  /** Status for a start, stop or status read of an unknown ruuid. Undocumented upstream; 404 assumed. */
  unknownRuuidStatus?: number;
  /** Status for resuming a run that is not Suspended. Undocumented upstream; 409 assumed. */
  notSuspendedStatus?: number;
  /** Status for stopping a run that already finished (Completed, Failed, Stopped). Undocumented; 409 assumed. */
  finishedStatus?: number;
  /** ms between automatic state steps (default 50). 0 keeps runs where they are until `advance()`. */
  transitionMs?: number;
  /** Largest injected latency accepted, ms. The real server times out after 15 min. */
  maxLatencyMs?: number;
  /** The Triggered-Task meters the api-stats routes report. */
  apiStats?: Partial<ApiStats>;
  /**
   * Benchmark mode: every org in the path accepts this one credential, every ruuid resumes (200) and stays
   * Suspended, a status read answers a fixed Suspended run, and nothing is recorded, so a load test measures the
   * gateway, not the stand-in.
   */
  benchmark?: { username: string; password: string };
  port?: number;
  /** Where it listens (default 127.0.0.1); the dev command (test/dev/stand-in.ts) takes 0.0.0.0 in a container. */
  host?: string;
  /**
   * Serves the dev command's own routes beside SnapLogic's (never part of SnapLogic's API): `GET /healthz`, and
   * `/dev/runs` to add suspended runs (`POST`, JSON `{ "org": "Acme-Prod", "count": 1 }`) or list every run (`GET`).
   */
  operatorRoutes?: boolean;
}

interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

const BASE = '/api/1/rest/public/runtime';
const FINISHED: readonly RunState[] = ['Completed', 'Failed', 'Stopped'];
const HOUR = 3_600_000;
const JWT_ALGORITHMS = ['RS256', 'ES256'];

/** How a recorded Bearer token is named instead of its text: `sha256:` + the first 16 hex of its SHA-256. */
export function tokenFingerprint(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 16)}`;
}

/** What a request's Authorization header carries. */
type Credential = { scheme: 'basic'; user: string; password: string } | { scheme: 'bearer'; token: string };

function parseAuthorization(header: string): Credential | undefined {
  const [scheme, value] = header.split(' ', 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    return {
      scheme: 'basic',
      user: i >= 0 ? decoded.slice(0, i) : decoded,
      password: i >= 0 ? decoded.slice(i + 1) : '',
    };
  }
  if (scheme?.toLowerCase() === 'bearer') return { scheme: 'bearer', token: header.slice(scheme.length + 1) };
  return undefined;
}

/** The `kid` and `alg` of a token's header, unverified; empty when it is not a JWT. */
function peekHeader(token: string): { kid?: string; alg?: string } {
  try {
    const { kid, alg } = decodeProtectedHeader(token);
    return { ...(typeof kid === 'string' ? { kid } : {}), ...(typeof alg === 'string' ? { alg } : {}) };
  } catch {
    return {};
  }
}

/** A SnapLogic runtime id: `<24 hex>_<uuid>`. */
export function newRuuid(): string {
  return `${randomBytes(12).toString('hex')}_${randomUUID()}`;
}

function errorEnvelope(status: number, message: string): string {
  return JSON.stringify({ response_map: { error_list: [{ message }] }, http_status_code: status });
}

function ok(response_map: unknown): Reply {
  return { status: 200, body: JSON.stringify({ response_map, http_status_code: 200 }) };
}

function fail(status: number, message: string): Reply {
  return { status, body: errorEnvelope(status, message) };
}

/** SnapLogic's timestamp form: `2021-06-11T21:03:45.685000+00:00`. */
function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000+00:00');
}

/** Where a run goes next by itself, if anywhere. */
function nextState(run: Run): RunState | undefined {
  switch (run.state) {
    case 'Queued':
      return 'Prepared';
    case 'Prepared':
    case 'Resuming':
      return 'Started';
    case 'Started':
      return run.outcome === 'Completed' ? 'Completed' : run.outcome === 'Failed' ? 'Failing' : 'Suspending';
    case 'Failing':
      return 'Failed';
    case 'Suspending':
      return 'Suspended';
    case 'Stopping':
      return 'Stopped';
    default:
      return undefined;
  }
}

/** The route a path names, with its parts; `other` for anything not served. */
function classify(method: string, pathname: string): { kind: PathKind; parts: string[] } {
  if (!pathname.startsWith(`${BASE}/`)) return { kind: 'other', parts: [] };
  let parts: string[];
  try {
    parts = pathname
      .slice(BASE.length + 1)
      .split('/')
      .map(decodeURIComponent);
  } catch {
    return { kind: 'other', parts: [] };
  }
  if (parts.some((p) => p === '')) return { kind: 'other', parts };
  const [first, , third] = parts;
  if (first === 'start' || first === 'stop') {
    return { kind: method === 'POST' && parts.length === 3 ? first : 'other', parts };
  }
  if (method !== 'GET') return { kind: 'other', parts };
  if (first === 'api-stats') {
    const ok = parts.length === 2 || (parts.length === 3 && (third === 'daily' || third === 'concurrent'));
    return { kind: ok ? 'stats' : 'other', parts };
  }
  if (parts.length === 1) return { kind: 'list', parts };
  if (parts.length === 2) return { kind: 'status', parts };
  return { kind: 'other', parts };
}

/** An integer query parameter within [min, max], `fallback` when absent, or an error naming it. */
function intParam(
  query: URLSearchParams,
  name: string,
  fallback: number | undefined,
  min: number,
  max: number,
): number | undefined | Reply {
  const raw = query.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) return fail(400, `Invalid value for ${name}: ${raw}`);
  return n;
}

export class SnapLogicStandIn {
  readonly received: ReceivedRequest[] = [];
  private readonly runs = new Map<string, Run>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly runTimers = new Map<Run, Set<NodeJS.Timeout>>();
  private fault: (Fault & { remaining: number }) | undefined;
  private readonly jwksSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  /** Runs when a request arrives, before it is answered (tests use it to look at the world at that instant). */
  onRequest: ((req: ReceivedRequest) => Promise<void> | void) | undefined;
  private listening!: Listening;
  port = 0;

  private constructor(private readonly options: StandInOptions) {}

  static async start(options: StandInOptions): Promise<SnapLogicStandIn> {
    const standIn = new SnapLogicStandIn(options);
    const server = createServer((req, res) => void standIn.handle(req, res));
    standIn.listening = await listenOnLoopback(server, options.port, options.host);
    standIn.port = standIn.listening.port;
    return standIn;
  }

  /** The pod origin to put in snapgate's config. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The `aud` a JWT must carry (option `jwtAudience`, default `${url}/api/1/rest/public`). */
  get jwtAudience(): string {
    return this.options.jwtAudience ?? `${this.url}/api/1/rest/public`;
  }

  /**
   * Adds a run in `state` (Suspended by default) and returns its ruuid. A run added in a moving state (e.g. Started)
   * stays there until a request or `advance()` moves it.
   */
  addRun(org: string, state: RunState = 'Suspended', ruuid = newRuuid(), fields: RunFields = {}): string {
    const createTime = fields.createTime ?? Date.now();
    this.runs.set(`${org}/${ruuid}`, {
      ruuid,
      org,
      state,
      stateLog: [{ timestamp: createTime, new_state: state }],
      label: 'resumable-pipeline',
      createTime,
      resumes: 0,
      stops: 0,
      outcome: 'Completed',
      invoker: 'scheduled',
      userId: 'svc@example.com',
      pathId: `/${org}/projects/default`,
      snaplexLabel: 'cloud-plex',
      ccLabel: 'cloud-plex-node-1',
      reason: '',
      documents: 0,
      errorDocuments: 0,
      ...fields,
    });
    return ruuid;
  }

  run(org: string, ruuid: string): Run | undefined {
    return this.runs.get(`${org}/${ruuid}`);
  }

  /** Every run of an org, newest first. */
  runsOf(org: string): Run[] {
    return [...this.runs.values()].filter((r) => r.org === org).sort((a, b) => b.createTime - a.createTime);
  }

  /** Forces a run into `state` (logged), cancelling its pending steps; it stays there until moved again. */
  setState(org: string, ruuid: string, state: RunState): void {
    const run = this.mustRun(org, ruuid);
    this.cancelSteps(run);
    this.log(run, state);
  }

  /**
   * Moves a run one step along its state machine now (Resuming → Started → Completed, Stopping → Stopped, ...) and
   * returns its new state; throws when the run waits for a request (Suspended) or has finished.
   */
  advance(org: string, ruuid: string): RunState {
    const run = this.mustRun(org, ruuid);
    const next = nextState(run);
    if (next === undefined) throw new Error(`run ${org}/${ruuid} is ${run.state}: no next state`);
    this.move(run, next);
    return run.state;
  }

  /** Changes the credentials SnapLogic accepts for an org (e.g. a password that expired). */
  setCredential(org: string, username: string, password: string): void {
    const entry = this.options.orgs[org];
    this.options.orgs[org] = { ...entry, username, password };
  }

  /** Adds (or, with undefined, removes) one more Basic user of an org, beside its main credential. */
  setUser(org: string, username: string, password: string | undefined): void {
    const entry = this.mustOrg(org);
    const users = { ...entry.users };
    if (password === undefined) delete users[username];
    else users[username] = password;
    this.options.orgs[org] = { ...entry, users };
  }

  /**
   * Registers, changes or (with undefined) removes an org's JWT issuer, and optionally the users a token may name
   * (undefined: any); the cached JWKS of the old and new URL are dropped, so the change applies to the next call.
   */
  setJwtIssuer(org: string, issuer: JwtIssuer | undefined, users?: readonly string[]): void {
    const entry = this.mustOrg(org);
    for (const url of [entry.jwtIssuer?.jwksUrl, issuer?.jwksUrl]) if (url !== undefined) this.jwksSets.delete(url);
    const { jwtIssuer: _issuer, jwtUsers: _users, ...rest } = entry;
    this.options.orgs[org] = {
      ...rest,
      ...(issuer !== undefined ? { jwtIssuer: { ...issuer } } : {}),
      ...(users !== undefined ? { jwtUsers: [...users] } : {}),
    };
  }

  /** Turns Basic off (403) or back on for an org. */
  setJwtOnly(org: string, jwtOnly: boolean): void {
    this.options.orgs[org] = { ...this.mustOrg(org), jwtOnly };
  }

  setFault(fault: Fault | undefined): void {
    this.fault = fault === undefined ? undefined : { ...fault, remaining: fault.count ?? Number.POSITIVE_INFINITY };
  }

  /** Every start call received. */
  startCalls(): ReceivedRequest[] {
    return this.calls('start');
  }

  /** Every stop call received. */
  stopCalls(): ReceivedRequest[] {
    return this.calls('stop');
  }

  /** Requests received of one kind (all when omitted), optionally only those naming `ruuid` in their path. */
  calls(kind?: PathKind, ruuid?: string): ReceivedRequest[] {
    return this.received.filter(
      (r) => (kind === undefined || r.kind === kind) && (ruuid === undefined || r.path.split('/').includes(ruuid)),
    );
  }

  /** How many requests of each kind were received. */
  callCounts(): Record<PathKind, number> {
    const counts: Record<PathKind, number> = { start: 0, stop: 0, status: 0, list: 0, stats: 0, other: 0 };
    for (const r of this.received) counts[r.kind] += 1;
    return counts;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.runTimers.clear();
    await this.listening.close();
  }

  private mustOrg(org: string): StandInOrg {
    const entry = this.orgEntry(org);
    if (entry === undefined) throw new Error(`no org ${org}`);
    return entry;
  }

  private orgEntry(org: string): StandInOrg | undefined {
    return Object.hasOwn(this.options.orgs, org) ? this.options.orgs[org] : undefined;
  }

  private mustRun(org: string, ruuid: string): Run {
    const run = this.run(org, ruuid);
    if (run === undefined) throw new Error(`no run ${org}/${ruuid}`);
    return run;
  }

  private later(ms: number, fn: () => void, run?: Run): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (run !== undefined) this.runTimers.get(run)?.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    if (run !== undefined) {
      let set = this.runTimers.get(run);
      if (set === undefined) this.runTimers.set(run, (set = new Set()));
      set.add(t);
    }
  }

  private cancelSteps(run: Run): void {
    for (const t of this.runTimers.get(run) ?? []) {
      clearTimeout(t);
      this.timers.delete(t);
    }
    this.runTimers.delete(run);
  }

  private log(run: Run, state: RunState): void {
    run.state = state;
    run.stateLog.push({ timestamp: Date.now(), new_state: state });
  }

  /** Moves a run to `state` and schedules its next automatic step. */
  private move(run: Run, state: RunState): void {
    this.cancelSteps(run);
    this.log(run, state);
    const step = this.options.transitionMs ?? 50;
    const next = nextState(run);
    if (step > 0 && next !== undefined) this.later(step, () => this.move(run, next), run);
  }

  private takeFault(kind: PathKind): (Fault & { remaining: number }) | undefined {
    const fault = this.fault;
    if (fault === undefined || fault.remaining <= 0) return undefined;
    const on = fault.on ?? (fault.kind === 'unknown-outcome' ? ['start', 'stop'] : undefined);
    if (on !== undefined && !(typeof on === 'string' ? on === kind : on.includes(kind))) return undefined;
    fault.remaining -= 1;
    return fault;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.options.benchmark !== undefined) return this.benchmark(req, res, this.options.benchmark);
    if (this.options.operatorRoutes && (await this.operatorRoute(req, res))) return;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? '';
    const { kind, parts } = classify(method, url.pathname);
    const auth = req.headers.authorization ?? '';
    const [scheme] = auth.split(' ', 1);
    const credential = parseAuthorization(auth);
    const headers = { ...req.headers };
    let jwt: ReceivedRequest['jwt'];
    if (credential?.scheme === 'bearer') {
      const fingerprint = tokenFingerprint(credential.token);
      jwt = { ...peekHeader(credential.token), verified: false, fingerprint };
      headers.authorization = `${scheme} ${fingerprint}`;
    }
    const record: ReceivedRequest = {
      at: Date.now(),
      method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      kind,
      ...(credential?.scheme === 'basic' ? { authUser: credential.user, auth: 'basic' as const } : {}),
      ...(scheme ? { authScheme: scheme } : {}),
      ...(jwt !== undefined ? { auth: 'jwt' as const, jwt } : {}),
      headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    this.received.push(record);
    await this.onRequest?.(record);

    const fault = this.takeFault(kind);
    if (fault !== undefined) {
      switch (fault.kind) {
        case 'hang':
          return; // never answer; the socket is destroyed on close()
        case 'reset':
          req.socket.destroy();
          return;
        case 'latency':
          await new Promise((r) => setTimeout(r, Math.min(fault.ms, this.options.maxLatencyMs ?? 900_000)));
          break;
        case 'status':
          return this.send(
            res,
            fail(fault.status, 'Injected failure'),
            fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {},
          );
        case 'non-json':
          res.writeHead(502, { 'content-type': 'text/html' });
          res.end('<html><body>Bad gateway</body></html>');
          return;
        case 'large': {
          res.writeHead(200, { 'content-type': 'application/json', 'x-sl-statuscode': '200' });
          const body = JSON.stringify({ padding: 'x'.repeat(Math.max(0, fault.bytes - 14)) });
          for (let i = 0; i < body.length; i += 1024) res.write(body.slice(i, i + 1024));
          res.end();
          return;
        }
        case 'unknown-outcome': {
          const reply = fault.applied
            ? await this.route(kind, parts, url.searchParams, credential, record)
            : fail(504, 'Request timed out');
          if (fault.answerAfterMs !== undefined) this.later(fault.answerAfterMs, () => this.send(res, reply));
          return; // otherwise never answer; the socket is destroyed on close()
        }
      }
    }
    this.send(res, await this.route(kind, parts, url.searchParams, credential, record));
  }

  /** The routes of `operatorRoutes`; false (nothing read or answered) for any other path. */
  private async operatorRoute(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    if (url.pathname !== '/healthz' && url.pathname !== '/dev/runs') return false;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (url.pathname === '/healthz') {
      json(200, { status: 'ok', orgs: Object.keys(this.options.orgs) });
      return true;
    }
    const runs = (list: Run[]) =>
      list.map((r) => ({ org: r.org, ruuid: r.ruuid, state: r.state, label: r.label, resumes: r.resumes }));
    if (req.method === 'GET') {
      json(200, { runs: runs([...this.runs.values()]) });
      return true;
    }
    if (req.method !== 'POST') {
      json(405, { error: 'GET or POST /dev/runs' });
      return true;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 65_536) {
        json(413, { error: 'the body must be at most 65536 bytes' });
        return true;
      }
      chunks.push(chunk as Buffer);
    }
    let asked: { org?: unknown; count?: unknown; label?: unknown };
    try {
      const text = Buffer.concat(chunks).toString('utf8');
      asked = text.trim() === '' ? {} : (JSON.parse(text) as typeof asked);
    } catch {
      json(400, { error: 'the body must be JSON: { "org": "<org>", "count": 1 }' });
      return true;
    }
    const orgs = Object.keys(this.options.orgs);
    const org = asked.org ?? (orgs.length === 1 ? orgs[0] : undefined);
    const count = asked.count ?? 1;
    if (typeof org !== 'string' || !orgs.includes(org)) {
      json(400, { error: `org must be one of ${orgs.join(', ')}` });
      return true;
    }
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 100) {
      json(400, { error: 'count must be a whole number from 1 to 100' });
      return true;
    }
    const label = typeof asked.label === 'string' && asked.label !== '' ? asked.label : 'resumable-pipeline';
    const added = Array.from({ length: count }, () => this.addRun(org, 'Suspended', undefined, { label }));
    json(201, { runs: runs(added.map((ruuid) => this.run(org, ruuid)!)) });
    return true;
  }

  private benchmark(req: IncomingMessage, res: ServerResponse, cred: { username: string; password: string }): void {
    req.resume();
    const expected = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    const { kind, parts } = classify(req.method ?? '', new URL(req.url ?? '/', 'http://stand-in').pathname);
    const authorized = req.headers.authorization === expected;
    let status = 200;
    let body = '{"response_map":{},"http_status_code":200}';
    if (!authorized || (kind !== 'start' && kind !== 'status')) {
      status = authorized ? 404 : 401;
      body = errorEnvelope(status, authorized ? 'Not found' : 'Authentication required');
    } else if (kind === 'status') {
      body = JSON.stringify({
        response_map: { ruuid: parts[1], state: 'Suspended', reason: '', label: 'resumable-pipeline' },
        http_status_code: 200,
      });
    }
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-sl-statuscode': String(status),
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  private send(res: ServerResponse, reply: Reply, headers: Record<string, string> = {}): void {
    if (res.destroyed || res.writableEnded) return; // a late answer to a client that gave up
    res.writeHead(reply.status, {
      'content-type': 'application/json',
      'x-sl-statuscode': String(reply.status),
      'set-cookie': 'SLSESSION=stand-in-session; HttpOnly',
      ...reply.headers,
      ...headers,
    });
    res.end(reply.body);
  }

  /** Generic, detail-free 401 for any auth failure, as documented; 403 when Basic is disabled for the org. */
  private async authFailure(
    orgName: string,
    credential: Credential | undefined,
    record: ReceivedRequest,
  ): Promise<Reply | undefined> {
    const org = this.orgEntry(orgName);
    const denied = fail(401, 'Authentication required');
    if (org === undefined || credential === undefined) return denied;
    if (credential.scheme === 'bearer') {
      const sub = await this.verifyJwt(orgName, org, credential.token);
      if (sub === undefined) return denied;
      record.jwt = { ...record.jwt!, sub, verified: true };
      return undefined;
    }
    if (org.jwtOnly) return fail(403, 'Basic authentication is disabled for this environment');
    const password = credential.user === org.username ? org.password : org.users?.[credential.user];
    if (password === undefined || credential.password !== password) return denied;
    return undefined;
  }

  /** The token's `sub` when it passes every check of the org's registered issuer; undefined otherwise. */
  private async verifyJwt(orgName: string, org: StandInOrg, token: string): Promise<string | undefined> {
    const issuer = org.jwtIssuer;
    if (issuer === undefined) return undefined;
    try {
      const { payload } = await jwtVerify(token, this.jwksFor(issuer.jwksUrl), {
        issuer: issuer.issuerId,
        audience: this.jwtAudience,
        algorithms: JWT_ALGORITHMS,
        requiredClaims: ['iss', 'aud', 'exp', 'iat', 'sub', 'org'],
      });
      const sub = payload.sub;
      if (typeof sub !== 'string' || sub === '' || payload.org !== orgName) return undefined;
      if (org.jwtUsers !== undefined && !org.jwtUsers.includes(sub)) return undefined;
      return sub;
    } catch {
      return undefined;
    }
  }

  private jwksFor(jwksUrl: string): ReturnType<typeof createRemoteJWKSet> {
    let set = this.jwksSets.get(jwksUrl);
    if (set === undefined) {
      const o = this.options.jwks ?? {};
      set = createRemoteJWKSet(new URL(jwksUrl), {
        cacheMaxAge: o.cacheMaxAgeMs ?? 1_000,
        cooldownDuration: o.cooldownMs ?? 100,
        timeoutDuration: o.timeoutMs ?? 2_000,
      });
      this.jwksSets.set(jwksUrl, set);
    }
    return set;
  }

  private async route(
    kind: PathKind,
    parts: string[],
    query: URLSearchParams,
    credential: Credential | undefined,
    record: ReceivedRequest,
  ): Promise<Reply> {
    if (kind === 'other') return fail(404, 'Not found');
    const org = kind === 'list' || kind === 'status' ? parts[0]! : parts[1]!;
    const denied = await this.authFailure(org, credential, record);
    if (denied !== undefined) return denied;
    switch (kind) {
      case 'start':
      case 'stop':
        return this.write(kind, org, parts[2]!);
      case 'list':
        return this.list(org, query);
      case 'status':
        return this.status(org, parts[1]!, query);
      case 'stats':
        return this.stats(org, parts[2] as 'daily' | 'concurrent' | undefined, query);
    }
  }

  private unknownRuuid(ruuid: string): Reply {
    return fail(this.options.unknownRuuidStatus ?? 404, `Runtime ${ruuid} not found`);
  }

  private write(kind: 'start' | 'stop', org: string, ruuid: string): Reply {
    const run = this.run(org, ruuid);
    if (run === undefined) return this.unknownRuuid(ruuid);
    if (kind === 'start') {
      if (run.state !== 'Suspended') {
        return fail(this.options.notSuspendedStatus ?? 409, `Runtime ${ruuid} is ${run.state}, not Suspended`);
      }
      run.resumes += 1;
      this.move(run, 'Resuming');
    } else {
      if (FINISHED.includes(run.state)) {
        return fail(this.options.finishedStatus ?? 409, `Runtime ${ruuid} already finished (${run.state})`);
      }
      run.stops += 1;
      if (run.state !== 'Stopping') this.move(run, 'Stopping');
    }
    // Start: the newest docs show an empty response_map; stop: "status code only" (the same minimal body here).
    return ok({});
  }

  private list(org: string, query: URLSearchParams): Reply {
    const limit = intParam(query, 'limit', 10, 1, 1000);
    const offset = intParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const lastHours = intParam(query, 'last_hours', 1, 1, 1080);
    const start = intParam(query, 'start', undefined, 0, Number.MAX_SAFE_INTEGER);
    const end = intParam(query, 'end', undefined, 0, Number.MAX_SAFE_INTEGER);
    for (const p of [limit, offset, lastHours, start, end]) if (typeof p === 'object') return p;
    const now = Date.now();
    const to = (end as number | undefined) ?? now;
    const from = (start as number | undefined) ?? to - (lastHours as number) * HOUR;
    const states = query.get('state')?.split(',');
    const equals = (name: string, value: string) => query.get(name) === null || query.get(name) === value;
    const projectPath = query.get('project_path');
    const matching = this.runsOf(org).filter(
      (r) =>
        r.createTime <= to &&
        r.stateLog.at(-1)!.timestamp >= from &&
        (states === undefined || states.includes(r.state)) &&
        equals('pipe_name', r.label) &&
        equals('invoker', r.invoker) &&
        equals('user_id', r.userId) &&
        equals('plex_label', r.snaplexLabel) &&
        equals('cc_label', r.ccLabel) &&
        (projectPath === null || r.pathId === projectPath || r.pathId.startsWith(`${projectPath}/`)),
    );
    const o = offset as number;
    const entries = matching.slice(o, o + (limit as number)).map((r) => this.entry(r));
    return ok({ entries, total: matching.length, limit, offset });
  }

  private status(org: string, ruuid: string, query: URLSearchParams): Reply {
    const level = query.get('level') ?? 'detail';
    if (level !== 'summary' && level !== 'detail') return fail(400, `Invalid value for level: ${level}`);
    const run = this.run(org, ruuid);
    if (run === undefined) return this.unknownRuuid(ruuid);
    const last = run.stateLog.at(-1)!.timestamp;
    const durationMs = (FINISHED.includes(run.state) ? last : Date.now()) - run.createTime;
    const summary = {
      ruuid: run.ruuid,
      instance_id: run.ruuid,
      root_ruuid: run.ruuid,
      parent_ruuid: null,
      state: run.state,
      state_log: run.stateLog.map((s) => ({ timestamp: iso(s.timestamp), new_state: s.new_state })),
      reason: run.reason,
      error_list: run.reason !== '' ? [{ message: run.reason }] : [],
      warning_list: [],
      label: run.label,
      path_id: run.pathId,
      create_time: iso(run.createTime),
      time_stamp: iso(last),
      duration: Math.round(durationMs / 1000),
      duration_ms: durationMs,
      user_id: run.userId,
      invoker: run.invoker,
      mode: 'standard',
      snaplex_label: run.snaplexLabel,
      runtime_label: run.snaplexLabel,
      restart_attempts: run.resumes,
      documents_count: run.documents,
      error_documents_count: run.errorDocuments,
    };
    if (level === 'summary') return ok(summary);
    return ok({
      ...summary,
      session_id: `session-${run.ruuid.slice(0, 24)}`,
      export_link: `${BASE}/${encodeURIComponent(org)}/${run.ruuid}/export`,
      snap_map: {
        'snap-1': { label: 'Source', state: run.state, documents: run.documents },
        'snap-2': { label: 'Target', state: run.state, error_documents: run.errorDocuments },
      },
    });
  }

  private stats(org: string, form: 'daily' | 'concurrent' | undefined, query: URLSearchParams): Reply {
    const s: ApiStats = {
      dailyLimit: 10_000,
      dailyCallUsed: 0,
      concurrentLimit: 10,
      concurrentCallInProgress: 0,
      tasks: [],
      ...this.options.apiStats,
    };
    const at = query.get('date_time') ?? new Date().toISOString().slice(0, 19);
    if (form === 'daily') {
      const top = [...s.tasks].sort((a, b) => b.api_count - a.api_count).slice(0, 10);
      return ok({
        date: query.get('date') ?? at.slice(0, 10),
        organization: org,
        top_tasks: top,
        task_count: s.tasks.length,
        daily_call_used: s.dailyCallUsed,
        daily_call_available: Math.max(0, s.dailyLimit - s.dailyCallUsed),
      });
    }
    if (form === 'concurrent') {
      return ok({
        organization: org,
        time_stamp: at,
        concurrent_call_in_progress: s.concurrentCallInProgress,
        tasks: s.tasks,
      });
    }
    return ok({
      organization: org,
      daily_limit: s.dailyLimit,
      daily_call_used: s.dailyCallUsed,
      concurrent_limit: s.concurrentLimit,
      concurrent_call_in_progress: s.concurrentCallInProgress,
    });
  }

  private entry(run: Run): Record<string, unknown> {
    const last = run.stateLog.at(-1)!.timestamp;
    const durationMs = (FINISHED.includes(run.state) ? last : Date.now()) - run.createTime;
    return {
      pipe_id: run.ruuid.slice(25),
      has_lints: false,
      documents: run.documents,
      user_id: run.userId,
      ccid: run.ruuid.slice(0, 24),
      child_has_lints: false,
      runtime_path_id: `${run.org}/rt/cloud/${run.snaplexLabel}`,
      parent_ruuid: null,
      subpipes: {},
      state_timestamp: iso(last),
      error_documents: run.errorDocuments,
      label: run.label,
      path_id: run.pathId,
      state: run.state,
      create_time: iso(run.createTime),
      invoker: run.invoker,
      duration: Math.round(durationMs / 1000),
      cc_label: run.ccLabel,
      id: run.ruuid,
      runtime_label: run.snaplexLabel,
      mode: 'standard',
    };
  }
}
