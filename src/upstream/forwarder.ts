// The pooled HTTP client for SnapLogic: explicit timeouts, keep-alive, no retries, and transport errors translated by
// code.
import type { EventEmitter } from 'node:events';
import { Agent, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import { longestCallMs, type UpstreamTimeouts } from './orgs.js';

export interface UpstreamRequest {
  /** The pod origin from config, e.g. https://elastic.snaplogic.com. Never from the caller. */
  origin: string;
  path: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Uint8Array;
  /** This org's effective timeouts (see orgs.ts). */
  timeouts: UpstreamTimeouts;
  /** Aborts the call (caller hung up, or shutdown): an EventEmitter that emits `abort`. */
  signal?: UpstreamAbortSignal;
  /**
   * Called the moment the request is handed to the connection pool; until then nothing was sent. A call that then
   * fails with an UpstreamCallError whose `sent` is false never reached SnapLogic either.
   */
  onDispatch?: () => void;
  /**
   * `read` calls (status, list, stats) may hold at most half of an origin's connections, so reads alone can never
   * leave a resume or stop waiting for one. Default `write`.
   */
  kind?: 'read' | 'write';
  /** The call's path template (`{org}`, `{ruuid}` placeholders), naming its client span when tracing is on. */
  route?: string;
}

export type UpstreamAbortSignal = EventEmitter & {
  readonly aborted: boolean;
  readonly reason?: 'caller' | 'shutdown' | undefined;
};

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface Forwarder {
  /**
   * Sends one request, once, when one of the origin's `connections` is free (waiting at most
   * `queueTimeout` behind at most `maxQueue` others). Throws GatewayError `upstream_busy` (503, never
   * sent), `upstream_timeout` (504), `upstream_unreachable` / `upstream_response_too_large` (502),
   * `client_closed_request` or `aborted_by_shutdown`.
   */
  forward(req: UpstreamRequest): Promise<UpstreamResponse>;
  /** Closes pooled connections, waiting for requests in flight. */
  close(): Promise<void>;
}

/** The pool's settings; the timeouts of each call come with it (its org's, see orgs.ts). */
export interface ForwarderOptions {
  /** ms an idle pooled connection is kept; keep below SnapLogic's load balancer idle timeout. */
  keepAliveTimeout: number;
  /** Connections per origin. */
  connections: number;
  /** Responses larger than this are refused (502). */
  maxResponseBytes: number;
  /** Calls waiting for a connection at most; beyond, upstream_busy at once. */
  maxQueue: number;
  /** ms a call waits for a connection before upstream_busy. */
  queueTimeout: number;
}

const timeoutCodes = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);

/** The error for a call abandoned by its signal; `sent` says whether SnapLogic may have received it. */
export function abandoned(signal: UpstreamAbortSignal | undefined, sent: boolean, cause?: unknown): GatewayError {
  if (signal?.reason === 'shutdown') {
    return new GatewayError(
      'aborted_by_shutdown',
      sent
        ? 'This snapgate instance shut down before SnapLogic answered. The resume may or may not have taken effect: ' +
            "check the run's state before retrying."
        : 'This snapgate instance shut down before the call was sent to SnapLogic. Nothing was forwarded; retry.',
      { cause },
    );
  }
  return new GatewayError(
    'client_closed_request',
    sent
      ? 'The caller closed the connection before SnapLogic answered; the call was abandoned.'
      : 'The caller closed the connection before the call was sent to SnapLogic. Nothing was forwarded.',
    { cause },
  );
}

/** Failures while connecting: the request never left snapgate, so SnapLogic cannot have acted on it. */
const notSentCodes = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
]);

/**
 * A call to SnapLogic that failed; `sent` says whether SnapLogic may have received it (false only when the
 * connection was never made, so a retry cannot double anything).
 */
export class UpstreamCallError extends GatewayError {
  constructor(
    code: 'upstream_timeout' | 'upstream_unreachable',
    detail: string,
    readonly sent: boolean,
    cause: unknown,
  ) {
    super(code, detail, { cause });
  }
}

/** Whether a call that failed with `err` may have reached SnapLogic. */
export function mayHaveBeenSent(err: unknown): boolean {
  return !(err instanceof UpstreamCallError) || err.sent;
}

const UNKNOWN_OUTCOME = "The call may or may not have taken effect: check the run's state before retrying.";

function translate(err: unknown, origin: string, signal: UpstreamAbortSignal | undefined): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as { code?: unknown }).code;
  if (signal?.reason === 'shutdown') return abandoned(signal, true, err);
  if (signal?.aborted || code === 'UND_ERR_ABORTED') {
    return new GatewayError(
      'client_closed_request',
      'The caller closed the connection before SnapLogic answered; the call was abandoned.',
      { cause: err },
    );
  }
  const sent = !(typeof code === 'string' && notSentCodes.has(code));
  if (!sent) {
    return new UpstreamCallError(
      code === 'UND_ERR_CONNECT_TIMEOUT' ? 'upstream_timeout' : 'upstream_unreachable',
      `SnapLogic at ${origin} could not be reached: no connection was made, so nothing was sent. Retry later.`,
      false,
      err,
    );
  }
  if (typeof code === 'string' && timeoutCodes.has(code)) {
    return new UpstreamCallError('upstream_timeout', `SnapLogic did not answer in time. ${UNKNOWN_OUTCOME}`, true, err);
  }
  return new UpstreamCallError(
    'upstream_unreachable',
    `SnapLogic at ${origin} closed the connection before answering. ${UNKNOWN_OUTCOME}`,
    true,
    err,
  );
}

/**
 * Reads a whole response body, refusing one larger than `max` bytes, or one still arriving at `deadline`
 * (performance.now() time; a body that trickles in never trips undici's idle body timeout, and could otherwise
 * outlast every lease and lock sized by the call's timeouts). Events, not an async iterator: cheaper per call.
 */
function readBody(body: Dispatcher.ResponseData['body'], max: number, deadline: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      if (performance.now() > deadline) {
        body.destroy();
        reject(
          new UpstreamCallError(
            'upstream_timeout',
            `SnapLogic's answer took longer than the call's timeouts in all. ${UNKNOWN_OUTCOME}`,
            true,
            undefined,
          ),
        );
        return;
      }
      size += chunk.byteLength;
      if (size > max) {
        body.destroy();
        reject(
          new GatewayError(
            'upstream_response_too_large',
            `SnapLogic's response exceeded ${max} bytes and was not passed on. Tell the platform team.`,
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    body.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    body.once('error', reject);
  });
}

/**
 * At most `limit` calls at once; the rest wait in a bounded FIFO queue. undici's own queue is
 * unbounded and has no deadline, so calls beyond the pool never reach it.
 */
class Slots {
  private active = 0;
  private readonly waiting: Array<{ grant: () => void }> = [];

  constructor(
    private readonly limit: number,
    private readonly maxQueue: number,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Resolves with a release function once a slot is free. Throws upstream_busy, or the abandonment when `signal` fires.
   */
  acquire(signal: UpstreamAbortSignal | undefined): Promise<() => void> {
    const release = (): void => {
      const next = this.waiting.shift();
      if (next !== undefined) next.grant();
      else this.active -= 1;
    };
    if (this.active < this.limit) {
      this.active += 1;
      return Promise.resolve(release);
    }
    // Already abandoned: it would only wait for an abort that has come and gone.
    if (signal?.aborted === true) return Promise.reject(abandoned(signal, false));
    if (this.waiting.length >= this.maxQueue) {
      return Promise.reject(
        busy(`all ${this.limit} connections are in use and ${this.maxQueue} calls are already waiting`),
      );
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          cleanup();
          resolve(release);
        },
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.off('abort', onAbort);
      };
      const leave = (err: GatewayError): void => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        cleanup();
        reject(err);
      };
      const onAbort = (): void => leave(abandoned(signal, false));
      const timer = setTimeout(
        () => leave(busy(`no connection became free within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      signal?.once('abort', onAbort);
      this.waiting.push(entry);
    });
  }

  get queued(): number {
    return this.waiting.length;
  }
}

function busy(why: string): GatewayError {
  return new GatewayError(
    'upstream_busy',
    `snapgate's connections to SnapLogic are all busy (${why}). Nothing was forwarded; retry after the Retry-After ` +
      `delay.`,
    {
      headers: { 'retry-after': '1' },
    },
  );
}

/**
 * Creates the forwarder. One pool per connect timeout, one bounded queue per origin; requests choose header/body
 * timeouts.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const agents = new Map<number, Agent>();
  const agentFor = (connectTimeout: number): Agent => {
    let agent = agents.get(connectTimeout);
    if (agent === undefined) {
      agent = new Agent({
        connect: { timeout: connectTimeout },
        connections: options.connections,
        keepAliveTimeout: options.keepAliveTimeout,
        keepAliveMaxTimeout: Math.max(options.keepAliveTimeout, 1_000),
        // Never pipeline: a POST queued behind another on a socket that dies would be lost or doubled.
        pipelining: 1,
      });
      agents.set(connectTimeout, agent);
    }
    return agent;
  };

  /** One bounded queue of `limit` slots per origin, made on first use. */
  const slotsPerOrigin = (limit: number): ((origin: string) => Slots) => {
    const byOrigin = new Map<string, Slots>();
    return (origin) => {
      let s = byOrigin.get(origin);
      if (s === undefined) {
        s = new Slots(limit, options.maxQueue, options.queueTimeout);
        byOrigin.set(origin, s);
      }
      return s;
    };
  };
  const slotsFor = slotsPerOrigin(options.connections);
  // Reads take one of these first: at most half the origin's connections (at least 1).
  const readSlotsFor = slotsPerOrigin(Math.max(1, Math.floor(options.connections / 2)));
  /** A slot for the call: for a read, one of the reads' share first, then one of the origin's. */
  const acquire = async (req: UpstreamRequest): Promise<() => void> => {
    if (req.kind !== 'read') return slotsFor(req.origin).acquire(req.signal);
    const readRelease = await readSlotsFor(req.origin).acquire(req.signal);
    try {
      const release = await slotsFor(req.origin).acquire(req.signal);
      return () => {
        release();
        readRelease();
      };
    } catch (err) {
      readRelease();
      throw err;
    }
  };

  return {
    async forward(req) {
      const agent = agentFor(req.timeouts.connect);
      const release = await acquire(req);
      // A caller gone (or a shutdown) while waiting for Redis, the audit trail or a connection: never sent.
      if (req.signal?.aborted === true) {
        release();
        throw abandoned(req.signal, false);
      }
      req.onDispatch?.();
      try {
        // The whole call ends by connect + headers + body timeouts: undici's timeouts bound the connect, the wait for
        // headers and the silences in the body, so only a body that trickles in needs this (see readBody).
        const t = req.timeouts;
        const deadline = performance.now() + longestCallMs(t);
        const res = await agent.request({
          origin: req.origin,
          path: req.path,
          method: req.method,
          headers: req.headers,
          body: req.body && req.body.byteLength > 0 ? req.body : null,
          headersTimeout: t.headers,
          bodyTimeout: t.body,
          ...(req.signal !== undefined ? { signal: req.signal } : {}),
        });
        const body = await readBody(res.body, options.maxResponseBytes, deadline);
        return { status: res.statusCode, headers: res.headers, body };
      } catch (err) {
        throw translate(err, req.origin, req.signal);
      } finally {
        release();
      }
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close()));
    },
  };
}
