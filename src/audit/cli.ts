// `snapgate audit verify|query|tail`: check the hash chains and read the trail from a file or a Redis stream.
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { parseRedisUrl, redisUrlProblems } from '../config/redis-url.js';
import { verifyChain, type VerifyReport } from './chain.js';
import type { AuditEvent } from './event.js';
import { DEFAULT_AUDIT_STREAM } from './sinks.js';

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the user interrupts (Ctrl-C); ends `tail`. */
  interrupted: Promise<void>;
}

export const auditUsage = `usage:
  snapgate audit verify (--file PATH | --redis URL [--stream KEY] | --cluster HOST:PORT,...) [--complete] [--json]
  snapgate audit query  (--file PATH | --redis URL ...) [filters] [--format json|table] [--limit N]
  snapgate audit tail   (--file PATH | --redis URL ...) [filters] [--format json|table]

filters: --org ORG  --caller SUB  --decision DECISION  --type attempt|outcome|decision|denials
         --since ISO-TIME  --until ISO-TIME
--file reads PATH and its rotated siblings (PATH.<time>), oldest first.
--redis/--cluster read the stream (default ${DEFAULT_AUDIT_STREAM}): --redis redis://host:port[/db] or rediss://…,
  without credentials or a query; a password comes from SNAPGATE_REDIS_PASSWORD.
verify exits 0 when every chain is whole, 1 at the first broken link (printed), 2 on a usage error.`;

const options = {
  file: { type: 'string' },
  redis: { type: 'string' },
  cluster: { type: 'string' },
  stream: { type: 'string' },
  complete: { type: 'boolean' },
  json: { type: 'boolean' },
  org: { type: 'string' },
  caller: { type: 'string' },
  decision: { type: 'string' },
  type: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  format: { type: 'string' },
  limit: { type: 'string' },
} as const;

class UsageError extends Error {}

type Command = 'verify' | 'query' | 'tail';

const commands: readonly string[] = ['verify', 'query', 'tail'] satisfies Command[];

const isCommand = (text: string | undefined): text is Command => commands.includes(text ?? '');

/** The command and its options. Throws UsageError, or parseArgs' ERR_PARSE_ARGS_* errors. */
function parseInvocation(argv: string[]) {
  const [command, ...rest] = argv;
  const { values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false });
  const sources = [values.file, values.redis, values.cluster].filter((v) => v !== undefined).length;
  if (!isCommand(command) || sources !== 1) {
    throw new UsageError('name a command and exactly one of --file, --redis, --cluster');
  }
  return { command, values };
}

type Values = ReturnType<typeof parseInvocation>['values'];

/** Where the trail is read from: a file with its rotated siblings, or a Redis stream. */
interface TrailSource {
  /** How failures name a Redis source (host:port only); undefined for a file. */
  readonly where: string | undefined;
  /** Every stored line, oldest first. */
  lines(): AsyncGenerator<string>;
  /** Hands `print` what is stored, then what arrives, until `interrupted` resolves. */
  follow(print: (line: string) => void, interrupted: Promise<void>): Promise<void>;
  close(): void;
}

/** A flag that turns true once `interrupted` resolves. */
function stopOn(interrupted: Promise<void>): () => boolean {
  let stop = false;
  void interrupted.then(() => {
    stop = true;
  });
  return () => stop;
}

/** PATH's rotated siblings (PATH.<time>) oldest first, then PATH. */
async function filesOf(path: string): Promise<string[]> {
  const dir = dirname(path);
  const base = basename(path);
  const rotated = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => n.startsWith(`${base}.`))
    .sort()
    .map((n) => join(dir, n));
  const current = await stat(path).then(
    () => [path],
    () => [] as string[],
  );
  if (rotated.length === 0 && current.length === 0) throw new UsageError(`no audit file at ${path}`);
  return [...rotated, ...current];
}

/** The bytes of `path` from `start` to `end`, as text. */
async function readRange(path: string, start: number, end: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    await fh.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

class FileSource implements TrailSource {
  readonly where = undefined;

  constructor(private readonly path: string) {}

  async *lines(): AsyncGenerator<string> {
    for (const file of await filesOf(this.path)) {
      for (const l of (await readFile(file, 'utf8')).split('\n')) if (l) yield l;
    }
  }

  /** Polls the file every 250 ms. A file that shrank was rotated: it is read again from its start. */
  async follow(print: (line: string) => void, interrupted: Promise<void>): Promise<void> {
    const stopped = stopOn(interrupted);
    let offset = 0;
    let partial = '';
    while (!stopped()) {
      const size = await stat(this.path).then(
        (s) => s.size,
        () => 0,
      );
      if (size < offset) offset = 0;
      if (size > offset) {
        const parts = (partial + (await readRange(this.path, offset, size))).split('\n');
        offset = size;
        partial = parts.pop() ?? '';
        for (const l of parts) if (l) print(l);
      }
      await Promise.race([new Promise((r) => setTimeout(r, 250)), interrupted]);
    }
  }

  close(): void {
    // Nothing is held open between reads.
  }
}

/** Stream entries read per XRANGE or XREAD call. */
const PAGE = 1000;

/** The event JSON of a stream entry: the value of its `e` field. */
function eventLine(fields: string[]): string | undefined {
  const i = fields.indexOf('e');
  return i >= 0 ? fields[i + 1] : undefined;
}

class RedisSource implements TrailSource {
  constructor(
    private readonly client: Redis | Cluster,
    readonly where: string,
    private readonly stream: string,
  ) {}

  async *lines(): AsyncGenerator<string> {
    let start = '-';
    for (;;) {
      const page = (await this.client.xrange(this.stream, start, '+', 'COUNT', PAGE)) as [string, string[]][];
      for (const [id, fields] of page) {
        const line = eventLine(fields);
        if (line !== undefined) yield line;
        start = `(${id}`;
      }
      if (page.length < PAGE) return;
    }
  }

  /** Blocks in XREAD for 500 ms at a time, so an interrupt is noticed within that. */
  async follow(print: (line: string) => void, interrupted: Promise<void>): Promise<void> {
    const stopped = stopOn(interrupted);
    let last = '0-0';
    while (!stopped()) {
      const res = await this.client.xread('COUNT', PAGE, 'BLOCK', 500, 'STREAMS', this.stream, last);
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          const line = eventLine(fields);
          if (line !== undefined) print(line);
        }
      }
    }
  }

  close(): void {
    this.client.disconnect();
  }
}

/** --cluster's HOST:PORT list. A password is never taken from it (SNAPGATE_REDIS_PASSWORD only). */
function clusterNodes(list: string): { host: string; port: number }[] {
  return list.split(',').map((hp) => {
    const m = /^([^:@/?#\s]+):(\d{1,5})$/.exec(hp);
    if (m === null) {
      throw new UsageError('--cluster takes HOST:PORT,HOST:PORT,… (a password comes from SNAPGATE_REDIS_PASSWORD)');
    }
    return { host: m[1]!, port: Number(m[2]) };
  });
}

/**
 * The client for --redis or --cluster, and how messages name it (host:port only). Neither the URL
 * nor a node list is ever repeated: a URL with credentials is refused without echoing it, and the
 * password comes from SNAPGATE_REDIS_PASSWORD alone.
 */
function redisClient(
  values: { redis?: string; cluster?: string },
  env: CliIo['env'],
): { client: Redis | Cluster; where: string } {
  const password = env.SNAPGATE_REDIS_PASSWORD;
  const common = { maxRetriesPerRequest: 1, ...(password ? { password } : {}) };
  if (values.cluster !== undefined) {
    const nodes = clusterNodes(values.cluster);
    return {
      client: new Cluster(nodes, { redisOptions: common }),
      where: `cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`,
    };
  }
  const parsed = parseRedisUrl(values.redis ?? 'redis://127.0.0.1:6379');
  if (!parsed.ok) {
    throw new UsageError(
      `--redis ${redisUrlProblems[parsed.problem]}; give redis://host:port[/db] or rediss://host:port[/db] ` +
        'and put the password in SNAPGATE_REDIS_PASSWORD',
    );
  }
  const { host, port, db, tls } = parsed.target;
  return { client: new Redis({ ...common, host, port, db, ...(tls ? { tls: {} } : {}) }), where: parsed.target.where };
}

function openSource(values: Values, env: CliIo['env']): TrailSource {
  if (values.file !== undefined) return new FileSource(values.file);
  const { client, where } = redisClient(values, env);
  // Without a listener ioredis prints each connection error; the command that fails reports it instead.
  client.on('error', () => {});
  return new RedisSource(client, where, values.stream ?? DEFAULT_AUDIT_STREAM);
}

interface Filters {
  org?: string;
  caller?: string;
  decision?: string;
  type?: string;
  since?: number;
  until?: number;
}

function filtersOf(values: Record<string, unknown>): Filters {
  const time = (v: unknown, name: string): number | undefined => {
    if (typeof v !== 'string') return undefined;
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new UsageError(`--${name} must be an ISO time such as 2026-11-29T10:00:00Z`);
    return t;
  };
  const f: Filters = {};
  for (const k of ['org', 'caller', 'decision', 'type'] as const) if (typeof values[k] === 'string') f[k] = values[k];
  const since = time(values.since, 'since');
  const until = time(values.until, 'until');
  if (since !== undefined) f.since = since;
  if (until !== undefined) f.until = until;
  return f;
}

function matches(e: AuditEvent, f: Filters): boolean {
  if (f.org !== undefined && e.org !== f.org) return false;
  if (f.caller !== undefined && e.caller?.sub !== f.caller && e.caller?.clientId !== f.caller) return false;
  if (f.decision !== undefined && e.decision !== f.decision) return false;
  if (f.type !== undefined && e.type !== f.type) return false;
  const t = Date.parse(e.time);
  if (f.since !== undefined && t < f.since) return false;
  if (f.until !== undefined && t > f.until) return false;
  return true;
}

const columns: [string, (e: AuditEvent) => string][] = [
  ['time', (e) => e.time],
  ['type', (e) => e.type],
  ['decision', (e) => e.decision],
  ['reason', (e) => e.reason ?? ''],
  ['org', (e) => e.org ?? ''],
  ['ruuid', (e) => e.ruuid ?? ''],
  ['caller', (e) => e.caller?.sub ?? e.client.address ?? ''],
  ['status', (e) => (e.status === null ? '' : String(e.status))],
  ['upstream', (e) => (e.upstreamStatus === null ? '' : String(e.upstreamStatus))],
  ['ms', (e) => (e.latencyMs === null ? '' : String(e.latencyMs))],
  ['count', (e) => (e.count === undefined ? '' : String(e.count))],
];

interface Format {
  header?: string;
  row: (e: AuditEvent) => string;
}

function formatter(format: string | undefined): Format {
  if (format === undefined || format === 'json') return { row: (e) => JSON.stringify(e) };
  if (format !== 'table') throw new UsageError('--format is json or table');
  return { header: columns.map(([n]) => n).join('\t'), row: (e) => columns.map(([, f]) => f(e)).join('\t') };
}

function limitOf(text: string | undefined): number {
  const limit = text !== undefined ? Number(text) : Number.POSITIVE_INFINITY;
  if (Number.isNaN(limit) || limit < 1) throw new UsageError('--limit must be a positive number');
  return limit;
}

/** Prints a line that holds a matching event; a line that is not JSON is skipped, saying so. True when printed. */
function printer(filters: Filters, fmt: Format, io: CliIo): (line: string) => boolean {
  return (line) => {
    let e: AuditEvent;
    try {
      e = JSON.parse(line) as AuditEvent;
    } catch {
      io.err(`skipping a line that is not JSON\n`);
      return false;
    }
    if (!matches(e, filters)) return false;
    io.out(`${fmt.row(e)}\n`);
    return true;
  };
}

function printReport(report: VerifyReport, io: CliIo): void {
  if (!report.ok) {
    const { position, id, reason } = report.broken!;
    io.out(`BROKEN at event ${position}${id ? ` (id ${id})` : ''}: ${reason}\n`);
    return;
  }
  io.out(
    report.events === 0
      ? 'ok: no events (the file or stream is empty, or absent)\n'
      : `ok: ${report.events} events in ${report.writers} chain(s), every link intact\n`,
  );
  for (const p of report.partialStarts) {
    io.out(`note: chain ${p.writer} starts at seq ${p.firstSeq} (older events trimmed or removed)\n`);
  }
}

/** verify: exit 0 when every chain is whole, 1 at the first broken link. */
async function verify(source: TrailSource, values: Values, io: CliIo): Promise<number> {
  const all: string[] = [];
  for await (const l of source.lines()) all.push(l);
  const report = verifyChain(all, { complete: values.complete ?? false });
  if (values.json) io.out(`${JSON.stringify(report)}\n`);
  else printReport(report, io);
  return report.ok ? 0 : 1;
}

/** query prints the matching events, at most --limit of them; tail prints them and what arrives until interrupted. */
async function read(command: 'query' | 'tail', source: TrailSource, values: Values, io: CliIo): Promise<number> {
  const filters = filtersOf(values);
  const fmt = formatter(values.format);
  const limit = limitOf(values.limit);
  if (fmt.header) io.out(`${fmt.header}\n`);
  const print = printer(filters, fmt, io);
  if (command === 'tail') {
    await source.follow(print, io.interrupted);
    return 0;
  }
  let shown = 0;
  for await (const l of source.lines()) {
    if (print(l)) shown += 1;
    if (shown >= limit) break;
  }
  return 0;
}

/** Says why the command failed: 2 for a usage error (with the usage), 1 for anything else. */
function failure(err: unknown, where: string | undefined, io: CliIo): number {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    io.err(`snapgate audit: ${(err as Error).message}\n\n${auditUsage}\n`);
    return 2;
  }
  // ioredis knows only host and port (never a URL), so its messages hold nothing secret.
  io.err(`snapgate audit: ${where !== undefined ? `redis ${where}: ` : ''}${(err as Error).message}\n`);
  return 1;
}

/** Runs `snapgate audit …`; returns the exit code. */
export async function runAuditCli(argv: string[], io: CliIo): Promise<number> {
  let source: TrailSource | undefined;
  try {
    const { command, values } = parseInvocation(argv);
    source = openSource(values, io.env);
    return command === 'verify' ? await verify(source, values, io) : await read(command, source, values, io);
  } catch (err) {
    return failure(err, source?.where, io);
  } finally {
    source?.close();
  }
}
