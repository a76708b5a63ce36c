// `snapgate audit verify --key` as built and deployed (node dist/src/main.js), on real trail files and a real Redis
// stream holding signed checkpoints: an intact trail exits 0, a tamper 1 with its finding, an empty trail 3, a bad
// key file 2; checkpoint copies in a second Redis or a file reveal a trail cut off at its end.
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ChainWriter, eventBody, GENESIS } from '../../src/audit/chain.js';
import { checkpointSigner, signCheckpoint, type CheckpointReason } from '../../src/audit/checkpoint.js';
import { CheckpointCopies } from '../../src/audit/copies.js';
import { createFileSink, createRedisStreamSink, type Sink } from '../../src/audit/sinks.js';
import { SinkWriter, type CheckpointOptions } from '../../src/audit/trail.js';
import { createLogger } from '../../src/log.js';
import { runSnapgate } from '../helpers/cli.js';
import { tempDir } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { RedisServer } from '../helpers/redis-server.js';
import { useRedis } from '../helpers/world.js';
import { sampleEvent } from '../helpers/trail.js';

const redis = useRedis();
const STREAM = 'audit:{snapgate}:events';
const CHECKPOINTS = 'audit:{snapgate}:checkpoints';
const INTERVAL = 10_000;

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
recordSecret(privatePem);
const signer = checkpointSigner(privatePem);

/** A gateway writer: events and signed checkpoints linked into one chain, for the store `store`. */
class Writer {
  readonly chain = new ChainWriter('gw-e2e');
  private prevCheckpoint = GENESIS;
  constructor(private readonly store: string) {}

  event(ms: number): string {
    const body = eventBody(
      sampleEvent({
        type: 'decision',
        time: new Date(ms),
        requestId: `r-${ms}`,
        instance: 'gw-e2e',
        decision: 'forbidden',
        reason: 'forbidden',
        status: 403,
        latencyMs: 2,
      }),
    );
    return this.chain.link(body).line;
  }

  checkpoint(reason: CheckpointReason, ms: number): string {
    const head = this.chain.head;
    const body = signCheckpoint(
      {
        time: new Date(ms).toISOString(),
        writer: this.chain.writer,
        seq: head.seq,
        head: head.hash,
        prevCheckpoint: this.prevCheckpoint,
        reason,
        interval: INTERVAL,
        store: this.store,
      },
      signer,
    );
    const line = this.chain.link(body).line;
    this.prevCheckpoint = this.chain.head.hash;
    return line;
  }
}

/** open, `n` events 1 s apart with an interval checkpoint every 10, then shutdown when `close`; the checkpoints too. */
function trail(store: string, n: number, close: boolean, start = Date.now() - n * 1000 - 2000) {
  const w = new Writer(store);
  const lines = [w.checkpoint('open', start)];
  for (let i = 1; i <= n; i++) {
    lines.push(w.event(start + i * 1000));
    if (i % 10 === 0) lines.push(w.checkpoint('interval', start + i * 1000));
  }
  if (close) lines.push(w.checkpoint('shutdown', start + n * 1000 + 500));
  return { w, lines, checkpoints: lines.filter((l) => l.startsWith('{"v":3,"type":"checkpoint"')) };
}

const dir = tempDir('snapgate-verify-proof-');
const keyFile = join(dir, 'checkpoint.pub');
writeFileSync(keyFile, publicKey.export({ type: 'spki', format: 'pem' }).toString());

function file(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.length > 0 ? `${lines.join('\n')}\n` : '');
  return path;
}

const verify = (args: string[], env: Record<string, string> = {}) => runSnapgate(['audit', 'verify', ...args], { env });

beforeEach(async () => {
  await redis.client.flushall();
});

describe('audit verify --key on a file', () => {
  it('exits 0 on an intact trail, saying how many events, chains and checkpoints it checked', async () => {
    const { lines } = trail('file:intact.jsonl', 25, true);
    const path = file('intact.jsonl', lines);
    const res = await verify(['--file', path, '--key', keyFile]);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toBe(`ok: ${lines.length} events in 1 chain(s), 4 checkpoints, every link intact and signed\n`);
    expect(res.stderr).toBe('');
    const json = await verify(['--file', path, '--key', keyFile, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ verdict: 'intact', records: lines.length, findingCount: 0 });
  });

  it('exits 1 on an edited event, naming the record and its file:line', async () => {
    const { lines } = trail('file:edited.jsonl', 25, true);
    lines[4] = lines[4]!.replace('"status":403', '"status":200');
    const res = await verify(['--file', file('edited.jsonl', lines), '--key', keyFile]);
    expect(res.code, res.stderr).toBe(1);
    const [head, finding, ...rest] = res.stdout.split('\n');
    expect(head).toBe(`BROKEN: 1 finding(s) in ${lines.length} records of 1 writers`);
    expect(finding).toMatch(/^edited at record 5 \(edited\.jsonl:5\): record 5 of gw-e2e\/[0-9a-f]{8}: its hash/);
    expect(rest).toEqual(['']);
  });

  it('exits 3 on an empty or absent trail, 2 on a key file that is not a key (never printing it)', async () => {
    const empty = await verify(['--file', file('empty.jsonl', []), '--key', keyFile]);
    expect(empty.code).toBe(3);
    expect(empty.stdout).toMatch(/^UNVERIFIABLE: the trail holds no records/);
    const absent = await verify(['--file', join(dir, 'nope.jsonl'), '--key', keyFile]);
    expect(absent.code).toBe(3);
    expect(absent.stdout).toMatch(/^UNVERIFIABLE: no audit file at .*nope\.jsonl/);
    // With workers the configured name holds nothing: the slots' files beside it are named.
    file('slotted.w1.jsonl', trail('file:slotted.w1.jsonl', 2, true).lines);
    file('slotted.w2.jsonl', trail('file:slotted.w2.jsonl', 2, true).lines);
    const slotted = await verify(['--file', join(dir, 'slotted.jsonl'), '--key', keyFile]);
    expect(slotted.code).toBe(3);
    expect(slotted.stdout).toContain(
      "(the worker slots' files are slotted.w1.jsonl, slotted.w2.jsonl: give each with --file)",
    );

    const path = file('some.jsonl', trail('file:some.jsonl', 3, true).lines);
    const noCopies = await verify([
      '--file',
      path,
      '--key',
      keyFile,
      '--checkpoints-file',
      join(dir, 'no-copies.jsonl'),
    ]);
    expect(noCopies.code).toBe(3);
    expect(noCopies.stdout).toMatch(/^UNVERIFIABLE: no checkpoint file at .*no-copies\.jsonl/);
    const badAt = await verify(['--file', path, '--key', keyFile, '--at', 'tomorrow']);
    expect(badAt.code).toBe(2);
    expect(badAt.stderr).toMatch(/--at "tomorrow" is not a time/);
    const notKey = join(dir, 'not-a-key.pem');
    writeFileSync(notKey, 'sekrit-not-a-key-7f3a');
    for (const bad of [notKey, join(dir, 'missing.pub')]) {
      const res = await verify(['--file', path, '--key', bad]);
      expect(res.code, res.stderr).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr).toContain(bad);
      expect(res.stderr).not.toContain('sekrit');
    }
    // A private key file given by mistake: its public half is used, and nothing of it is printed.
    const priv = join(dir, 'private.pem');
    writeFileSync(priv, privatePem);
    const res = await verify(['--file', path, '--key', priv]);
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/holds a private key; only its public half is used/);
    expect(res.stdout + res.stderr).not.toContain('PRIVATE');
  });

  it('finds a cut-off end by the copies in a checkpoint file (truncated), and by time (silent)', async () => {
    const { w, lines, checkpoints } = trail('file:cut.jsonl', 30, false);
    const copies = file('checkpoints.jsonl', checkpoints);
    const kept = lines.slice(0, -5);
    const path = file('cut.jsonl', kept);
    const res = await verify(['--file', path, '--key', keyFile, '--checkpoints-file', copies]);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stdout).toContain(
      `truncated at record ${kept.length} (cut.jsonl:${kept.length}): truncated: writer ${w.chain.writer} ends at ` +
        `seq ${kept.length}, its checkpoint at `,
    );
    expect(res.stdout).toContain(`says ${lines.length} (checkpoint copy at checkpoints.jsonl:4)`);
    // Judged a minute later, the writer is silent too.
    const later = await verify(['--file', path, '--key', keyFile, '--at', new Date(Date.now() + 60_000).toISOString()]);
    expect(later.code).toBe(1);
    expect(later.stdout).toMatch(
      new RegExp(`silent at record ${kept.length} .*: writer ${w.chain.writer} silent since`),
    );
  });

  it('takes the copies of several files (one per worker slot), and notes a writer that has not shut down', async () => {
    const a = trail('file:two.jsonl', 30, false);
    const b = trail('file:two.jsonl', 12, true);
    // Each slot's copies in a file of its own; the trail cut at a's end.
    const copiesA = file('copies.w1.jsonl', a.checkpoints);
    const copiesB = file('copies.w2.jsonl', b.checkpoints);
    const kept = [...b.lines, ...a.lines.slice(0, -5)];
    const path = file('two.jsonl', kept);
    const both = await verify([
      '--file',
      path,
      '--key',
      keyFile,
      '--checkpoints-file',
      copiesB,
      '--checkpoints-file',
      copiesA,
    ]);
    expect(both.code, both.stdout).toBe(1);
    expect(both.stdout).toMatch(
      new RegExp(`^truncated at record \\d+ .*writer ${a.w.chain.writer.replace('/', '\\/')} ends at`, 'm'),
    );
    // Without the copies, within the interval: intact, with a note that a's end is not vouched for yet.
    const alone = await verify(['--file', path, '--key', keyFile]);
    expect(alone.code, alone.stdout).toBe(0);
    expect(alone.stdout).toMatch(
      new RegExp(
        `^note: writer ${a.w.chain.writer.replace('/', '\\/')} has not shut down: its last checkpoint is at seq \\d+`,
        'm',
      ),
    );
    expect(alone.stdout).not.toContain(`note: writer ${b.w.chain.writer}`);
    // The checkpoints are records like events: query lists them by type.
    const listed = await runSnapgate(['audit', 'query', '--file', path, '--type', 'checkpoint'], { env: {} });
    expect(listed.code).toBe(0);
    const types = listed.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual(Array(b.checkpoints.length + a.checkpoints.length - 1).fill('checkpoint'));
  });

  it('prints a writer id from the trail with its control characters escaped', async () => {
    const { lines } = trail('file:escape.jsonl', 3, true);
    const evil = new ChainWriter('gw\u001b[2J');
    lines.push(evil.link(JSON.stringify({ v: 3, type: 'decision' })).line);
    const res = await verify(['--file', file('escape.jsonl', lines), '--key', keyFile]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('forged at record 6 (escape.jsonl:6): writer gw\\u001b[2J/');
    expect(res.stdout).not.toContain('\u001b');
  });

  it('without --key: the links alone, as before, and a note that checkpoints were not checked', async () => {
    const { lines } = trail('file:plain.jsonl', 5, true);
    const res = await verify(['--file', file('plain.jsonl', lines)]);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(`ok: ${lines.length} events in 1 chain(s), every link intact\n`);
    expect(res.stderr).toMatch(/signed checkpoints were not checked.*--key FILE/);
    const stray = await verify(['--file', join(dir, 'plain.jsonl'), '--checkpoints-file', keyFile]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/--checkpoints-file is about signed checkpoints: give .* --key FILE/);
  });
});

describe('audit verify --key on a Redis stream', () => {
  let copies: RedisServer;
  let copiesClient: Redis;
  beforeAll(async () => {
    copies = await RedisServer.start();
    copiesClient = new Redis(copies.port, '127.0.0.1');
  });
  afterAll(async () => {
    copiesClient.disconnect();
    await copies.stop();
  });

  async function store(client: Redis, stream: string, lines: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const l of lines) ids.push((await client.xadd(stream, '*', 'e', l))!);
    return ids;
  }

  it('exits 0 on an intact stream; a deleted entry is found by its entry id', async () => {
    const { lines } = trail(`redis:${STREAM}`, 25, true);
    const ids = await store(redis.client, STREAM, lines);
    const ok = await verify(['--redis', redis.server.url, '--key', keyFile]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 29 events in 1 chain\(s\), 4 checkpoints, every link intact and signed\n$/);
    await redis.client.xdel(STREAM, ids[6]!);
    const res = await verify(['--redis', redis.server.url, '--key', keyFile]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(`deleted at record 7 (${ids[7]}): record 8 of `);
  });

  it('finds the end cut off by the checkpoint copies in a second Redis, and exits 3 when that Redis is down', async () => {
    const { w, lines, checkpoints } = trail(`redis:${STREAM}`, 30, false);
    // The attacker holds the trail's Redis, not the checkpoint sink's.
    await store(copiesClient, CHECKPOINTS, checkpoints);
    const ids = await store(redis.client, STREAM, lines.slice(0, -12));
    const res = await verify(['--redis', redis.server.url, '--key', keyFile, '--checkpoints-redis', copies.url]);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stdout).toContain(
      `truncated at record ${ids.length} (${ids.at(-1)}): truncated: writer ${w.chain.writer} ends at seq ${ids.length}`,
    );
    const down = await verify([
      '--redis',
      redis.server.url,
      '--key',
      keyFile,
      '--checkpoints-redis',
      'redis://127.0.0.1:1',
    ]);
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/^UNVERIFIABLE: cannot read the checkpoint copies from redis 127\.0\.0\.1:1/);
  });

  it("--since reads from 5 minutes before it and checks from each writer's checkpoint after it", async () => {
    const { lines } = trail(`redis:${STREAM}`, 30, true);
    await store(redis.client, STREAM, lines);
    const res = await verify([
      '--redis',
      redis.server.url,
      '--key',
      keyFile,
      '--since',
      new Date(Date.now() - 15_000).toISOString(),
      '--json',
    ]);
    expect(res.code, res.stdout).toBe(0);
    const report = JSON.parse(res.stdout) as { verdict: string; records: number; verified: number };
    expect(report.verdict).toBe('intact');
    expect(report.records).toBe(lines.length);
    expect(report.verified).toBeLessThan(lines.length);
    expect(report.verified).toBeGreaterThan(0);
  });

  it('never echoes a --checkpoints-redis URL with a password; the password comes from the environment', async () => {
    const secret = 'pw-Checkpoint-Never-Shown-9c2';
    const res = await verify([
      '--redis',
      redis.server.url,
      '--key',
      keyFile,
      '--checkpoints-redis',
      `redis://:${secret}@127.0.0.1:${copies.port}`,
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('SNAPGATE_CHECKPOINT_REDIS_PASSWORD');
    expect(res.stdout + res.stderr).not.toContain(secret);
  });
});

describe("a trail the gateway's own writers wrote", () => {
  const log = createLogger({ level: 'error', write: () => undefined });

  async function writer(sink: Sink, instance: string, copies: CheckpointCopies, intervalMs = 100) {
    const checkpoints: CheckpointOptions = { signer, intervalMs, onStored: (r) => copies.push(r) };
    const w = new SinkWriter({
      sink,
      required: true,
      onFailure: 'reject',
      ackTimeoutMs: 1_000,
      spoolDir: tempDir('snapgate-verify-spool-'),
      instance,
      log,
      checkpoints,
    });
    await w.start();
    return w;
  }

  const body = (i: number) => eventBody(eventOf(i));

  function eventOf(i: number) {
    return sampleEvent({ type: 'attempt', requestId: `w-${i}`, instance: 'gw-real', decision: 'allowed' });
  }

  it('a rotating file with retention and a checkpoint file: intact, its cut start explained', async () => {
    const d = tempDir('snapgate-verify-real-');
    const path = join(d, 'audit.jsonl');
    const copies = new CheckpointCopies(
      await createFileSink({ path: join(d, 'checkpoints.jsonl'), maxBytes: 1 << 30, fsync: 'never' }),
      log,
      1_000,
    );
    const w = await writer(
      await createFileSink({ path, maxBytes: 4_000, fsync: 'never', maxFiles: 1 }),
      'gw-file',
      copies,
    );
    for (let i = 0; i < 40; i++) {
      await w.submit(body(i), true);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 120));
    }
    await w.close();
    await copies.close();
    expect(readdirSync(d).filter((n) => n.startsWith('audit.jsonl.')).length).toBeLessThanOrEqual(2);
    const res = await verify(['--file', path, '--key', keyFile, '--checkpoints-file', join(d, 'checkpoints.jsonl')]);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^ok: \d+ events in 1 chain\(s\), \d+ checkpoints, every link intact and signed\n/);
    expect(res.stdout).toMatch(
      /note: chain gw-file\/[0-9a-f]{8} starts at seq \d+ \(older records removed: maxFiles 1\)/,
    );
  });

  it('a stream of two instances, trimmed behind signed markers, copies in a second Redis: intact; the end cut: truncated', async () => {
    const copyServer = await RedisServer.start();
    const copyClient = new Redis(copyServer.port, '127.0.0.1');
    const c1 = new Redis(redis.server.port, '127.0.0.1');
    const c2 = new Redis(redis.server.port, '127.0.0.1');
    try {
      const copies = new CheckpointCopies(
        createRedisStreamSink(copyClient, { stream: CHECKPOINTS, maxLen: 100_000 }),
        log,
        1_000,
      );
      const sink = (c: Redis) => createRedisStreamSink(c, { stream: STREAM, maxLen: 30, signedRetention: true });
      const a = await writer(sink(c1), 'gw-a', copies);
      const b = await writer(sink(c2), 'gw-b', copies);
      for (let i = 0; i < 60; i++) {
        await (i % 2 === 0 ? a : b).submit(body(i), true);
        if (i % 20 === 19) await new Promise((r) => setTimeout(r, 150));
      }
      await a.close();
      await b.close();
      await copies.close();
      const args = ['--redis', redis.server.url, '--key', keyFile, '--checkpoints-redis', copyServer.url];
      const stored = (await redis.client.xrange(STREAM, '-', '+')) as [string, string[]][];
      expect(
        stored.some(([, f]) => f[1]!.includes('"reason":"retention"')),
        'a signed trim happened',
      ).toBe(true);
      const ok = await verify(args);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(/^ok: \d+ events in 2 chain\(s\)/);
      expect(ok.stdout).toMatch(
        /note: chain gw-[ab]\/[0-9a-f]{8} starts at seq \d+ \(older records removed: maxLen 30\)/,
      );
      // The attacker removes b's last records, its shutdown checkpoint with them: the copies say it went further.
      const entries = (await redis.client.xrange(STREAM, '-', '+')) as [string, string[]][];
      const ofB = entries.filter(([, f]) => f[1]!.includes(`"writer":"${b.writer}"`));
      for (const [id] of ofB.slice(-3)) await redis.client.xdel(STREAM, id);
      const cut = await verify(args);
      expect(cut.code, cut.stdout).toBe(1);
      expect(cut.stdout).toMatch(
        new RegExp(`truncated at record \\d+ \\(\\d+-\\d+\\): truncated: writer ${b.writer} ends at seq`),
      );
    } finally {
      for (const c of [copyClient, c1, c2]) c.disconnect();
      await copyServer.stop();
    }
  });
});
