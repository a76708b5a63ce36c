// The pooled HTTP client for SnapLogic: explicit timeouts, keep-alive, no retries, and transport errors translated by code.
import type { EventEmitter } from 'node:events';
import { Agent, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';

export interface UpstreamRequest {
  /** The pod origin from config, e.g. https://elastic.snaplogic.com. Never from the caller. */
  origin: string;
  path: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Uint8Array;
  timeouts?: { connect?: number; headers?: number; body?: number };
  /** Aborts the call (the caller hung up): an AbortSignal, or an EventEmitter that emits `abort`. */
  signal?: AbortSignal | UpstreamAbortSignal;
}

export type UpstreamAbortSignal = EventEmitter & { readonly aborted: boolean };

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface Forwarder {
  /**
   * Sends one request, once. Throws GatewayError `upstream_timeout` (504) or
   * `upstream_unreachable` / `upstream_response_too_large` (502).
   */
  forward(req: UpstreamRequest): Promise<UpstreamResponse>;
  /** Closes pooled connections, waiting for requests in flight. */
  close(): Promise<void>;
}

export interface ForwarderOptions {
  /** ms to establish a TCP/TLS connection. */
  connectTimeout: number;
  /** ms from sending the request to receiving the response headers. */
  headersTimeout: number;
  /** ms of silence allowed while receiving the response body. */
  bodyTimeout: number;
  /** ms an idle pooled connection is kept; keep below SnapLogic's load balancer idle timeout. */
  keepAliveTimeout: number;
  /** Connections per origin. */
  connections: number;
  /** Responses larger than this are refused (502). */
  maxResponseBytes: number;
}

const timeoutCodes = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function translate(err: unknown, origin: string, signal: { readonly aborted: boolean } | undefined): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = (err as { code?: unknown }).code;
  if (signal?.aborted || code === 'UND_ERR_ABORTED') {
    return new GatewayError('client_closed_request', 'The caller closed the connection before SnapLogic answered; the call was abandoned.', { cause: err });
  }
  if (typeof code === 'string' && timeoutCodes.has(code)) {
    return new GatewayError('upstream_timeout', 'SnapLogic did not answer in time. The resume may or may not have taken effect: check the run\'s state before retrying.', { cause: err });
  }
  return new GatewayError(
    'upstream_unreachable',
    `SnapLogic at ${origin} could not be reached or closed the connection. The resume may or may not have taken effect: check the run's state before retrying.`,
    { cause: err },
  );
}

/** Reads a whole response body, refusing one larger than `max` bytes (events, not an async iterator: cheaper per call). */
function readBody(body: Dispatcher.ResponseData['body'], max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        body.destroy();
        reject(new GatewayError('upstream_response_too_large', `SnapLogic's response exceeded ${max} bytes and was not passed on. Tell the platform team.`));
        return;
      }
      chunks.push(chunk);
    });
    body.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    body.once('error', reject);
  });
}

/** Creates the forwarder. One pool per connect timeout; requests choose header/body timeouts. */
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
        headersTimeout: options.headersTimeout,
        bodyTimeout: options.bodyTimeout,
        // Never pipeline: a POST queued behind another on a socket that dies would be lost or doubled.
        pipelining: 1,
      });
      agents.set(connectTimeout, agent);
    }
    return agent;
  };

  return {
    async forward(req) {
      const agent = agentFor(req.timeouts?.connect ?? options.connectTimeout);
      try {
        const res = await agent.request({
          origin: req.origin,
          path: req.path,
          method: req.method,
          headers: req.headers,
          body: req.body && req.body.byteLength > 0 ? req.body : null,
          headersTimeout: req.timeouts?.headers ?? options.headersTimeout,
          bodyTimeout: req.timeouts?.body ?? options.bodyTimeout,
          ...(req.signal !== undefined ? { signal: req.signal } : {}),
        });
        const body = await readBody(res.body, options.maxResponseBytes);
        return { status: res.statusCode, headers: res.headers, body };
      } catch (err) {
        throw translate(err, req.origin, req.signal);
      }
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close()));
    },
  };
}
