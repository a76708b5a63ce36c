// `snapgate audit verify|query|tail`: check the hash chains and read the trail from a file or a Redis stream.
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { parseRedisUrl, redisUrlProblems } from '../config/redis-url.js';
import { verifyChain } from './chain.js';
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

async function* fileLines(path: string): AsyncGenerator<string> {
  for (const file of await filesOf(path)) {
    for (const l of (await readFile(file, 'utf8')).split('\n')) if (l) yield l;
  }
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
    const nodes = values.cluster.split(',').map((hp) => {
      const m = /^([^:@/?#\s]+):(\d{1,5})$/.exec(hp);
      if (m === null)
        throw new UsageError('--cluster takes HOST:PORT,HOST:PORT,… (a password comes from SNAPGATE_REDIS_PASSWORD)');
      return { host: m[1]!, port: Number(m[2]) };
    });
    return {
      client: new Cluster(nodes, { redisOptions: common }),
      where: `cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`,
    };
  }
  const parsed = parseRedisUrl(values.redis ?? 'redis://127.0.0.1:6379');
  if (!parsed.ok) {
    throw new UsageError(
      `--redis ${redisUrlProblems[parsed.problem]}; give redis://host:port[/db] or rediss://host:port[/db] and put the password in SNAPGATE_REDIS_PASSWORD`,
    );
  }
  const { host, port, db, tls } = parsed.target;
  return { client: new Redis({ ...common, host, port, db, ...(tls ? { tls: {} } : {}) }), where: parsed.target.where };
}

async function* streamLines(client: Redis | Cluster, stream: string): AsyncGenerator<string> {
  let start = '-';
  for (;;) {
    const page = (await client.xrange(stream, start, '+', 'COUNT', 1000)) as [string, string[]][];
    for (const [id, fields] of page) {
      const i = fields.indexOf('e');
      if (i >= 0 && fields[i + 1] !== undefined) yield fields[i + 1]!;
      start = `(${id}`;
    }
    if (page.length < 1000) return;
  }
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

function formatter(format: string | undefined): { header?: string; row: (e: AuditEvent) => string } {
  if (format === undefined || format === 'json') return { row: (e) => JSON.stringify(e) };
  if (format !== 'table') throw new UsageError('--format is json or table');
  return { header: columns.map(([n]) => n).join('\t'), row: (e) => columns.map(([, f]) => f(e)).join('\t') };
}

/** Runs `snapgate audit …`; returns the exit code. */
export async function runAuditCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  let client: Redis | Cluster | undefined;
  let where: string | undefined;
  try {
    const { values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false });
    const sources = [values.file, values.redis, values.cluster].filter((v) => v !== undefined).length;
    if (!['verify', 'query', 'tail'].includes(command ?? '') || sources !== 1)
      throw new UsageError('name a command and exactly one of --file, --redis, --cluster');
    const stream = values.stream ?? DEFAULT_AUDIT_STREAM;
    if (values.file === undefined) {
      ({ client, where } = redisClient(values, io.env));
      client.on('error', () => {});
    }
    const lines = () => (values.file !== undefined ? fileLines(values.file) : streamLines(client!, stream));

    if (command === 'verify') {
      const all: string[] = [];
      for await (const l of lines()) all.push(l);
      const report = verifyChain(all, { complete: values.complete ?? false });
      if (values.json) io.out(`${JSON.stringify(report)}\n`);
      else if (report.ok) {
        io.out(
          report.events === 0
            ? 'ok: no events (the file or stream is empty, or absent)\n'
            : `ok: ${report.events} events in ${report.writers} chain(s), every link intact\n`,
        );
        for (const p of report.partialStarts)
          io.out(`note: chain ${p.writer} starts at seq ${p.firstSeq} (older events trimmed or removed)\n`);
      } else {
        io.out(
          `BROKEN at event ${report.broken!.position}${report.broken!.id ? ` (id ${report.broken!.id})` : ''}: ${report.broken!.reason}\n`,
        );
      }
      return report.ok ? 0 : 1;
    }

    const filters = filtersOf(values);
    const fmt = formatter(values.format);
    const limit = values.limit !== undefined ? Number(values.limit) : Number.POSITIVE_INFINITY;
    if (Number.isNaN(limit) || limit < 1) throw new UsageError('--limit must be a positive number');
    if (fmt.header) io.out(`${fmt.header}\n`);
    const print = (l: string): boolean => {
      let e: AuditEvent;
      try {
        e = JSON.parse(l) as AuditEvent;
      } catch {
        io.err(`skipping a line that is not JSON\n`);
        return false;
      }
      if (!matches(e, filters)) return false;
      io.out(`${fmt.row(e)}\n`);
      return true;
    };

    if (command === 'query') {
      let shown = 0;
      for await (const l of lines()) {
        if (print(l)) shown += 1;
        if (shown >= limit) break;
      }
      return 0;
    }

    // tail: what exists, then what arrives, until interrupted.
    let stop = false;
    void io.interrupted.then(() => {
      stop = true;
    });
    if (values.file !== undefined) {
      const path = values.file;
      let offset = 0;
      let partial = '';
      while (!stop) {
        const size = await stat(path).then(
          (s) => s.size,
          () => 0,
        );
        if (size < offset) offset = 0; // rotated
        if (size > offset) {
          const fh = await open(path, 'r');
          const buf = Buffer.alloc(size - offset);
          await fh.read(buf, 0, buf.length, offset);
          await fh.close();
          offset = size;
          const text = partial + buf.toString('utf8');
          const parts = text.split('\n');
          partial = parts.pop() ?? '';
          for (const l of parts) if (l) print(l);
        }
        await Promise.race([new Promise((r) => setTimeout(r, 250)), io.interrupted]);
      }
      return 0;
    }
    let last = '0-0';
    while (!stop) {
      const res = await client!.xread('COUNT', 1000, 'BLOCK', 500, 'STREAMS', stream, last);
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          const i = fields.indexOf('e');
          if (i >= 0 && fields[i + 1] !== undefined) print(fields[i + 1]!);
        }
      }
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`snapgate audit: ${(err as Error).message}\n\n${auditUsage}\n`);
      return 2;
    }
    // ioredis knows only host and port (never a URL), so its messages hold nothing secret.
    io.err(`snapgate audit: ${where !== undefined ? `redis ${where}: ` : ''}${(err as Error).message}\n`);
    return 1;
  } finally {
    client?.disconnect();
  }
}
