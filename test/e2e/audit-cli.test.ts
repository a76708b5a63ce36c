// `snapgate audit query|tail|verify` on real trail files (written by the file sink, rotation included) and a real
// Redis stream: the request-id filter and column, every filter value checked, tail from now or from the start,
// --help per command, and the built CLI ending on Ctrl-C and when its reader leaves.
import { spawn } from 'node:child_process';
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runAuditCli } from '../../src/audit/cli.js';
import { ChainWriter, eventBody } from '../../src/audit/chain.js';
import { buildAuditEvent, type AuditEvent, type Decision } from '../../src/audit/event.js';
import { createFileSink, createRedisStreamSink, DEFAULT_AUDIT_STREAM, type Sink } from '../../src/audit/sinks.js';
import { track } from '../helpers/children.js';
import { ROOT, tempDir } from '../helpers/gateway.js';
import { until } from '../helpers/wait.js';
import { useRedis } from '../helpers/world.js';

const redis = useRedis();
const RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';

beforeEach(async () => {
  await redis.client.flushall();
});

/** An event as the gateway builds it, for request `requestId`. */
function event(requestId: string, over: { decision?: Decision; type?: 'attempt' | 'outcome' | 'decision' } = {}) {
  const decision = over.decision ?? 'allowed';
  return buildAuditEvent({
    type: over.type ?? (decision === 'allowed' ? 'outcome' : 'decision'),
    time: new Date(),
    requestId,
    instance: 'cli-test',
    caller: { iss: 'https://issuer.test', sub: 'svc-billing' },
    target: { org: 'Acme-Prod', ruuid: RUUID, action: 'runtime.stop' },
    fields: {},
    decision,
    reason: decision === 'allowed' ? undefined : decision,
    status: decision === 'allowed' ? 200 : 403,
    latencyMs: 3,
    client: { address: '127.0.0.1', userAgent: 'cli-test' },
  });
}

/** A real sink and its chain: what `write` hands it is stored as the gateway stores it. */
class Trail {
  private readonly chain = new ChainWriter('cli-test');
  constructor(private readonly sink: Sink) {}

  static async file(path: string, maxBytes = 1 << 30): Promise<Trail> {
    return new Trail(await createFileSink({ path, maxBytes, fsync: 'never' }));
  }

  static redis(): Trail {
    return new Trail(createRedisStreamSink(redis.client, { stream: DEFAULT_AUDIT_STREAM, maxLen: 100_000 }));
  }

  async write(...requestIds: string[]): Promise<void> {
    await this.sink.append(requestIds.map((id) => this.chain.link(eventBody(event(id)))));
  }

  async writeEvents(events: AuditEvent[]): Promise<void> {
    await this.sink.append(events.map((e) => this.chain.link(eventBody(e))));
  }

  close(): Promise<void> {
    return this.sink.close();
  }
}

/** runAuditCli with its output collected as it comes, and Ctrl-C in the test's hand. */
function run(args: string[]) {
  let out = '';
  let err = '';
  let interrupt: () => void = () => undefined;
  const interrupted = new Promise<void>((r) => (interrupt = r));
  const done = runAuditCli(args, {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: {},
    interrupted,
  });
  return {
    done,
    interrupt,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = run(args);
  const code = await r.done;
  return { code, out: r.out, err: r.err };
}

const HEADER = 'time\ttype\tdecision\treason\torg\truuid\tcaller\tstatus\tupstream\tms\tcount\trequest-id';

/** The request-id column of a table's rows (header dropped). */
function requestIds(table: string): string[] {
  const [header, ...rows] = table.split('\n').filter(Boolean);
  expect(header, table).toBe(HEADER);
  return rows.map((r) => r.split('\t').at(-1)!);
}

function auditPath(): string {
  return join(tempDir('snapgate-audit-cli-'), 'audit.jsonl');
}

describe('audit query --request-id', () => {
  it('matches the id exactly, in a request-id column and in the JSON lines, from a file', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('req-a', 'req-b', 'req-a-2', 'req-a');
    await trail.close();

    const table = await cli(['query', '--file', path, '--request-id', 'req-a', '--format', 'table']);
    expect(table.code, table.err).toBe(0);
    expect(requestIds(table.out)).toEqual(['req-a', 'req-a']);

    const json = await cli(['query', '--file', path, '--request-id', 'req-a-2']);
    const rows = json.out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(rows.map((e) => e.requestId)).toEqual(['req-a-2']);

    const either = await cli(['query', '--file', path, '--request-id', 'req-b', '--request-id', 'req-a-2', '--json']);
    expect(either.out.split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('matches the id in a Redis stream', async () => {
    const trail = Trail.redis();
    await trail.write('r-1', 'r-2', 'r-3');
    const res = await cli(['query', '--redis', redis.server.url, '--request-id', 'r-2', '--format', 'table']);
    expect(res.code, res.err).toBe(0);
    expect(requestIds(res.out)).toEqual(['r-2']);
  });

  it('takes the other filters together with it (all must match)', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.writeEvents([event('x-1'), event('x-1', { decision: 'forbidden' }), event('x-2')]);
    await trail.close();
    const res = await cli(['query', '--file', path, '--request-id', 'x-1', '--decision', 'forbidden', '--json']);
    const rows = res.out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(rows.map((e) => [e.requestId, e.decision])).toEqual([['x-1', 'forbidden']]);
    const limited = await cli([
      'query',
      '--file',
      path,
      '--org',
      'Acme-Prod',
      '--action',
      'runtime.stop',
      '--limit',
      '2',
    ]);
    expect(limited.out.split('\n').filter(Boolean)).toHaveLength(2);
  });
});

describe('filter values', () => {
  const cases: [string, string[], RegExp][] = [
    ['a decision', ['--decision', 'nope'], /--decision "nope".*allowed, invalid_request, unauthenticated, forbidden/],
    ['an event type', ['--type', 'outcomes'], /--type "outcomes".*attempt, outcome, decision, denials, dropped/],
    ['an action', ['--action', 'runtime.delete'], /--action "runtime\.delete".*runtime\.start, runtime\.stop/],
    ['an org with a space', ['--org', 'Acme Prod'], /--org "Acme Prod".*SnapLogic org name/],
    ['an org with ..', ['--org', 'a..b'], /--org "a\.\.b".*no "\.\."/],
    ['a request id with a space', ['--request-id', 'req 1'], /--request-id "req 1".*1 to 128 letters/],
    ['a request id too long', ['--request-id', 'r'.repeat(129)], /--request-id "r{80}….*1 to 128/],
    ['a ruuid', ['--ruuid', 'abc'], /--ruuid "abc".*<24 hex>_<uuid>/],
    ['a caller with a control character', ['--caller', 'svc\u001b[2J'], /--caller "svc\\u001b\[2J".*no control/],
    ['a word for a time', ['--since', 'yesterday'], /--since "yesterday" is not a time.*2026-11-29T10:00:00Z/],
    ['a date that does not exist', ['--until', '2026-02-30'], /--until "2026-02-30" is not a real date/],
    ['a time without a zone', ['--since', '2026-12-01T10:00'], /--since "2026-12-01T10:00" has no time zone/],
    ['a number for a time', ['--since', '1'], /--since "1" is not a time/],
    ['a limit of 0', ['--limit', '0'], /--limit "0".*positive whole number/],
    ['a negative limit', ['--limit=-3'], /--limit "-3".*positive whole number/],
    ['a fractional limit', ['--limit', '1.5'], /--limit "1\.5".*positive whole number/],
    ['a format', ['--format', 'xml'], /--format "xml".*json or table/],
    ['since after until', ['--since', '2026-12-02', '--until', '2026-12-01'], /--since "2026-12-02" is after --until/],
    ['an unknown flag', ['--decisions', 'allowed'], /unknown option "--decisions" for audit query.*--decision/],
    ['a flag of verify', ['--complete'], /unknown option "--complete" for audit query/],
    ['a flag of tail', ['--from-start'], /unknown option "--from-start" for audit query/],
    ['a repeated bound', ['--since', '1h', '--since', '2h'], /--since is given more than once/],
    ['a flag without its value', ['--org'], /--org/],
    ['a stray argument', ['forbidden'], /unexpected argument "forbidden"/],
  ];

  it.each(cases)('refuses %s: exit 2, the flag and value named on stderr, nothing on stdout', async (_, args, msg) => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('req-1');
    await trail.close();
    for (const output of [[], ['--json']]) {
      const res = await cli(['query', '--file', path, ...output, ...args]);
      expect(res.code, res.err).toBe(2);
      expect(res.out).toBe('');
      expect(res.err).toMatch(msg);
      expect(res.err).toContain('snapgate audit query --help');
    }
  });

  it('refuses a bad value before connecting: a Redis nobody listens on still gets exit 2, not a connection error', async () => {
    const res = await cli(['query', '--redis', 'redis://127.0.0.1:1', '--decision', 'nope']);
    expect(res).toMatchObject({ code: 2, out: '' });
    expect(res.err).toMatch(/--decision "nope"/);
    expect(res.err).not.toMatch(/ECONNREFUSED/);
  });

  it('never echoes what may be a Redis URL with a password', async () => {
    const secret = 'pw-Never-Shown-4d1';
    for (const args of [
      ['verify', `redis://:${secret}@127.0.0.1:6379`],
      ['query', '--file', `redis://:${secret}@127.0.0.1:6379`],
      ['tail', '--redis', `redis://:${secret}@127.0.0.1:6379`],
    ]) {
      const res = await cli(args);
      expect(res.code, res.err).toBe(2);
      expect(res.out + res.err).not.toContain(secret);
    }
  });

  it('checks tail and verify flags the same way', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('req-1');
    await trail.close();
    const tail = await cli(['tail', '--file', path, '--decision', 'nope']);
    expect(tail).toMatchObject({ code: 2, out: '' });
    expect(tail.err).toMatch(/--decision "nope".*allowed/);
    const verify = await cli(['verify', '--file', path, '--org', 'Acme-Prod']);
    expect(verify).toMatchObject({ code: 2, out: '' });
    expect(verify.err).toMatch(/unknown option "--org" for audit verify/);
  });

  it('a valid filter that matches nothing exits 0: no lines as JSON, the header alone as a table', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('req-1');
    await trail.close();
    const json = await cli(['query', '--file', path, '--decision', 'rate_limited']);
    expect(json).toEqual({ code: 0, out: '', err: '' });
    const table = await cli(['query', '--file', path, '--request-id', 'req-2', '--format', 'table']);
    expect(table).toEqual({ code: 0, out: `${HEADER}\n`, err: '' });
    // Valid times, an age included, that leave the one event out.
    const old = await cli(['query', '--file', path, '--until', '2026-01-01T00:00:00+01:00']);
    expect(old).toEqual({ code: 0, out: '', err: '' });
    const recent = await cli(['query', '--file', path, '--since', '1h', '--format', 'table']);
    expect(requestIds(recent.out)).toEqual(['req-1']);
  });
});

describe('--help', () => {
  it.each(['verify', 'query', 'tail'])('audit %s --help prints its usage on stdout and exits 0', async (command) => {
    for (const flag of ['--help', '-h']) {
      const res = await cli([command, '--file', '/nonexistent', flag]);
      expect(res.code).toBe(0);
      expect(res.err).toBe('');
      expect(res.out).toMatch(new RegExp(`^usage: snapgate audit ${command} SOURCE`));
    }
    expect((await cli([command, '--help'])).out).toContain('--file PATH');
    if (command !== 'verify') {
      expect((await cli([command, '--help'])).out, 'the table columns listed').toContain(HEADER.replaceAll('\t', ' '));
    }
  });

  it('audit --help lists every command and the filters', async () => {
    const res = await cli(['--help']);
    expect(res.code).toBe(0);
    for (const text of ['audit verify', 'audit query', 'audit tail', '--request-id', '--from-start']) {
      expect(res.out).toContain(text);
    }
  });
});

describe('audit tail --file', () => {
  it('follows from now: old events are not printed, new ones are', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('old-1', 'old-2');
    const tail = run(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      5_000,
      () => `the header; out=${tail.out} err=${tail.err}`,
    );
    await trail.write('new-1', 'new-2');
    await until(
      () => tail.out.includes('new-2'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    expect(await tail.done).toBe(0);
    await trail.close();
    expect(requestIds(tail.out)).toEqual(['new-1', 'new-2']);
    expect(tail.err).toBe('');
  });

  it('keeps following across rotation, each event once and in order', async () => {
    const path = auditPath();
    // Each event is ~700 bytes: a rotation every few writes.
    const trail = await Trail.file(path, 2_000);
    await trail.write('old-1');
    const tail = run(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      5_000,
      () => tail.out,
    );
    const fresh = Array.from({ length: 12 }, (_, i) => `new-${i}`);
    for (const id of fresh) await trail.write(id);
    await until(
      () => tail.out.includes('new-11'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    await tail.done;
    await trail.close();
    expect(readdirSync(join(path, '..')).length).toBeGreaterThan(3);
    expect(requestIds(tail.out)).toEqual(fresh);
  });

  it('--from-start prints every stored event (rotated files first), then what is written after it started', async () => {
    const path = auditPath();
    const trail = await Trail.file(path, 2_000);
    const old = Array.from({ length: 6 }, (_, i) => `old-${i}`);
    for (const id of old) await trail.write(id);
    expect(readdirSync(join(path, '..')).length).toBeGreaterThan(1);
    const tail = run(['tail', '--file', path, '--format', 'table', '--from-start']);
    await until(
      () => tail.out.includes('old-5'),
      5_000,
      () => tail.out,
    );
    await trail.write('new-1', 'new-2');
    await until(
      () => tail.out.includes('new-2'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    expect(await tail.done).toBe(0);
    await trail.close();
    expect(requestIds(tail.out)).toEqual([...old, 'new-1', 'new-2']);
  });

  it('does not print the rest of a line that was half written when it started', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('old-1');
    await trail.close();
    const line = JSON.stringify(event('half'));
    appendFileSync(path, line.slice(0, 40));
    const tail = run(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      5_000,
      () => tail.out,
    );
    appendFileSync(path, `${line.slice(40)}\n${JSON.stringify(event('whole'))}\n`);
    await until(
      () => tail.out.includes('whole'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    await tail.done;
    expect(requestIds(tail.out)).toEqual(['whole']);
    expect(tail.err).toBe('');
  });

  it('--limit ends it after that many matching events; filters apply', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    const tail = run(['tail', '--file', path, '--request-id', 'wanted', '--limit', '1']);
    await new Promise((r) => setTimeout(r, 400));
    await trail.write('other', 'wanted', 'wanted');
    expect(await tail.done).toBe(0);
    await trail.close();
    const lines = tail.out.split('\n').filter(Boolean);
    expect(lines.map((l) => (JSON.parse(l) as AuditEvent).requestId)).toEqual(['wanted']);
  });

  it('waits for a file that is not there yet, saying so on stderr; a missing directory is a usage error', async () => {
    const path = auditPath();
    const tail = run(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.err.includes('waiting for'),
      5_000,
      () => tail.err,
    );
    const trail = await Trail.file(path);
    await trail.write('first');
    await until(
      () => tail.out.includes('first'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    await tail.done;
    await trail.close();
    expect(requestIds(tail.out)).toEqual(['first']);
    const missing = await cli(['tail', '--file', join(path, 'nope', 'audit.jsonl')]);
    expect(missing).toMatchObject({ code: 2, out: '' });
  });
});

describe('audit tail --redis', () => {
  it('follows from now: entries already in the stream are not printed, new ones are', async () => {
    const trail = Trail.redis();
    await trail.write('old-1', 'old-2');
    const tail = run(['tail', '--redis', redis.server.url, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      5_000,
      () => `out=${tail.out} err=${tail.err}`,
    );
    await trail.write('new-1');
    await trail.write('new-2');
    await until(
      () => tail.out.includes('new-2'),
      5_000,
      () => tail.out,
    );
    const started = Date.now();
    tail.interrupt();
    expect(await tail.done).toBe(0);
    // Ctrl-C does not wait for the blocked XREAD.
    expect(Date.now() - started).toBeLessThan(400);
    expect(requestIds(tail.out)).toEqual(['new-1', 'new-2']);
  });

  it('--from-start prints the stream, then what is added', async () => {
    const trail = Trail.redis();
    await trail.write('old-1', 'old-2');
    const tail = run(['tail', '--redis', redis.server.url, '--format', 'table', '--from-start']);
    await until(
      () => tail.out.includes('old-2'),
      5_000,
      () => tail.out,
    );
    await trail.write('new-1');
    await until(
      () => tail.out.includes('new-1'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    await tail.done;
    expect(requestIds(tail.out)).toEqual(['old-1', 'old-2', 'new-1']);
  });

  it('follows an empty or absent stream from its first entry', async () => {
    const tail = run(['tail', '--redis', redis.server.url, '--format', 'table', '--decision', 'allowed']);
    await until(
      () => tail.out.startsWith(HEADER),
      5_000,
      () => `out=${tail.out} err=${tail.err}`,
    );
    await Trail.redis().write('first');
    await until(
      () => tail.out.includes('first'),
      5_000,
      () => tail.out,
    );
    tail.interrupt();
    await tail.done;
    expect(requestIds(tail.out)).toEqual(['first']);
  });
});

describe('the built CLI', () => {
  /** `node dist/src/main.js audit …` with stdout and stderr piped. */
  function spawnCli(args: string[]) {
    const proc = track(
      spawn(process.execPath, [join(ROOT, 'dist/src/main.js'), 'audit', ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    proc.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    return {
      proc,
      exited,
      get out() {
        return out;
      },
      get err() {
        return err;
      },
    };
  }

  it('tail ends with exit 0 on SIGINT, promptly', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    await trail.write('old-1');
    const tail = spawnCli(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      10_000,
      () => `out=${tail.out} err=${tail.err}`,
    );
    await trail.write('new-1');
    await until(
      () => tail.out.includes('new-1'),
      5_000,
      () => tail.out,
    );
    const started = Date.now();
    tail.proc.kill('SIGINT');
    expect(await tail.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(2_000);
    await trail.close();
    expect(requestIds(tail.out)).toEqual(['new-1']);
  });

  it('tail ends with exit 0 once its reader went away and it has something to write', async () => {
    const path = auditPath();
    const trail = await Trail.file(path);
    const tail = spawnCli(['tail', '--file', path, '--format', 'table']);
    await until(
      () => tail.out.startsWith(HEADER),
      10_000,
      () => `out=${tail.out} err=${tail.err}`,
    );
    tail.proc.stdout.destroy();
    // Writes until the pipe's loss is noticed (the first write after the close may still be buffered).
    let code: number | null | undefined;
    void tail.exited.then((c) => (code = c));
    for (let i = 0; i < 50 && code === undefined; i++) {
      await trail.write(`after-${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await trail.close();
    expect(code).toBe(0);
  });

  it('query --help and a bad filter behave as in process', async () => {
    const help = spawnCli(['query', '--help']);
    expect(await help.exited).toBe(0);
    expect(help.out).toMatch(/^usage: snapgate audit query/);
    const bad = spawnCli(['query', '--file', auditPath(), '--decision', 'nope']);
    expect(await bad.exited).toBe(2);
    expect(bad.out).toBe('');
    expect(bad.err).toMatch(/--decision "nope"/);
  });
});
