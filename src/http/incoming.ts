// Direct access to Node's request on @hono/node-server: headers, body and hang-up without building a WHATWG Request.
// Building the full Request (for body or signal) costs more than everything else snapgate does per call; tests
// through app.request() have no Node request and fall back to the WHATWG one.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';

function bindings(c: Context): Partial<HttpBindings> | undefined {
  return c.env as Partial<HttpBindings> | undefined;
}

export function incomingOf(c: Context): IncomingMessage | undefined {
  return bindings(c)?.incoming;
}

/** Node's response of this request, when served by @hono/node-server. */
export function outgoingOf(c: Context): ServerResponse | undefined {
  return bindings(c)?.outgoing;
}

/**
 * One request header (name in lower case), read from Node's parsed headers. `c.req.header()` would
 * build a WHATWG Headers object of the whole request first, on every call.
 */
export function requestHeader(c: Context, name: string): string | undefined {
  const incoming = incomingOf(c);
  if (incoming === undefined) return c.req.header(name);
  const value = incoming.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The request headers as [name, value] pairs, names lower-case. */
export function requestHeaderEntries(c: Context): Iterable<[string, string]> {
  const incoming = incomingOf(c);
  if (incoming === undefined) return c.req.raw.headers.entries();
  return Object.entries(incoming.headers).flatMap(([name, value]): [string, string][] =>
    value === undefined ? [] : [[name, Array.isArray(value) ? value.join(', ') : value]],
  );
}

/** Why a call was abandoned: the caller hung up, or the gateway is shutting down and its drain deadline passed. */
export type AbortReason = 'caller' | 'shutdown';

/**
 * One call's abort signal, watched from the request's first byte: it fires when the caller hangs
 * up before the response is finished, or when shutdown cuts the call. undici takes an EventEmitter
 * as a request signal; it costs a fraction of an AbortController per call.
 */
export class CallSignal extends EventEmitter {
  aborted = false;
  reason: AbortReason | undefined;

  abort(reason: AbortReason): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

/** The call was aborted (see CallSignal.reason) while it waited. */
export class CallAbortedError extends Error {
  constructor() {
    super('call aborted while waiting');
    this.name = 'CallAbortedError';
  }
}

/**
 * Resolves like `work`, or rejects with CallAbortedError as soon as `signal` fires; `work` goes on and is never
 * unhandled.
 */
export function unlessAborted<T>(work: Promise<T>, signal: CallSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(new CallAbortedError());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new CallAbortedError());
    signal.once('abort', onAbort);
    work.then(
      (v) => {
        signal.off('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.off('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** A signal that aborts when the caller hangs up before the response is finished. */
export function callSignal(c: Context): CallSignal {
  const signal = new CallSignal();
  const outgoing: ServerResponse | undefined = bindings(c)?.outgoing;
  if (outgoing === undefined) {
    const raw = c.req.raw.signal;
    if (raw.aborted) signal.abort('caller');
    else raw.addEventListener('abort', () => signal.abort('caller'), { once: true });
    return signal;
  }
  // A pipelined request's response has no socket until the ones before it are answered: watch the request's.
  const socket = outgoing.socket ?? bindings(c)?.incoming?.socket ?? null;
  if (outgoing.destroyed || socket === null || socket.destroyed || socket.readableEnded) {
    signal.abort('caller');
    return signal;
  }
  // The socket's own end (FIN; Node does not keep half-open requests), reset or close shows a
  // caller gone before the response notices. One set of listeners per socket serves every call on
  // it (keep-alive, pipelining), so none pile up; a call leaves the set when its response closes.
  const calls = callsOn(socket);
  calls.add(signal);
  outgoing.once('close', () => {
    calls.delete(signal);
    if (!outgoing.writableFinished) signal.abort('caller');
  });
  return signal;
}

const kCalls = Symbol('snapgate.calls');
type WatchedSocket = Socket & { [kCalls]?: Set<CallSignal> };

/** The calls in flight on a socket; created with its listeners the first time it serves one. */
function callsOn(socket: WatchedSocket): Set<CallSignal> {
  let calls = socket[kCalls];
  if (calls === undefined) {
    const set = new Set<CallSignal>();
    calls = set;
    socket[kCalls] = set;
    const gone = (): void => {
      for (const signal of set) signal.abort('caller');
      set.clear();
    };
    socket.once('end', gone);
    socket.on('error', gone);
    socket.once('close', gone);
  }
  return calls;
}

/** Why a request body could not be read. */
export class BodyReadError extends Error {
  constructor(readonly reason: 'too_large' | 'timeout' | 'aborted' | 'shutdown') {
    super(`request body ${reason}`);
    this.name = 'BodyReadError';
  }
}

function readNodeBody(
  incoming: IncomingMessage,
  max: number,
  timeoutMs: number,
  signal: CallSignal | undefined,
): Promise<Uint8Array> {
  if (signal?.aborted === true) {
    return Promise.reject(new BodyReadError(signal.reason === 'shutdown' ? 'shutdown' : 'aborted'));
  }
  if (incoming.destroyed || (incoming.readableEnded && !incoming.complete)) {
    return Promise.reject(new BodyReadError('aborted'));
  }
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: BodyReadError | undefined): void => {
      clearTimeout(timer);
      signal?.off('abort', onSignal);
      incoming
        .off('data', onData)
        .off('end', onEnd)
        .off('aborted', onAborted)
        .off('error', onAborted)
        .off('close', onClose);
      if (err !== undefined) {
        incoming.pause();
        reject(err);
      } else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength;
      if (size > max) finish(new BodyReadError('too_large'));
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onAborted = (): void => finish(new BodyReadError('aborted'));
    const onClose = (): void => {
      if (!incoming.complete) finish(new BodyReadError('aborted'));
    };
    // Shutdown cuts a body still arriving at once, so its decision is written before the trail closes.
    const onSignal = (): void => finish(new BodyReadError(signal?.reason === 'shutdown' ? 'shutdown' : 'aborted'));
    const timer = setTimeout(() => finish(new BodyReadError('timeout')), timeoutMs);
    signal?.once('abort', onSignal);
    incoming.on('data', onData).on('end', onEnd).on('aborted', onAborted).on('error', onAborted).on('close', onClose);
  });
}

async function readWebBody(body: ReadableStream<Uint8Array>, max: number, timeoutMs: number): Promise<Uint8Array> {
  const reader = body.getReader();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BodyReadError('timeout')), timeoutMs);
  });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      size += value.byteLength;
      if (size > max) throw new BodyReadError('too_large');
      chunks.push(value);
    }
  } catch (err) {
    void reader.cancel().catch(() => undefined);
    throw err instanceof BodyReadError ? err : new BodyReadError('aborted');
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Reads the whole body, at most `max` bytes, within `timeoutMs`. Throws BodyReadError (too_large,
 * timeout, aborted, shutdown when `signal` fires for shutdown). A declared Content-Length over `max` fails at once;
 * empty bodies cost nothing.
 */
export function readRequestBody(c: Context, max: number, timeoutMs: number, signal?: CallSignal): Promise<Uint8Array> {
  const incoming = incomingOf(c);
  const declared = Number(requestHeader(c, 'content-length') ?? '0');
  if (declared > max) return Promise.reject(new BodyReadError('too_large'));
  if (incoming !== undefined) {
    if (declared === 0 && incoming.headers['transfer-encoding'] === undefined) {
      return Promise.resolve(new Uint8Array(0));
    }
    return readNodeBody(incoming, max, timeoutMs, signal);
  }
  const body = c.req.raw.body;
  return body === null ? Promise.resolve(new Uint8Array(0)) : readWebBody(body, max, timeoutMs);
}
