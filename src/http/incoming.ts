// Direct access to Node's request on @hono/node-server: headers, body and hang-up without building a WHATWG Request.
// Building the full Request (for body or signal) costs more than everything else snapgate does per call; tests
// through app.request() have no Node request and fall back to the WHATWG one.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';

function bindings(c: Context): Partial<HttpBindings> | undefined {
  return c.env as Partial<HttpBindings> | undefined;
}

export function incomingOf(c: Context): IncomingMessage | undefined {
  return bindings(c)?.incoming;
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

/**
 * Emits `abort` when the caller hangs up before the response is finished. undici takes an
 * EventEmitter as a request signal; it costs a fraction of an AbortController per call.
 */
export class HangUpSignal extends EventEmitter {
  aborted = false;
}

/** A signal that aborts when the caller hangs up before the response is finished. */
export function hangUpSignal(c: Context): AbortSignal | HangUpSignal {
  const outgoing: ServerResponse | undefined = bindings(c)?.outgoing;
  if (outgoing === undefined) return c.req.raw.signal;
  const signal = new HangUpSignal();
  outgoing.once('close', () => {
    if (outgoing.writableFinished) return;
    signal.aborted = true;
    signal.emit('abort');
  });
  return signal;
}

/** Reads the body up to `max` bytes; calls `tooLarge()` (which throws) beyond. Empty bodies cost nothing. */
export async function readRequestBody(c: Context, max: number, tooLarge: () => Error): Promise<Uint8Array> {
  const incoming = incomingOf(c);
  const declared = Number(requestHeader(c, 'content-length') ?? '0');
  if (declared > max) throw tooLarge();
  if (incoming !== undefined && declared === 0 && incoming.headers['transfer-encoding'] === undefined) return new Uint8Array(0);
  // Node's request and the WHATWG body stream are both async iterables of byte chunks.
  const source = (incoming ?? c.req.raw.body) as AsyncIterable<Uint8Array> | null;
  if (source === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (size > max) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
