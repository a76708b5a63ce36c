// A local OTLP/HTTP trace receiver on port 0: takes POST /v1/traces in JSON or protobuf and keeps every span, decoded
// into one plain shape, with the headers of the export requests.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordOutput } from './leak-scan.js';

export type AttributeValue = string | number | boolean | null;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: 'unspecified' | 'internal' | 'server' | 'client' | 'producer' | 'consumer';
  attributes: Record<string, AttributeValue>;
  status: { code: 'unset' | 'ok' | 'error'; message: string };
  /** The resource attributes of the batch the span came in. */
  resource: Record<string, AttributeValue>;
  /** The content type it was exported with. */
  encoding: 'json' | 'protobuf';
}

export interface ExportRequest {
  headers: IncomingHttpHeaders;
  path: string;
  bytes: number;
}

const kinds: ReceivedSpan['kind'][] = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const statusCodes: ReceivedSpan['status']['code'][] = ['unset', 'ok', 'error'];

export class OtlpReceiver {
  private constructor(
    private readonly server: Server,
    readonly url: string,
    /** Every span received, in arrival order. */
    readonly spans: ReceivedSpan[],
    /** Every export request received (its headers, to check OTEL_EXPORTER_OTLP_HEADERS). */
    readonly requests: ExportRequest[],
  ) {}

  /** Starts on 127.0.0.1 and a free port; `url` is the base to give as OTEL_EXPORTER_OTLP_ENDPOINT. */
  static async start(): Promise<OtlpReceiver> {
    const spans: ReceivedSpan[] = [];
    const requests: ExportRequest[] = [];
    const keep = (received: ReceivedSpan[]) => {
      // Spans are output too: the secret-leak scan reads them with every log and audit line.
      for (const span of received) recordOutput(JSON.stringify(span));
      spans.push(...received);
    };
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        requests.push({ headers: req.headers, path: req.url ?? '', bytes: body.length });
        const type = req.headers['content-type'] ?? '';
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        try {
          if (type.startsWith('application/json')) {
            keep(fromJson(JSON.parse(body.toString('utf8'))));
            res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          } else if (type.startsWith('application/x-protobuf')) {
            keep(fromProtobuf(body));
            res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
          } else {
            res.writeHead(415).end();
          }
        } catch (err) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return new OtlpReceiver(server, `http://127.0.0.1:${port}`, spans, requests);
  }

  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// OTLP JSON (ids in hex, enums as numbers, as the OpenTelemetry JS exporter writes them)

interface JsonKeyValue {
  key: string;
  value: Record<string, unknown>;
}

function jsonValue(v: Record<string, unknown>): AttributeValue {
  if ('stringValue' in v) return v.stringValue as string;
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return Number(v.doubleValue);
  return null;
}

const jsonAttributes = (list: JsonKeyValue[] | undefined): Record<string, AttributeValue> =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, jsonValue(kv.value)]));

function fromJson(doc: any): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of doc.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          traceState: s.traceState ?? '',
          name: s.name,
          kind: kinds[s.kind ?? 0]!,
          attributes: jsonAttributes(s.attributes),
          status: { code: statusCodes[s.status?.code ?? 0]!, message: s.status?.message ?? '' },
          resource,
          encoding: 'json',
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// OTLP protobuf: the few messages of ExportTraceServiceRequest, read with a minimal wire-format decoder

type Field = { no: number; varint?: bigint; bytes?: Buffer; fixed?: Buffer };

function varint(buf: Buffer, at: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[at++];
    if (b === undefined) throw new Error('truncated varint');
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value, at];
    shift += 7n;
  }
}

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < buf.length) {
    const [key, next] = varint(buf, at);
    at = next;
    const no = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      const [v, n] = varint(buf, at);
      out.push({ no, varint: v });
      at = n;
    } else if (wire === 1) {
      out.push({ no, fixed: buf.subarray(at, at + 8) });
      at += 8;
    } else if (wire === 2) {
      const [len, n] = varint(buf, at);
      out.push({ no, bytes: buf.subarray(n, n + Number(len)) });
      at = n + Number(len);
    } else if (wire === 5) {
      out.push({ no, fixed: buf.subarray(at, at + 4) });
      at += 4;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
  return out;
}

const sub = (fs: Field[], no: number): Buffer[] => fs.filter((f) => f.no === no && f.bytes).map((f) => f.bytes!);
const str = (fs: Field[], no: number): string => sub(fs, no)[0]?.toString('utf8') ?? '';
const hex = (fs: Field[], no: number): string => sub(fs, no)[0]?.toString('hex') ?? '';
const num = (fs: Field[], no: number): number => Number(fs.find((f) => f.no === no)?.varint ?? 0n);

function anyValue(buf: Buffer): AttributeValue {
  const f = fields(buf)[0];
  if (f === undefined) return null;
  if (f.no === 1) return f.bytes!.toString('utf8');
  if (f.no === 2) return f.varint === 1n;
  if (f.no === 3) return Number(BigInt.asIntN(64, f.varint!));
  if (f.no === 4) return f.fixed!.readDoubleLE(0);
  return null;
}

function pbAttributes(list: Buffer[]): Record<string, AttributeValue> {
  return Object.fromEntries(
    list.map((kv) => {
      const fs = fields(kv);
      const value = sub(fs, 2)[0];
      return [str(fs, 1), value === undefined ? null : anyValue(value)];
    }),
  );
}

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of sub(fields(body), 1)) {
    const rsf = fields(rs);
    const res = sub(rsf, 1)[0];
    const resource = res === undefined ? {} : pbAttributes(sub(fields(res), 1));
    for (const ss of sub(rsf, 2)) {
      for (const s of sub(fields(ss), 2)) {
        const sf = fields(s);
        const status = sub(sf, 15)[0];
        const stf = status === undefined ? [] : fields(status);
        out.push({
          traceId: hex(sf, 1),
          spanId: hex(sf, 2),
          parentSpanId: hex(sf, 4),
          traceState: str(sf, 3),
          name: str(sf, 5),
          kind: kinds[num(sf, 6)]!,
          attributes: pbAttributes(sub(sf, 9)),
          status: { code: statusCodes[num(stf, 3)]!, message: str(stf, 2) },
          resource,
          encoding: 'protobuf',
        });
      }
    }
  }
  return out;
}
