// Raw HTTP/1.1 over net.connect for hostile tests: sends bytes exactly as given (with pauses, half-close or reset) and
// parses what comes back.
import { connect } from 'node:net';
import { recordOutput } from './leak-scan.js';

/** One step of a conversation: write bytes, wait, half-close (FIN), hang up, or reset (RST). */
export type RawStep =
  { write: string | Buffer } | { wait: number } | { halfClose: true } | { hangUp: true } | { reset: true };

export interface RawResponse {
  status: number;
  headers: Record<string, string[]>;
  body: Buffer;
  /** The body was framed (content-length or chunked) and arrived whole. */
  complete: boolean;
}

export interface RawResult {
  /** Final (non-1xx) responses, in order. */
  responses: RawResponse[];
  /** 1xx interim responses seen (e.g. 100 Continue). */
  interim: number[];
  /** The server closed (or reset) the connection before we stopped. */
  closedByServer: boolean;
  /** Our own deadline passed first: the server neither answered nor closed in time. */
  timedOut: boolean;
  /** A socket error code seen on our side (ECONNRESET, EPIPE...). */
  error?: string;
  ms: number;
  /** Bytes received, as latin1 text, for failure messages. */
  raw: string;
}

export interface RawOptions {
  /** The whole exchange is abandoned after this, ms. */
  timeoutMs: number;
  /** Stop as soon as this many final responses are complete (default 1). */
  responses?: number;
  /** Responses carry no body (answers to HEAD). */
  noBody?: boolean;
}

/** Header names in lower case; repeated names keep every value. */
function parseHeaders(lines: string[]): Record<string, string[]> {
  const headers: Record<string, string[]> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    (headers[name] ??= []).push(line.slice(i + 1).trim());
  }
  return headers;
}

/** Decodes a chunked body; undefined while it is incomplete. */
function dechunk(buf: Buffer): { body: Buffer; used: number } | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = parseInt(buf.subarray(at, eol).toString('latin1').split(';', 1)[0]!, 16);
    if (!Number.isFinite(size)) return undefined;
    at = eol + 2;
    if (size === 0) {
      const end = buf.indexOf('\r\n\r\n', at - 2);
      return end < 0 ? undefined : { body: Buffer.concat(parts), used: end + 4 };
    }
    if (buf.length < at + size + 2) return undefined;
    parts.push(buf.subarray(at, at + size));
    at += size + 2;
  }
}

/** Parses as many responses as `buf` holds. A body framed by the close only counts once `closed`. */
export function parseResponses(
  buf: Buffer,
  closed: boolean,
  noBody = false,
): { responses: RawResponse[]; interim: number[] } {
  const responses: RawResponse[] = [];
  const interim: number[] = [];
  let at = 0;
  while (at < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const [statusLine = '', ...lines] = buf.subarray(at, headEnd).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(statusLine)?.[1] ?? 0);
    const headers = parseHeaders(lines);
    let rest = headEnd + 4;
    if (status >= 100 && status < 200) {
      interim.push(status);
      at = rest;
      continue;
    }
    if (noBody || status === 204 || status === 304) {
      responses.push({ status, headers, body: Buffer.alloc(0), complete: true });
      at = rest;
      continue;
    }
    const length = headers['content-length']?.[0];
    if (length !== undefined) {
      const n = Number(length);
      const complete = buf.length >= rest + n;
      responses.push({ status, headers, body: buf.subarray(rest, Math.min(buf.length, rest + n)), complete });
      if (!complete) break;
      at = rest + n;
      continue;
    }
    if (headers['transfer-encoding']?.some((v) => /chunked/i.test(v)) === true) {
      const chunked = dechunk(buf.subarray(rest));
      if (chunked === undefined) {
        responses.push({ status, headers, body: buf.subarray(rest), complete: false });
        break;
      }
      responses.push({ status, headers, body: chunked.body, complete: true });
      at = rest + chunked.used;
      continue;
    }
    rest = buf.length;
    responses.push({ status, headers, body: buf.subarray(headEnd + 4), complete: closed });
    at = rest;
  }
  return { responses, interim };
}

/**
 * Runs one conversation with the server at 127.0.0.1:`port`. Never rejects: connection errors and
 * our own deadline are part of the result. Every byte received is recorded for the leak scan.
 */
export function rawExchange(port: number, steps: readonly RawStep[], options: RawOptions): Promise<RawResult> {
  const started = performance.now();
  const want = options.responses ?? 1;
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let done = false;
    let closedByServer = false;
    let timedOut = false;
    let error: string | undefined;
    let selfClosed = false;
    const timers = new Set<NodeJS.Timeout>();

    const finish = (): void => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      socket.destroy();
      const buf = Buffer.concat(chunks);
      const { responses, interim } = parseResponses(buf, closedByServer, options.noBody);
      const raw = buf.toString('latin1');
      if (raw.length > 0) recordOutput(raw);
      resolve({ responses, interim, closedByServer, timedOut, error, ms: performance.now() - started, raw });
    };
    const deadline = setTimeout(() => {
      timedOut = true;
      finish();
    }, options.timeoutMs);
    timers.add(deadline);

    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const { responses } = parseResponses(Buffer.concat(chunks), false, options.noBody);
      if (responses.filter((r) => r.complete).length >= want) finish();
    });
    socket.on('error', (err: Error & { code?: string }) => {
      error = err.code ?? err.message;
    });
    socket.on('end', () => {
      closedByServer = true;
    });
    socket.on('close', () => {
      if (!done && !selfClosed) closedByServer = true;
      finish();
    });

    const run = async (): Promise<void> => {
      await new Promise<void>((ok) => socket.once('connect', ok));
      for (const step of steps) {
        if (done || socket.destroyed) return;
        if ('write' in step) socket.write(step.write);
        else if ('wait' in step) {
          await new Promise<void>((ok) => {
            const t = setTimeout(() => {
              timers.delete(t);
              ok();
            }, step.wait);
            timers.add(t);
          });
        } else if ('halfClose' in step) socket.end();
        else if ('hangUp' in step) {
          selfClosed = true;
          socket.destroy();
          return;
        } else {
          selfClosed = true;
          socket.resetAndDestroy();
        }
      }
    };
    run().catch((err: unknown) => {
      error = err instanceof Error ? err.message : String(err);
      finish();
    });
  });
}

/** An HTTP/1.1 request as bytes. Header values go out exactly as given: no folding, no escaping. */
export function rawRequest(parts: {
  method?: string;
  target: string;
  version?: string;
  headers?: ReadonlyArray<readonly [string, string]>;
  body?: string | Buffer;
}): Buffer {
  const head = [
    `${parts.method ?? 'POST'} ${parts.target} ${parts.version ?? 'HTTP/1.1'}`,
    ...(parts.headers ?? []).map(([n, v]) => `${n}: ${v}`),
  ];
  const body = typeof parts.body === 'string' ? Buffer.from(parts.body, 'latin1') : (parts.body ?? Buffer.alloc(0));
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}
