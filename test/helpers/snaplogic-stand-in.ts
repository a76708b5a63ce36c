// A local stand-in of SnapLogic's public runtime API (shared/docs/snaplogic-api.md) for tests, demo and benchmark.
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
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

export interface Run {
  ruuid: string;
  org: string;
  state: RunState;
  stateLog: { timestamp: number; new_state: RunState }[];
  label: string;
  createTime: number;
  /** How many times a resume (start) was accepted for this run. */
  resumes: number;
}

export interface ReceivedRequest {
  at: number;
  method: string;
  path: string;
  /** The Basic user name the request authenticated as, when it sent a Basic header. */
  authUser?: string;
  authScheme?: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A fault applied to the next `count` requests (or all while set, when count is omitted). */
export type Fault =
  | { kind: 'latency'; ms: number; count?: number }
  | { kind: 'hang'; count?: number }
  | { kind: 'reset'; count?: number }
  | { kind: 'status'; status: number; count?: number; retryAfter?: number }
  | { kind: 'non-json'; count?: number }
  /** A 200 whose JSON body is `bytes` long, sent in 1 KiB chunks without Content-Length. */
  | { kind: 'large'; bytes: number; count?: number };

export interface StandInOptions {
  /** Per-org Basic credentials SnapLogic accepts. Org names are case-sensitive. */
  orgs: Record<string, { username: string; password: string; jwtOnly?: boolean }>;
  /** Status for a start/stop on an unknown ruuid. Undocumented upstream; 404 assumed. */
  unknownRuuidStatus?: number;
  /** Status for resuming a run that is not Suspended. Undocumented upstream; 409 assumed. */
  notSuspendedStatus?: number;
  /** ms from Resuming to Started, and again from Started to Completed. 0 keeps runs in Resuming. */
  transitionMs?: number;
  /** Largest injected latency accepted, ms. The real server times out after 15 min. */
  maxLatencyMs?: number;
  /**
   * Benchmark mode: every org in the path accepts this one credential, every ruuid resumes (200)
   * and stays Suspended, and nothing is recorded, so a load test measures the gateway, not the stand-in.
   */
  benchmark?: { username: string; password: string };
  port?: number;
}

const BASE = '/api/1/rest/public/runtime';

/** A SnapLogic runtime id: `<24 hex>_<uuid>`. */
export function newRuuid(): string {
  return `${randomBytes(12).toString('hex')}_${randomUUID()}`;
}

function errorEnvelope(status: number, message: string): string {
  return JSON.stringify({ response_map: { error_list: [{ message }] }, http_status_code: status });
}

export class SnapLogicStandIn {
  readonly received: ReceivedRequest[] = [];
  private readonly runs = new Map<string, Run>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private fault: (Fault & { remaining: number }) | undefined;
  /** Runs when a request arrives, before it is answered (tests use it to look at the world at that instant). */
  onRequest: ((req: ReceivedRequest) => Promise<void> | void) | undefined;
  private listening!: Listening;
  port = 0;

  private constructor(private readonly options: StandInOptions) {}

  static async start(options: StandInOptions): Promise<SnapLogicStandIn> {
    const standIn = new SnapLogicStandIn(options);
    const server = createServer((req, res) => void standIn.handle(req, res));
    standIn.listening = await listenOnLoopback(server, options.port);
    standIn.port = standIn.listening.port;
    return standIn;
  }

  /** The pod origin to put in snapgate's config. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Adds a run in `state` (Suspended by default) and returns its ruuid. */
  addRun(org: string, state: RunState = 'Suspended', ruuid = newRuuid()): string {
    const now = Date.now();
    this.runs.set(`${org}/${ruuid}`, {
      ruuid,
      org,
      state,
      stateLog: [{ timestamp: now, new_state: state }],
      label: 'resumable-pipeline',
      createTime: now,
      resumes: 0,
    });
    return ruuid;
  }

  run(org: string, ruuid: string): Run | undefined {
    return this.runs.get(`${org}/${ruuid}`);
  }

  /** Changes the credentials SnapLogic accepts for an org (e.g. a password that expired). */
  setCredential(org: string, username: string, password: string): void {
    const entry = this.options.orgs[org];
    this.options.orgs[org] = { ...entry, username, password };
  }

  setFault(fault: Fault | undefined): void {
    this.fault = fault === undefined ? undefined : { ...fault, remaining: fault.count ?? Number.POSITIVE_INFINITY };
  }

  /** Requests received for a path prefix (default: every start call). */
  startCalls(): ReceivedRequest[] {
    return this.received.filter((r) => r.method === 'POST' && r.path.startsWith(`${BASE}/start/`));
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.listening.close();
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private transition(run: Run, state: RunState): void {
    run.state = state;
    run.stateLog.push({ timestamp: Date.now(), new_state: state });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.options.benchmark !== undefined) return this.benchmark(req, res, this.options.benchmark);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const auth = req.headers.authorization ?? '';
    const [scheme, value] = auth.split(' ', 2);
    let authUser: string | undefined;
    let authPassword: string | undefined;
    if (scheme?.toLowerCase() === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      authUser = i >= 0 ? decoded.slice(0, i) : decoded;
      authPassword = i >= 0 ? decoded.slice(i + 1) : '';
    }
    this.received.push({
      at: Date.now(),
      method: req.method ?? '',
      path: url.pathname,
      ...(authUser !== undefined ? { authUser } : {}),
      ...(scheme ? { authScheme: scheme } : {}),
      headers: { ...req.headers },
      body: Buffer.concat(chunks).toString('utf8'),
    });
    await this.onRequest?.(this.received.at(-1)!);

    const fault = this.fault;
    if (fault !== undefined && fault.remaining > 0) {
      fault.remaining -= 1;
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
            fault.status,
            errorEnvelope(fault.status, 'Injected failure'),
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
      }
    }
    this.route(req.method ?? '', url, authUser, authPassword, res);
  }

  private benchmark(req: IncomingMessage, res: ServerResponse, cred: { username: string; password: string }): void {
    req.resume();
    const expected = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    const ok = req.method === 'POST' && req.url?.startsWith(`${BASE}/start/`) && req.headers.authorization === expected;
    const status = ok ? 200 : 401;
    const body = ok ? '{"response_map":{},"http_status_code":200}' : errorEnvelope(401, 'Authentication required');
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-sl-statuscode': String(status),
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  private send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-sl-statuscode': String(status),
      'set-cookie': 'SLSESSION=stand-in-session; HttpOnly',
      ...headers,
    });
    res.end(body);
  }

  private route(
    method: string,
    url: URL,
    user: string | undefined,
    password: string | undefined,
    res: ServerResponse,
  ): void {
    if (!url.pathname.startsWith(`${BASE}/`)) return this.send(res, 404, errorEnvelope(404, 'Not found'));
    const parts = url.pathname
      .slice(BASE.length + 1)
      .split('/')
      .map(decodeURIComponent);
    const orgOf = (name: string | undefined) => (name !== undefined ? this.options.orgs[name] : undefined);

    // Generic, detail-free 401 for any auth failure, as documented; 403 when Basic is disabled.
    const authorized = (orgName: string | undefined): boolean => {
      const org = orgOf(orgName);
      if (org?.jwtOnly && user !== undefined) {
        this.send(res, 403, errorEnvelope(403, 'Basic authentication is disabled for this environment'));
        return false;
      }
      if (org === undefined || user !== org.username || password !== org.password) {
        this.send(res, 401, errorEnvelope(401, 'Authentication required'));
        return false;
      }
      return true;
    };

    const [first, second, third] = parts;
    if ((first === 'start' || first === 'stop') && parts.length === 3 && method === 'POST') {
      if (!authorized(second)) return;
      const run = this.run(second!, third!);
      if (run === undefined) {
        const status = this.options.unknownRuuidStatus ?? 404;
        return this.send(res, status, errorEnvelope(status, `Runtime ${third} not found`));
      }
      if (first === 'start') {
        if (run.state !== 'Suspended') {
          const status = this.options.notSuspendedStatus ?? 409;
          return this.send(res, status, errorEnvelope(status, `Runtime ${run.ruuid} is ${run.state}, not Suspended`));
        }
        run.resumes += 1;
        this.transition(run, 'Resuming');
        const step = this.options.transitionMs ?? 50;
        if (step > 0) {
          this.later(step, () => {
            this.transition(run, 'Started');
            this.later(step, () => this.transition(run, 'Completed'));
          });
        }
      } else {
        if (['Completed', 'Failed', 'Stopped'].includes(run.state)) {
          return this.send(res, 409, errorEnvelope(409, `Runtime ${run.ruuid} already finished`));
        }
        this.transition(run, 'Stopping');
        this.later(this.options.transitionMs ?? 50, () => this.transition(run, 'Stopped'));
      }
      return this.send(res, 200, JSON.stringify({ response_map: {}, http_status_code: 200 }));
    }
    if (method !== 'GET') return this.send(res, 404, errorEnvelope(404, 'Not found'));
    if (first === 'api-stats' && second !== undefined && parts.length <= 3) {
      if (!authorized(second)) return;
      const response_map = {
        organization: second,
        daily_limit: 10_000,
        daily_call_used: 0,
        concurrent_limit: 10,
        concurrent_call_in_progress: 0,
      };
      return this.send(res, 200, JSON.stringify({ response_map, http_status_code: 200 }));
    }
    if (parts.length === 1 && first) {
      if (!authorized(first)) return;
      const entries = [...this.runs.values()].filter((r) => r.org === first).map((r) => this.entry(r));
      const limit = Number(url.searchParams.get('limit') ?? 10);
      const offset = Number(url.searchParams.get('offset') ?? 0);
      const response_map = { entries: entries.slice(offset, offset + limit), total: entries.length, limit, offset };
      return this.send(res, 200, JSON.stringify({ response_map, http_status_code: 200 }));
    }
    if (parts.length === 2 && first) {
      if (!authorized(first)) return;
      const run = this.run(first, second!);
      if (run === undefined) return this.send(res, 404, errorEnvelope(404, `Runtime ${second} not found`));
      const response_map = {
        ...this.entry(run),
        ruuid: run.ruuid,
        instance_id: run.ruuid,
        root_ruuid: run.ruuid,
        parent_ruuid: null,
        state_log: run.stateLog,
        reason: '',
        error_list: [],
        warning_list: [],
        restart_attempts: run.resumes,
      };
      return this.send(res, 200, JSON.stringify({ response_map, http_status_code: 200 }));
    }
    return this.send(res, 404, errorEnvelope(404, 'Not found'));
  }

  private entry(run: Run): Record<string, unknown> {
    return {
      id: run.ruuid,
      label: run.label,
      state: run.state,
      create_time: run.createTime,
      state_timestamp: run.stateLog.at(-1)?.timestamp,
      invoker: 'manual',
      mode: 'standard',
      user_id: 'svc@example.com',
      documents: 0,
      error_documents: 0,
      has_lints: false,
    };
  }
}
