// `snapgate audit verify|query|tail`: check the hash chains and read the trail from a file or a Redis stream.
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, parse } from 'node:path';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { parseRedisUrl, redisUrlProblems } from '../config/redis-url.js';
import { acceptableRequestId } from '../http/request-id.js';
import { isValidOrg, isValidRuuid } from '../snaplogic/names.js';
import { runtimeActions } from '../snaplogic/runtime-api.js';
import { verifyChain, type VerifyReport } from './chain.js';
import { CheckpointKeyError, parsePublicKeys, trustedKeys, type TrustedKeys } from './checkpoint.js';
import { forEachLine, trailFiles } from './lines.js';
import { TrailProver, type ProofFinding, type ProofReport } from './proof.js';
import type { AuditEvent, AuditEventType, Decision } from './event.js';
import { DEFAULT_AUDIT_STREAM, streamHeadKey } from './sinks.js';

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the user interrupts (Ctrl-C); ends `tail`, and cuts `query` and `verify` short. */
  interrupted: Promise<void>;
}

/** Where checkpoint sinks copy checkpoints in Redis, unless told otherwise. */
const DEFAULT_CHECKPOINT_STREAM = 'audit:{snapgate}:checkpoints';

// Records over the unions: a new decision or event type that is missing here fails the type check, so the
// values the filters accept cannot fall behind the values events carry.
const decisionSet: Record<Decision, true> = {
  allowed: true,
  invalid_request: true,
  unauthenticated: true,
  forbidden: true,
  rate_limited: true,
  conflict: true,
  upstream_error: true,
  unavailable: true,
  aborted: true,
  error: true,
};
const eventTypeSet: Record<AuditEventType, true> = {
  attempt: true,
  outcome: true,
  decision: true,
  denials: true,
  dropped: true,
};
const decisions = Object.keys(decisionSet);
// Checkpoints (audit.checkpoints) are records of the trail too, with members of their own.
const eventTypes = [...Object.keys(eventTypeSet), 'checkpoint'];

const sourceUsage = `source (exactly one):
  --file PATH          PATH and its rotated siblings (PATH.<time>), oldest first
  --redis URL          redis://host:port[/db] or rediss://…, without credentials or a query;
                       a password comes from SNAPGATE_REDIS_PASSWORD
  --cluster HOST:PORT,…  a Redis Cluster (password from SNAPGATE_REDIS_PASSWORD)
  --stream KEY         with --redis or --cluster: the stream (default ${DEFAULT_AUDIT_STREAM})`;

const filterUsage = `filters (a flag given twice matches either value; different flags must all match):
  --request-id ID      the request's id (X-Request-Id): 1-128 of A-Z a-z 0-9 . _ : -
  --org ORG            a SnapLogic org name (case-sensitive)
  --caller SUB         the caller's token sub or client id
  --decision D         ${decisions.join(' ')}
  --type T             ${eventTypes.join(' ')}
  --action A           ${runtimeActions.join(' ')}
  --ruuid RUUID        a runtime id (<24 hex>_<uuid>)
  --since TIME         events at or after TIME; --until TIME: at or before TIME
                       TIME: 2026-11-29T10:00:00Z (or an offset such as +01:00), 2026-11-29 (midnight UTC),
                       or an age: 30s, 15m, 2h, 7d ago
output:
  --format json|table  json (default): one event per line; table: a header, then tab-separated columns
                       time type decision reason org ruuid caller status upstream ms count request-id
  --json               the same as --format json`;

const commandUsage: Record<Command, string> = {
  verify: `usage: snapgate audit verify SOURCE [--key FILE]... [checkpoint copies] [--since T] [--at T] [--json]
Checks every writer's hash chain. With --key it also checks the writers' signed checkpoints, which proves
that no event was edited (even with every hash recomputed), no chain cut off, no writer deleted or inserted
and no checkpoint replayed; it lists every finding (kind, record number, file:line or stream entry id).
Without --key only the links are checked, up to the first broken one.
Exits 0 when intact, 1 when broken (printed), 3 when unverifiable (no records, or a source that cannot be
read), 2 on a usage error.
  --key FILE           an Ed25519 public key the writers sign with (PEM, JWK or JWKS; the .pub file that
                       snapgate keys generate --alg Ed25519 writes); give it again for each key in use
                       (rotation): a checkpoint signed by any other key is forged
  --checkpoints-file FILE   checkpoint copies (a checkpoint sink's file, and its rotated siblings; give it
                       again for each worker slot's copies file): a chain that ends before its copies
                       say, or differs from them, is found
  --checkpoints-redis URL   checkpoint copies in a Redis stream (redis://host:port[/db]); a password
                       comes from SNAPGATE_CHECKPOINT_REDIS_PASSWORD
  --checkpoints-stream KEY  that stream (default ${DEFAULT_CHECKPOINT_STREAM})
  --store NAME         the store the checkpoints must name (default file:<base name of --file>, or
                       redis:<stream>); copies of other stores are ignored
  --since TIME         check each writer from its first checkpoint at or after TIME (earlier records are
                       read but not checked); TIME as for query: 2026-11-29T10:00:00Z, 2026-11-29, 2h
  --at TIME            judge silent writers as of TIME (default now): a writer that did not shut down
                       and has no checkpoint for longer than its interval (plus up to 5 s) is silent
  --complete           without --key: a chain that starts after seq 1 (older events trimmed or removed) is
                       a break too
  --json               print the report as one JSON object
${sourceUsage}`,
  query: `usage: snapgate audit query SOURCE [filters] [--format json|table] [--limit N]
Prints the stored events that match every filter, oldest first. Exits 0, also when nothing matches (table: the
header alone); 2 when a flag or a filter value is not valid (nothing is printed on stdout).
  --limit N            stop after N matching events (N a positive whole number)
${sourceUsage}
${filterUsage}`,
  tail: `usage: snapgate audit tail SOURCE [filters] [--format json|table] [--from-start] [--limit N]
Follows the trail: prints matching events as they are written, from now on, until Ctrl-C (exit 0). A file is
followed across rotation.
  --from-start         print the stored events first (every rotated file too), then follow
  --limit N            exit after printing N matching events
${sourceUsage}
${filterUsage}`,
};

/** Every command's usage; `snapgate audit --help` prints it. */
export const auditUsage = `usage:
  snapgate audit verify SOURCE [--key FILE]... [--checkpoints-file FILE] [--checkpoints-redis URL]
                        [--since T] [--at T] [--store NAME] [--complete] [--json]
  snapgate audit query  SOURCE [filters] [--format json|table] [--limit N]
  snapgate audit tail   SOURCE [filters] [--format json|table] [--from-start] [--limit N]
  snapgate audit COMMAND --help     one command's options

${sourceUsage}
${filterUsage}
verify exits 0 when every chain is whole, 1 at the first broken link (printed), with --key 0 intact, 1 broken
(every finding printed), 3 unverifiable; every command exits 2 on a usage error (an unknown flag, or a filter
value that is not valid), printing nothing on stdout.`;

const options = {
  file: { type: 'string' },
  redis: { type: 'string' },
  cluster: { type: 'string' },
  stream: { type: 'string' },
  complete: { type: 'boolean' },
  json: { type: 'boolean' },
  'request-id': { type: 'string', multiple: true },
  org: { type: 'string', multiple: true },
  caller: { type: 'string', multiple: true },
  decision: { type: 'string', multiple: true },
  type: { type: 'string', multiple: true },
  action: { type: 'string', multiple: true },
  ruuid: { type: 'string', multiple: true },
  since: { type: 'string' },
  until: { type: 'string' },
  format: { type: 'string' },
  limit: { type: 'string' },
  'from-start': { type: 'boolean' },
  key: { type: 'string', multiple: true },
  'checkpoints-file': { type: 'string', multiple: true },
  'checkpoints-redis': { type: 'string' },
  'checkpoints-stream': { type: 'string' },
  store: { type: 'string' },
  at: { type: 'string' },
} as const;

type OptionName = keyof typeof options;

const sourceNames: OptionName[] = ['file', 'redis', 'cluster', 'stream'];
/** verify's flags that need --key. */
const proofNames: OptionName[] = ['key', 'checkpoints-file', 'checkpoints-redis', 'checkpoints-stream', 'store', 'at'];
const filterNames: OptionName[] = [
  'request-id',
  'org',
  'caller',
  'decision',
  'type',
  'action',
  'ruuid',
  'since',
  'until',
];

/** The flags each command takes; any other is refused (a flag another command takes would be silently ignored). */
const accepted: Record<Command, readonly OptionName[]> = {
  verify: [...sourceNames, ...proofNames, 'since', 'complete', 'json'],
  query: [...sourceNames, ...filterNames, 'format', 'json', 'limit'],
  tail: [...sourceNames, ...filterNames, 'format', 'json', 'limit', 'from-start'],
};

class UsageError extends Error {}

type Command = 'verify' | 'query' | 'tail';

const commands: readonly string[] = ['verify', 'query', 'tail'] satisfies Command[];

const isCommand = (text: string | undefined): text is Command => commands.includes(text ?? '');

/**
 * A value as messages quote it: JSON-quoted, control and format characters escaped (a value pasted with a stray
 * escape sequence cannot drive the terminal), and cut at 80 characters.
 */
function quoted(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(cut).replace(
    /[\p{Cc}\p{Cf}]/gu,
    (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`,
  );
}

/** `--name` and its options. */
const flagList = (names: readonly string[]) => names.map((n) => `--${n}`).join(' ');

/** The command and its options. Throws UsageError, or parseArgs' ERR_PARSE_ARGS_* errors. */
function parseInvocation(argv: string[]) {
  const [command, ...rest] = argv;
  if (!isCommand(command)) {
    throw new UsageError(
      command === undefined ? 'name a command: verify, query or tail' : `unknown command ${quoted(command)}`,
    );
  }
  // A lenient pass first, to name a flag this command does not take rather than fail on its value.
  const loose = parseArgs({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  for (const t of loose.tokens) {
    if (t.kind === 'positional') {
      // Not echoed when it may be a URL: `audit verify redis://:password@host` must not print the password.
      throw new UsageError(
        /[@:/]/.test(t.value)
          ? 'unexpected argument (not shown: it looks like a URL or a path); give a trail with --file or --redis'
          : `unexpected argument ${quoted(t.value)}; every value follows its flag, as in --decision forbidden`,
      );
    }
    if (t.kind === 'option' && !(accepted[command] as readonly string[]).includes(t.name)) {
      throw new UsageError(
        `unknown option ${quoted(t.rawName)} for audit ${command}; it takes ${flagList(accepted[command])}`,
      );
    }
  }
  const { values, tokens } = parseArgs({ args: rest, options, strict: true, allowPositionals: false, tokens: true });
  // Only filters may repeat: a second --since or --limit would silently replace the first.
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    if (seen.has(t.name) && !(options[t.name] as { multiple?: boolean }).multiple) {
      throw new UsageError(`--${t.name} is given more than once`);
    }
    seen.add(t.name);
  }
  const sources = [values.file, values.redis, values.cluster].filter((v) => v !== undefined).length;
  if (sources !== 1) throw new UsageError('give exactly one of --file, --redis, --cluster');
  if (values.stream !== undefined && values.file !== undefined) {
    throw new UsageError('--stream names a Redis stream: use it with --redis or --cluster, not --file');
  }
  if (values.stream === '') throw new UsageError('--stream must not be empty');
  if (values.file === '') throw new UsageError('--file must not be empty');
  // A Redis URL given to --file is never echoed (it may hold a password).
  if (values.file?.includes('://')) throw new UsageError('--file takes a path; a Redis URL goes with --redis');
  return { command, values };
}

type Values = ReturnType<typeof parseInvocation>['values'];

/** How a command stops early: Ctrl-C, or --limit reached. Checked synchronously between lines. */
class Stop {
  stopped = false;
  /** True when Ctrl-C stopped it. */
  interrupted = false;
  readonly promise: Promise<void>;
  private resolve: () => void = () => undefined;

  constructor(interrupted: Promise<void>) {
    this.promise = new Promise<void>((r) => (this.resolve = r));
    void interrupted.then(() => {
      if (!this.stopped) this.interrupted = true;
      this.stop();
    });
  }

  stop(): void {
    this.stopped = true;
    this.resolve();
  }
}

/** Waits `ms`, or less when stopped. The timer is not unref'd: it is what keeps a following CLI alive. */
function pause(ms: number, stop: Stop): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), stop.promise]).finally(() =>
    clearTimeout(timer),
  );
}

/** Where the trail is read from: a file with its rotated siblings, or a Redis stream. */
interface TrailSource {
  /** How failures name a Redis source (host:port only); undefined for a file. */
  readonly where: string | undefined;
  /** Every stored line, oldest first. */
  lines(): AsyncGenerator<string>;
  /**
   * Hands `print` each line written from now on (with `fromStart`: every stored line first), until `stop` is
   * stopped. Calls `ready` once it knows where to start (so a usage error comes before any output).
   */
  follow(print: (line: string) => void, stop: Stop, options: FollowOptions): Promise<void>;
  close(): void;
}

interface FollowOptions {
  fromStart: boolean;
  ready: () => void;
  /** Where to say that the file is not there yet. */
  note: (text: string) => void;
}

/** PATH's rotated siblings (PATH.<time>), oldest first: the rotation stamp sorts by time. */
async function rotatedOf(path: string): Promise<string[]> {
  const base = basename(path);
  return (await readdir(dirname(path)).catch(() => [] as string[]))
    .filter((n) => n.startsWith(`${base}.`))
    .sort()
    .map((n) => join(dirname(path), n));
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Every line of a file, streamed (a trail file can be large). */
async function* fileLines(path: string): AsyncGenerator<string> {
  const input = createReadStream(path, { encoding: 'utf8' });
  try {
    for await (const l of createInterface({ input, crlfDelay: Infinity })) if (l) yield l;
  } finally {
    input.destroy();
  }
}

/** How often `tail --file` looks for new lines. */
const FILE_POLL_MS = 250;

class FileSource implements TrailSource {
  readonly where = undefined;

  constructor(private readonly path: string) {}

  async *lines(): AsyncGenerator<string> {
    const files = [...(await rotatedOf(this.path)), ...((await exists(this.path)) ? [this.path] : [])];
    if (files.length === 0) throw new UsageError(`no audit file at ${this.path}`);
    for (const file of files) yield* fileLines(file);
  }

  /**
   * Polls every 250 ms, like `tail -F`: the file stays open between polls, so when the sink renames it (rotation)
   * the rest of the old file is still read, then any file rotated since (several rotations between two polls),
   * then the new file at PATH from its start. Rotated files are known by inode, so none is read twice. A file
   * that shrank in place was truncated: it is read again from its start. Nothing at PATH yet: waits for it.
   */
  async follow(print: (line: string) => void, stop: Stop, { fromStart, ready, note }: FollowOptions): Promise<void> {
    if (!(await exists(dirname(this.path)))) throw new UsageError(`no directory ${dirname(this.path)} for --file`);
    // Inodes of the files already read (or, from now, already there): never read again.
    const done = new Set<number>();
    const inoOf = (path: string) =>
      stat(path).then(
        (s) => s.ino,
        () => undefined,
      );
    /** Reads the rotated files not read yet, oldest first, except the one now at PATH (`current`). */
    const catchUp = async (current: number | undefined, printing: boolean): Promise<void> => {
      for (const file of await rotatedOf(this.path)) {
        const ino = await inoOf(file);
        if (ino === undefined || done.has(ino) || ino === current) continue;
        done.add(ino);
        if (!printing) continue;
        for await (const l of fileLines(file)) {
          if (stop.stopped) return;
          print(l);
        }
      }
    };
    let fh: FileHandle | undefined;
    let ino = 0;
    let offset = 0;
    let decoder = new StringDecoder('utf8');
    // undefined: drop what comes before the first newline (tail started in the middle of a line).
    let partial: string | undefined = '';
    const openCurrent = async (atEnd: boolean): Promise<boolean> => {
      fh = await open(this.path, 'r').catch(() => undefined);
      if (fh === undefined) return false;
      const s = await fh.stat();
      ino = s.ino;
      offset = atEnd ? s.size : 0;
      decoder = new StringDecoder('utf8');
      partial = '';
      if (atEnd && s.size > 0) {
        const last = Buffer.alloc(1);
        await fh.read(last, 0, 1, s.size - 1);
        if (last[0] !== 0x0a) partial = undefined;
      }
      return true;
    };
    /** Prints the complete lines written since the last read. */
    const drain = async (handle: FileHandle): Promise<void> => {
      const size = (await handle.stat()).size;
      if (size < offset) {
        offset = 0;
        decoder = new StringDecoder('utf8');
        partial = '';
      }
      while (offset < size && !stop.stopped) {
        const buf = Buffer.alloc(Math.min(size - offset, 1 << 20));
        const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        // The decoder keeps a character split between two reads for the next one.
        const parts = decoder.write(buf.subarray(0, bytesRead)).split('\n');
        if (partial === undefined) {
          if (parts.length === 1) continue;
          parts[0] = '';
          partial = '';
        }
        parts[0] = partial + parts[0]!;
        partial = parts.pop() ?? '';
        for (const l of parts) {
          if (stop.stopped) return;
          if (l) print(l);
        }
      }
    };
    try {
      await catchUp(await inoOf(this.path), fromStart);
      const opened = await openCurrent(!fromStart);
      // PATH may have been rotated between the listing and the open: what was rotated since comes first (from
      // now: it is old, and only marked read).
      if (opened) await catchUp(ino, fromStart);
      ready();
      if (!opened) note(`waiting for ${this.path} to be created`);
      while (!stop.stopped) {
        if (fh !== undefined) await drain(fh);
        const now = await inoOf(this.path);
        if (fh !== undefined && now !== ino) {
          // Rotated (renamed) or removed: what was written before the rename is read, then the old file is left.
          await drain(fh);
          await fh.close();
          fh = undefined;
          done.add(ino);
        }
        // A file that appears at PATH after tail started holds only new events: it is read from its start, after
        // the files rotated since the last one read.
        if (fh === undefined && now !== undefined && (await openCurrent(false))) {
          await catchUp(ino, true);
          continue;
        }
        await pause(FILE_POLL_MS, stop);
      }
    } finally {
      await fh?.close();
    }
  }

  close(): void {
    // follow closes what it opened; lines opens one file at a time.
  }
}

/** Stream entries read per XRANGE or XREAD call. */
const PAGE = 1000;

/** How long one XREAD waits for new entries. */
const BLOCK_MS = 500;

/** The event JSON of a stream entry: the value of its `e` field. */
function eventLine(fields: string[]): string | undefined {
  const i = fields.indexOf('e');
  return i >= 0 ? fields[i + 1] : undefined;
}

class RedisSource implements TrailSource {
  constructor(
    readonly client: Redis | Cluster,
    readonly where: string,
    readonly stream: string,
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

  /**
   * From now: XREAD after the stream's last entry as it is when tail starts (not `$` on each call, which would
   * lose what is added between two calls); with fromStart, after 0-0. Each XREAD blocks for at most 500 ms, and
   * a stop does not wait for it.
   */
  async follow(print: (line: string) => void, stop: Stop, { fromStart, ready }: FollowOptions): Promise<void> {
    let last = '0-0';
    if (!fromStart) {
      const newest = (await this.client.xrevrange(this.stream, '+', '-', 'COUNT', 1)) as [string, string[]][];
      last = newest[0]?.[0] ?? '0-0';
    }
    ready();
    while (!stop.stopped) {
      const read = this.client.xread('COUNT', PAGE, 'BLOCK', BLOCK_MS, 'STREAMS', this.stream, last);
      // On a stop the pending XREAD is left to fail when close() disconnects; race has handled its rejection.
      const res = await Promise.race([read, stop.promise.then(() => null)]);
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          if (stop.stopped) return;
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

/** Entries per XRANGE call when verifying: fewer round trips than query's pages. */
const VERIFY_PAGE = 5000;

/**
 * Every entry of `stream` from `start` (an XRANGE id) on, with its id; an entry without an `e` field is handed on
 * as an empty line (a verifier reports it). Returns false when `stopped` cut it short.
 */
async function eachEntry(
  client: Redis | Cluster,
  stream: string,
  start: string,
  onLine: (line: string, id: string) => void,
  stopped: () => boolean,
): Promise<boolean> {
  let from = start;
  for (;;) {
    if (stopped()) return false;
    const page = (await client.xrange(stream, from, '+', 'COUNT', VERIFY_PAGE)) as [string, string[]][];
    for (const [id, fields] of page) {
      onLine(eventLine(fields) ?? (fields.length === 2 ? fields[1]! : ''), id);
      from = `(${id}`;
    }
    if (page.length < VERIFY_PAGE) return true;
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

/** What verify --key checks against, every flag checked (and the keys read) before any source is opened. */
interface ProofPlan {
  keys: TrustedKeys;
  at: number;
  since?: number;
  store: string | readonly string[];
  checkpointsFiles?: string[];
  checkpointsRedis?: { host: string; port: number; db: number; tls: boolean; where: string; stream: string };
  /** --key files that hold a private key (its public half is used; an auditor needs only the public one). */
  privateKeyFiles: string[];
}

/** The trusted keys from each --key file. A problem names the file, never what it holds. */
async function loadKeys(files: readonly string[]): Promise<{ keys: TrustedKeys; privateKeyFiles: string[] }> {
  const all = [];
  const privateKeyFiles: string[] = [];
  const advice =
    "give the writers' Ed25519 public key as PEM, JWK or JWKS (the .pub file snapgate keys generate --alg Ed25519 " +
    'writes)';
  for (const file of files) {
    if (file === '') throw new UsageError('--key must not be empty');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `--key ${quoted(file)} cannot be read (${(err as { code?: string }).code ?? 'error'}); ${advice}`,
      );
    }
    let keys;
    try {
      keys = parsePublicKeys(text);
    } catch (err) {
      // Only our own messages are repeated: a parser's may quote the file's text.
      throw new UsageError(
        `--key ${quoted(file)} ${err instanceof CheckpointKeyError ? err.message : 'is not a key file'}; ${advice}`,
      );
    }
    if (keys.length === 0) throw new UsageError(`--key ${quoted(file)} holds no key; ${advice}`);
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----|"d"\s*:/.test(text)) privateKeyFiles.push(file);
    all.push(...keys);
  }
  return { keys: trustedKeys(all), privateKeyFiles };
}

/** undefined without --key (the links alone are checked, as before checkpoints existed). */
async function proofPlan(values: Values): Promise<ProofPlan | undefined> {
  if (values.key === undefined) {
    const stray = [...proofNames, 'since' as const].find((n) => values[n] !== undefined);
    if (stray !== undefined) {
      throw new UsageError(`--${stray} is about signed checkpoints: give the writers' public key with --key FILE too`);
    }
    return undefined;
  }
  if (values.complete) {
    throw new UsageError(
      '--complete is for verify without --key; with --key a chain that starts after seq 1 must be explained by a ' +
        'signed retention marker anyway',
    );
  }
  const now = Date.now();
  const plan: ProofPlan = {
    ...(await loadKeys(values.key)),
    at: values.at === undefined ? now : timeOf('at', values.at, now),
    store:
      values.store ??
      (values.file !== undefined
        ? // A rotated file (audit.jsonl.<time>) belongs to the store of the file it was rotated from; a file may
          // also hold a trail captured from stdout (the default sink).
          [`file:${basename(values.file).replace(/\.\d{4}-\d{2}-\d{2}T[^/]*$/, '')}`, 'stdout']
        : `redis:${values.stream ?? DEFAULT_AUDIT_STREAM}`),
  };
  if (values.store === '') throw new UsageError('--store must not be empty');
  if (values.since !== undefined) plan.since = timeOf('since', values.since, now);
  // Repeatable: with server.workers each slot keeps its copies in a file of its own, and a Redis trail that all
  // the workers write is checked against every slot's copies.
  const cpFiles = values['checkpoints-file'];
  if (cpFiles !== undefined) {
    for (const cpFile of cpFiles) {
      if (cpFile === '') throw new UsageError('--checkpoints-file must not be empty');
      if (cpFile.includes('://')) {
        throw new UsageError('--checkpoints-file takes a path; a Redis URL goes with --checkpoints-redis');
      }
    }
    plan.checkpointsFiles = cpFiles;
  }
  const cpStream = values['checkpoints-stream'];
  if (cpStream !== undefined && values['checkpoints-redis'] === undefined) {
    throw new UsageError('--checkpoints-stream names a Redis stream: use it with --checkpoints-redis');
  }
  if (cpStream === '') throw new UsageError('--checkpoints-stream must not be empty');
  if (values['checkpoints-redis'] !== undefined) {
    const parsed = parseRedisUrl(values['checkpoints-redis']);
    if (!parsed.ok) {
      throw new UsageError(
        `--checkpoints-redis ${redisUrlProblems[parsed.problem]}; give redis://host:port[/db] or ` +
          'rediss://host:port[/db] and put the password in SNAPGATE_CHECKPOINT_REDIS_PASSWORD',
      );
    }
    plan.checkpointsRedis = { ...parsed.target, stream: cpStream ?? DEFAULT_CHECKPOINT_STREAM };
  }
  return plan;
}

/** The filters that match a value against a set of accepted ones, by the event field they read. */
type SetFilter = 'requestId' | 'org' | 'caller' | 'decision' | 'type' | 'action' | 'ruuid';

interface Filters {
  sets: Partial<Record<SetFilter, ReadonlySet<string>>>;
  since?: number;
  until?: number;
}

/** Each filter flag's check, and what the message says it takes. */
const filterChecks: Record<
  'request-id' | 'org' | 'caller' | 'decision' | 'type' | 'action' | 'ruuid',
  { key: SetFilter; ok: (v: string) => boolean; takes: string }
> = {
  'request-id': {
    key: 'requestId',
    ok: (v) => acceptableRequestId(v) === v,
    takes: 'a request id: 1 to 128 letters, digits, ".", "_", ":" or "-" (what X-Request-Id and the trail carry)',
  },
  org: {
    key: 'org',
    ok: isValidOrg,
    takes:
      'a SnapLogic org name: letters, digits, ".", "_" or "-", starting with a letter or digit, at most 100 ' +
      'characters, no ".." (case-sensitive)',
  },
  // A token's sub may be almost anything; only what no sub or client id can hold is refused.
  caller: {
    key: 'caller',
    ok: (v) => /^[^\p{Cc}]{1,256}$/u.test(v),
    takes: "a caller's token sub or client id: 1 to 256 characters, no control characters",
  },
  decision: { key: 'decision', ok: (v) => decisions.includes(v), takes: `one of: ${decisions.join(', ')}` },
  type: { key: 'type', ok: (v) => eventTypes.includes(v), takes: `one of: ${eventTypes.join(', ')}` },
  action: {
    key: 'action',
    ok: (v) => (runtimeActions as readonly string[]).includes(v),
    takes: `one of: ${runtimeActions.join(', ')}`,
  },
  ruuid: {
    key: 'ruuid',
    ok: isValidRuuid,
    takes:
      'a SnapLogic runtime id: <24 hex>_<uuid>, e.g. 52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5',
  },
};

const isoTime =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?$/;
const age = /^(\d{1,9})(s|m|h|d)$/;
const ageUnitMs = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * --since/--until: an ISO 8601 time with a zone, a date (midnight UTC) or an age ("15m": that long before `now`).
 * Strict where Date.parse is lenient: it takes "1" (the year 2001) and "2026-02-30" (2 March), and reads a time
 * without a zone as local time.
 */
function timeOf(flag: 'since' | 'until' | 'at', text: string, now: number): number {
  const fail = (why: string) =>
    new UsageError(
      `--${flag} ${quoted(text)} ${why}; give an ISO 8601 time such as 2026-11-29T10:00:00Z (or with an offset ` +
        'such as +01:00), a date such as 2026-11-29 (midnight UTC), or an age such as 30s, 15m, 2h, 7d',
    );
  const a = age.exec(text);
  if (a !== null) return now - Number(a[1]) * ageUnitMs[a[2] as keyof typeof ageUnitMs];
  const m = isoTime.exec(text);
  if (m === null) throw fail('is not a time');
  const [, y, mo, d, h, mi, s, zone] = m;
  if (h !== undefined && zone === undefined) throw fail('has no time zone (add Z for UTC, or an offset)');
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  const real =
    day.getUTCFullYear() === Number(y) &&
    day.getUTCMonth() === Number(mo) - 1 &&
    day.getUTCDate() === Number(d) &&
    Number(h ?? 0) < 24 &&
    Number(mi ?? 0) < 60 &&
    Number(s ?? 0) < 60;
  const t = Date.parse(h === undefined ? `${text}T00:00:00Z` : text);
  if (!real || Number.isNaN(t)) throw fail('is not a real date and time');
  return t;
}

/** The filters, each value checked: a typo is a usage error, never an empty result. */
function filtersOf(values: Values, now: number): Filters {
  const f: Filters = { sets: {} };
  for (const [flag, check] of Object.entries(filterChecks) as [keyof typeof filterChecks, typeof filterChecks.org][]) {
    const given = values[flag];
    if (given === undefined) continue;
    for (const v of given) {
      if (!check.ok(v)) throw new UsageError(`--${flag} ${quoted(v)} is not valid: it takes ${check.takes}`);
    }
    f.sets[check.key] = new Set(given);
  }
  if (values.since !== undefined) f.since = timeOf('since', values.since, now);
  if (values.until !== undefined) f.until = timeOf('until', values.until, now);
  if (f.since !== undefined && f.until !== undefined && f.since > f.until) {
    throw new UsageError(
      `--since ${quoted(values.since!)} is after --until ${quoted(values.until!)}: nothing can match`,
    );
  }
  return f;
}

/** True when the set is absent (no such filter) or holds the value. */
const within = (set: ReadonlySet<string> | undefined, value: string | null | undefined) =>
  set === undefined || (typeof value === 'string' && set.has(value));

function matches(e: AuditEvent, f: Filters): boolean {
  const { sets } = f;
  if (!within(sets.requestId, e.requestId)) return false;
  if (!within(sets.org, e.org)) return false;
  if (sets.caller !== undefined && !within(sets.caller, e.caller?.sub) && !within(sets.caller, e.caller?.clientId)) {
    return false;
  }
  if (!within(sets.decision, e.decision)) return false;
  if (!within(sets.type, e.type)) return false;
  if (!within(sets.action, e.action)) return false;
  if (!within(sets.ruuid, e.ruuid)) return false;
  if (f.since !== undefined || f.until !== undefined) {
    // An event without a readable time matches no time bound.
    const t = Date.parse(e.time);
    if (Number.isNaN(t)) return false;
    if (f.since !== undefined && t < f.since) return false;
    if (f.until !== undefined && t > f.until) return false;
  }
  return true;
}

/** A table cell: empty for a missing value; control characters (tabs, newlines, escapes) become spaces. */
function cell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  return String(value).replace(/\p{Cc}/gu, ' ');
}

// request-id comes last: scripts that cut the earlier columns by position keep working.
const columns: [string, (e: AuditEvent) => string | number | null | undefined][] = [
  ['time', (e) => e.time],
  ['type', (e) => e.type],
  ['decision', (e) => e.decision],
  ['reason', (e) => e.reason],
  ['org', (e) => e.org],
  ['ruuid', (e) => e.ruuid],
  ['caller', (e) => e.caller?.sub ?? (e.client as AuditEvent['client'] | undefined)?.address],
  ['status', (e) => e.status],
  ['upstream', (e) => e.upstreamStatus],
  ['ms', (e) => e.latencyMs],
  ['count', (e) => e.count],
  ['request-id', (e) => e.requestId],
];

interface Format {
  header?: string;
  row: (e: AuditEvent) => string;
}

function formatter(values: Values): Format {
  const format = values.format ?? 'json';
  if (format !== 'json' && format !== 'table') {
    throw new UsageError(`--format ${quoted(format)} is not valid: it takes json or table`);
  }
  if (values.json && format === 'table') throw new UsageError('--json and --format table contradict each other');
  if (format === 'json') return { row: (e) => JSON.stringify(e) };
  return {
    header: columns.map(([n]) => n).join('\t'),
    row: (e) => columns.map(([, f]) => cell(f(e))).join('\t'),
  };
}

function limitOf(text: string | undefined): number {
  if (text === undefined) return Number.POSITIVE_INFINITY;
  if (!/^[1-9]\d{0,14}$/.test(text)) {
    throw new UsageError(`--limit ${quoted(text)} is not valid: it takes a positive whole number (1, 2, 3, …)`);
  }
  return Number(text);
}

/**
 * Prints each line that holds a matching event, and stops `stop` once `limit` were printed. A line that is not an
 * event (not JSON, or not an object) is skipped, saying so on stderr.
 */
function printer(filters: Filters, fmt: Format, limit: number, stop: Stop, io: CliIo): (line: string) => void {
  let shown = 0;
  return (line) => {
    let e: AuditEvent;
    try {
      e = JSON.parse(line) as AuditEvent;
    } catch {
      io.err(`snapgate audit: skipping a line that is not JSON\n`);
      return;
    }
    if (typeof e !== 'object' || e === null || Array.isArray(e)) {
      io.err(`snapgate audit: skipping a line that is not an audit event\n`);
      return;
    }
    if (!matches(e, filters)) return;
    io.out(`${fmt.row(e)}\n`);
    shown += 1;
    if (shown >= limit) stop.stop();
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

/** Exit code of a command cut short by Ctrl-C: 128 + SIGINT, as shells report it. */
const INTERRUPTED = 130;

/** A line as printed: control and format characters escaped (writer ids and details come from the trail). */
const printable = (text: string) =>
  text.replace(/[\p{Cc}\p{Cf}]/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);

const findingLine = (f: ProofFinding) =>
  printable(
    f.position > 0
      ? `${f.kind} at record ${f.position} (${f.where}): ${f.detail}`
      : `${f.kind} in checkpoint copy (${f.where}): ${f.detail}`,
  );

function printProof(report: ProofReport, io: CliIo): void {
  if (report.verdict === 'unverifiable') {
    io.out(`UNVERIFIABLE: ${report.reason}\n`);
    return;
  }
  if (report.verdict === 'broken') {
    io.out(`BROKEN: ${report.findingCount} finding(s) in ${report.records} records of ${report.writers} writers\n`);
    for (const f of report.findings) io.out(`${findingLine(f)}\n`);
    const more = report.findingCount - report.findings.length;
    if (more > 0) io.out(`… and ${more} more finding(s), not listed\n`);
    return;
  }
  io.out(
    `ok: ${report.verified} events in ${report.writers} chain(s), ${report.checkpoints} checkpoints, ` +
      'every link intact and signed\n',
  );
  const skipped = report.records - report.verified;
  if (skipped > 0) {
    io.out(
      `note: ${skipped} record(s) before each writer's first checkpoint at or after --since were not hashed ` +
        '(their order and checkpoints were checked)\n',
    );
  }
  for (const r of report.retained) {
    io.out(
      printable(`note: chain ${r.writer} starts at seq ${r.firstSeq} (older records removed: ${r.reason})`) + '\n',
    );
  }
  for (const r of report.running) {
    if (r.cut === true) {
      io.out(
        printable(
          `note: writer ${r.writer} has no checkpoint left in the trail (retention removed its records up to seq ` +
            `${r.seq}, marker at ${r.lastCheckpoint}), its last record is at seq ${r.lastSeq}; it is running, or ` +
            `records after it were cut off: a checkpoint copy tells, or verify again after ${r.due}`,
        ) + '\n',
      );
      continue;
    }
    io.out(
      printable(
        `note: writer ${r.writer} has not shut down: its last checkpoint is at seq ${r.seq} (${r.lastCheckpoint}), ` +
          `its last record at seq ${r.lastSeq}; it is running, or records after its checkpoint were cut off: ` +
          `a checkpoint copy tells, or verify again after ${r.due}`,
      ) + '\n',
    );
  }
}

/**
 * With server.workers each slot writes its own file (audit.jsonl → audit.w1.jsonl, …): when the configured name
 * holds nothing but slot files sit beside it, say which to give.
 */
async function slotHint(path: string, flag: string): Promise<string> {
  const { dir, name, ext } = parse(path);
  const slot = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.w\\d+${ext.replace('.', '\\.')}$`);
  const found = (await readdir(dir || '.').catch(() => [] as string[])).filter((n) => slot.test(n)).sort();
  if (found.length === 0) return '';
  return ` (the worker slots' files are ${found.join(', ')}: give each with --${flag})`;
}

/** verify --key: every record through the prover; 0 intact, 1 broken, 3 unverifiable. */
async function proveTrail(source: TrailSource, values: Values, plan: ProofPlan, io: CliIo): Promise<number> {
  const stop = new Stop(io.interrupted);
  const stopped = () => stop.stopped;
  // A stream is read from 5 minutes before --since: each writer's anchor checkpoint is at or after --since.
  const readFrom =
    plan.since !== undefined && values.file === undefined ? Math.max(0, plan.since - 300_000) : undefined;
  const prover = new TrailProver({
    keys: plan.keys,
    at: plan.at,
    store: plan.store,
    ...(plan.since !== undefined ? { since: plan.since } : {}),
    ...(readFrom !== undefined ? { readFrom } : {}),
  });
  for (const f of plan.privateKeyFiles) {
    io.err(
      `snapgate audit: note: --key ${quoted(f)} holds a private key; only its public half is used (verifying needs ` +
        'the public key alone: keep the private one on the gateways)\n',
    );
  }
  const unverifiable = (reason: string): number => {
    if (values.json) io.out(`${JSON.stringify({ verdict: 'unverifiable', reason })}\n`);
    else io.out(`UNVERIFIABLE: ${printable(reason)}\n`);
    return 3;
  };
  const interrupted = () => {
    io.err('snapgate audit: interrupted; nothing verified\n');
    return INTERRUPTED;
  };
  // The copies first: they are few, and the trail is then checked against all of them.
  for (const cpFile of plan.checkpointsFiles ?? []) {
    const files = await trailFiles(cpFile);
    if (files.length === 0) {
      return unverifiable(`no checkpoint file at ${cpFile}${await slotHint(cpFile, 'checkpoints-file')}`);
    }
    try {
      if (!(await forEachLine(files, (l, w) => prover.addCheckpointCopy(l, w), stopped))) return interrupted();
    } catch (err) {
      return unverifiable(`cannot read the checkpoint copies in ${cpFile}: ${(err as Error).message}`);
    }
  }
  if (plan.checkpointsRedis !== undefined) {
    const { host, port, db, tls, where, stream } = plan.checkpointsRedis;
    const password = io.env.SNAPGATE_CHECKPOINT_REDIS_PASSWORD;
    const client = new Redis({
      host,
      port,
      db,
      maxRetriesPerRequest: 1,
      ...(password ? { password } : {}),
      ...(tls ? { tls: {} } : {}),
    });
    client.on('error', () => {});
    try {
      if (!(await eachEntry(client, stream, '-', (l, id) => prover.addCheckpointCopy(l, id), stopped))) {
        return interrupted();
      }
    } catch (err) {
      // ioredis knows only host and port, so its messages hold nothing secret.
      return unverifiable(`cannot read the checkpoint copies from redis ${where}: ${(err as Error).message}`);
    } finally {
      client.disconnect();
    }
  }
  if (values.file !== undefined) {
    const files = await trailFiles(values.file);
    if (files.length === 0) {
      return unverifiable(`no audit file at ${values.file}${await slotHint(values.file, 'file')}`);
    }
    try {
      if (!(await forEachLine(files, (l, w) => prover.add(l, w), stopped))) return interrupted();
    } catch (err) {
      return unverifiable(`cannot read ${values.file}: ${(err as Error).message}`);
    }
  } else {
    const redis = source as RedisSource;
    const start = readFrom === undefined ? '-' : String(readFrom);
    try {
      if (!(await eachEntry(redis.client, redis.stream, start, (l, id) => prover.add(l, id), stopped))) {
        return interrupted();
      }
      // Each writer's head key: the highest seq the append script stored. Not signed, so only a cross-check: a
      // stream cut at its end (XDEL) without the key being rewritten too is truncated even before an interval passed.
      const ids = prover.writerIds;
      for (let i = 0; i < ids.length; i += 500) {
        const keys = ids.slice(i, i + 500).map((w) => streamHeadKey(redis.stream, w));
        const heads = await Promise.all(keys.map((k) => redis.client.get(k)));
        heads.forEach((h, j) => {
          if (h !== null) prover.addStoreHead(ids[i + j]!, Number(h), keys[j]!);
        });
      }
    } catch (err) {
      return unverifiable(`cannot read the trail from redis ${source.where ?? ''}: ${(err as Error).message}`);
    }
  }
  const report = prover.finish();
  if (values.json) io.out(`${JSON.stringify(report)}\n`);
  else printProof(report, io);
  return report.verdict === 'intact' ? 0 : report.verdict === 'broken' ? 1 : 3;
}

/** verify: exit 0 when every chain is whole, 1 at the first broken link. */
async function verify(source: TrailSource, values: Values, io: CliIo): Promise<number> {
  const stop = new Stop(io.interrupted);
  const all: string[] = [];
  for await (const l of source.lines()) {
    if (stop.stopped) {
      io.err('snapgate audit: interrupted; nothing verified\n');
      return INTERRUPTED;
    }
    all.push(l);
  }
  const report = verifyChain(all, { complete: values.complete ?? false });
  if (values.json) io.out(`${JSON.stringify(report)}\n`);
  else printReport(report, io);
  io.err(
    'snapgate audit: note: signed checkpoints were not checked, so a cut-off, deleted or inserted chain, or edits ' +
      "with every hash recomputed, go unnoticed; give the writers' public key with --key FILE\n",
  );
  return report.ok ? 0 : 1;
}

/** What query and tail print, every flag checked before anything is opened or printed. */
interface ReadPlan {
  filters: Filters;
  fmt: Format;
  limit: number;
  fromStart: boolean;
}

function readPlan(values: Values): ReadPlan {
  return {
    filters: filtersOf(values, Date.now()),
    fmt: formatter(values),
    limit: limitOf(values.limit),
    fromStart: values['from-start'] ?? false,
  };
}

/**
 * query prints the matching stored events (at most --limit), the table header once the source was read (so a
 * missing file prints nothing on stdout); tail prints those written from now on (--from-start: the stored ones
 * first) until interrupted (exit 0) or --limit reached, the header as soon as it follows.
 */
async function read(command: 'query' | 'tail', source: TrailSource, plan: ReadPlan, io: CliIo): Promise<number> {
  const { filters, fmt, limit, fromStart } = plan;
  const stop = new Stop(io.interrupted);
  let headed = fmt.header === undefined;
  const header = () => {
    if (!headed) io.out(`${fmt.header}\n`);
    headed = true;
  };
  const row = printer(filters, fmt, limit, stop, io);
  const print = (line: string) => {
    header();
    row(line);
  };
  if (command === 'tail') {
    await source.follow(print, stop, { fromStart, ready: header, note: (t) => io.err(`snapgate audit: ${t}\n`) });
    return 0;
  }
  // header() on the first line only prints it before a row; lines() fails first on a missing file.
  let printed = false;
  for await (const l of source.lines()) {
    if (stop.stopped) break;
    if (!printed) {
      printed = true;
      header();
    }
    row(l);
  }
  header();
  // Cut short by Ctrl-C (not by --limit): the output is partial, and the exit code says so.
  return stop.interrupted ? INTERRUPTED : 0;
}

/** Says why the command failed: 2 for a usage error (pointing at the command's --help), 1 for anything else. */
function failure(err: unknown, command: string | undefined, where: string | undefined, io: CliIo): number {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    // parseArgs' messages run over several lines of advice; the first says what is wrong.
    const message = (err as Error).message.split('\n')[0]!;
    const help = isCommand(command) ? `snapgate audit ${command} --help` : 'snapgate audit --help';
    io.err(`snapgate audit: ${message}\n(${help} lists the options)\n`);
    return 2;
  }
  // ioredis knows only host and port (never a URL), so its messages hold nothing secret.
  io.err(`snapgate audit: ${where !== undefined ? `redis ${where}: ` : ''}${(err as Error).message}\n`);
  return 1;
}

/**
 * Runs `snapgate audit …`; returns the exit code. `--help` (or `-h`) anywhere prints the usage of the command it
 * follows (or of every command) on stdout and returns 0.
 */
export async function runAuditCli(argv: string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'help' || first === '--help' || first === '-h' || rest.includes('--help') || rest.includes('-h')) {
    const named = first === 'help' ? rest[0] : first;
    io.out(`${isCommand(named) ? commandUsage[named] : auditUsage}\n`);
    return 0;
  }
  let source: TrailSource | undefined;
  try {
    const { command, values } = parseInvocation(argv);
    // Before the source is opened: a bad filter fails without connecting to anything.
    const plan = command === 'verify' ? undefined : readPlan(values);
    const proof = command === 'verify' ? await proofPlan(values) : undefined;
    source = openSource(values, io.env);
    if (proof !== undefined) return await proveTrail(source, values, proof, io);
    return plan === undefined
      ? await verify(source, values, io)
      : await read(command as 'query' | 'tail', source, plan, io);
  } catch (err) {
    return failure(err, first, source?.where, io);
  } finally {
    source?.close();
  }
}
