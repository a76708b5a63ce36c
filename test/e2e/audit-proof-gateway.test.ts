// The whole loop as deployed: the built gateway, with two workers and a restart, writes signed checkpoints into its
// file and Redis trails (rotating the files, trimming the stream by maxLen) and copies them to a second Redis; then
// `audit verify --key` proves each trail intact, and finds each tamper an attacker with write access to the stream
// but not the key can do: edit with every hash recomputed, drop the newest 10 records, drop a whole writer, insert a
// forged writer, replay an old checkpoint.
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainWriter, eventHash, GENESIS } from '../../src/audit/chain.js';
import { checkpointSigner, signCheckpoint } from '../../src/audit/checkpoint.js';
import { runSnapgate } from '../helpers/cli.js';
import { baseConfig, spawnGateway, tempDir, type GatewayProcess } from '../helpers/gateway.js';
import { resumeNewRun } from '../helpers/http.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { RedisServer } from '../helpers/redis-server.js';
import { bodyOf, chainOf } from '../helpers/trail.js';
import { until } from '../helpers/wait.js';
import { useRedis, useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
const redis = useRedis();
const STREAM = 'audit:{proof}:events';
const COPIES = 'audit:{proof}:checkpoints';

let copiesServer: RedisServer;
let copies: Redis;
const dir = tempDir('snapgate-proof-');
const keyPath = join(dir, 'checkpoint.pem');
const pubPath = join(dir, 'checkpoint.pub');

interface Entry {
  id: string;
  line: string;
}
let original: Entry[] = [];

const withChain = (body: string, c: { writer: string; seq: number; prev: string }) => {
  const hash = eventHash(body, c);
  return `${body.slice(0, -1)},"chain":{"writer":${JSON.stringify(c.writer)},"seq":${c.seq},"prev":"${c.prev}","hash":"${hash}"}}`;
};

/** The attacker's tool: every record of `writer` from index `from` on gets its links recomputed. */
function rechain(lines: string[], writer: string, from: number): string[] {
  let prev: string | undefined;
  return lines.map((line, i) => {
    const c = chainOf(line);
    if (c.writer !== writer) return line;
    if (i < from) {
      prev = c.hash;
      return line;
    }
    const next = withChain(bodyOf(line), { writer, seq: c.seq, prev: prev ?? c.prev });
    prev = chainOf(next).hash;
    return next;
  });
}

async function writeStream(name: string, lines: string[]): Promise<void> {
  await redis.client.del(name);
  const pipe = redis.client.pipeline();
  for (const l of lines) pipe.xadd(name, '*', 'e', l);
  await pipe.exec();
}

async function verifyStream(name: string, extra: string[] = []) {
  return runSnapgate(
    [
      'audit',
      'verify',
      '--redis',
      redis.server.url,
      '--stream',
      name,
      '--store',
      `redis:${STREAM}`,
      '--key',
      pubPath,
      ...extra,
    ],
    { env: {} },
  );
}

const withCopies = () => ['--checkpoints-redis', copiesServer.url, '--checkpoints-stream', COPIES];

async function runGateway(calls: number): Promise<void> {
  const doc = baseConfig(world.standIn, world.issuer, {
    redis: { url: redis.server.url },
    audit: {
      sinks: [
        { type: 'file', path: join(dir, 'audit.jsonl'), maxBytes: 40_000, fsync: 'never' },
        { type: 'redis', stream: STREAM, maxLen: 300 },
      ],
      checkpoints: {
        key: `file:${keyPath}`,
        interval: '1s',
        sink: { type: 'redis', url: copiesServer.url, stream: COPIES },
      },
    },
  });
  (doc.server as Record<string, unknown>).workers = 2;
  const gw: GatewayProcess = await spawnGateway(doc, { built: true });
  try {
    await until(
      () => gw.listeners() === 2,
      15_000,
      () => gw.stderr.join('\n'),
    );
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    // Two halves, each followed by more than a checkpoint interval: each writer signs interval checkpoints (and
    // trims) between its events and after the last.
    for (let half = 0; half < 2; half++) {
      for (let done = 0; done < calls / 2; done += 20) {
        const replies = await Promise.all(Array.from({ length: 20 }, () => resumeNewRun(gw.url, world.standIn, jwt)));
        expect(replies.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
      }
      await new Promise((r) => setTimeout(r, 1_300));
    }
  } finally {
    expect(await gw.stop()).toBe(0);
  }
}

beforeAll(async () => {
  copiesServer = await RedisServer.start();
  copies = new Redis(copiesServer.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  recordSecret(pem);
  writeFileSync(keyPath, pem, { mode: 0o600 });
  writeFileSync(pubPath, publicKey.export({ type: 'spki', format: 'pem' }).toString());
  // Two runs: a restart in between; each run has two workers, each its own writer.
  await runGateway(160);
  await runGateway(160);
  const entries = (await redis.client.xrange(STREAM, '-', '+')) as [string, string[]][];
  original = entries.map(([id, f]) => ({ id, line: f[1]! }));
}, 90_000);

afterAll(async () => {
  copies.disconnect();
  await copiesServer.stop();
});

const writersOf = (lines: string[]) => [...new Set(lines.map((l) => chainOf(l).writer))];

describe('a trail the gateway wrote, with workers, rotations, restarts and maxLen trimming', () => {
  it('every slot file, with its rotated files, is intact and signed', async () => {
    const slots = readdirSync(dir).filter((n) => /^audit\.w\d\.jsonl$/.test(n));
    expect(slots.sort()).toEqual(['audit.w1.jsonl', 'audit.w2.jsonl']);
    expect(readdirSync(dir).filter((n) => n.startsWith('audit.w1.jsonl.')).length).toBeGreaterThan(0);
    for (const slot of slots) {
      const res = await runSnapgate(['audit', 'verify', '--file', join(dir, slot), '--key', pubPath, ...withCopies()], {
        env: {},
      });
      expect(res.stdout, res.stderr).toMatch(
        /^ok: \d+ events in 2 chain\(s\), \d+ checkpoints, every link intact and signed/,
      );
      expect(res.code).toBe(0);
    }
  });

  it("a slot file: the first run's writer dropped is missing; an edit with every hash recomputed is edited", async () => {
    const slot = join(dir, 'audit.w1.jsonl');
    const rotated = readdirSync(dir)
      .filter((n) => n.startsWith('audit.w1.jsonl.'))
      .sort()
      .map((n) => join(dir, n));
    const lines = [...rotated, slot].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
    const [first, second] = writersOf(lines);
    expect(second).toBeDefined();
    const gone = join(dir, 'tamper-gone.jsonl');
    writeFileSync(gone, `${lines.filter((l) => chainOf(l).writer !== first).join('\n')}\n`);
    const missing = await runSnapgate(
      ['audit', 'verify', '--file', gone, '--key', pubPath, '--store', 'file:audit.w1.jsonl'],
      {
        env: {},
      },
    );
    expect(missing.stdout).toMatch(new RegExp(`^missing .*${escape(first!)}`, 'm'));
    expect(missing.code).toBe(1);
    const i = lines.findIndex((l) => chainOf(l).writer === second && l.includes('"type":"attempt"'));
    const edited = [...lines];
    edited[i] = withChain(bodyOf(lines[i]!).replace('"org":"Acme-Prod"', '"org":"Other-Org"'), chainOf(lines[i]!));
    const path = join(dir, 'tamper-edit.jsonl');
    writeFileSync(path, `${rechain(edited, second!, i).join('\n')}\n`);
    const res = await runSnapgate(
      ['audit', 'verify', '--file', path, '--key', pubPath, '--store', 'file:audit.w1.jsonl'],
      {
        env: {},
      },
    );
    expect(res.stdout).toMatch(
      new RegExp(`^edited at record \\d+ \\(tamper-edit\\.jsonl:\\d+\\): .*${escape(second!)}`, 'm'),
    );
    expect(res.code).toBe(1);
  });

  it('the Redis stream, trimmed by maxLen behind signed markers, is intact; the trim is told apart', async () => {
    expect(writersOf(original.map((e) => e.line)).length).toBeGreaterThanOrEqual(2);
    expect(original.some((e) => e.line.includes('"reason":"retention"'))).toBe(true);
    const res = await verifyStream(STREAM, withCopies());
    expect(res.stdout, res.stderr).toMatch(/^ok: /);
    expect(res.stdout).toMatch(/note: chain \S+ starts at seq \d+ \(older records removed: maxLen 300\)/);
    expect(res.code).toBe(0);
  });

  it('an event edited and every later hash of its chain recomputed: edited', async () => {
    const lines = original.map((e) => e.line);
    const i = lines.findIndex((l, n) => n > lines.length / 2 && l.includes('"type":"attempt"'));
    const writer = chainOf(lines[i]!).writer;
    const c = chainOf(lines[i]!);
    lines[i] = withChain(bodyOf(lines[i]!).replace('"org":"Acme-Prod"', '"org":"Other-Org"'), c);
    await writeStream('audit:{proof}:t-edit', rechain(lines, writer, i));
    const res = await verifyStream('audit:{proof}:t-edit', withCopies());
    expect(res.stdout).toMatch(/^BROKEN: /);
    expect(res.stdout).toMatch(new RegExp(`^edited at record \\d+ \\(\\d+-\\d+\\): .*${escape(writer)}`, 'm'));
    expect(res.code).toBe(1);
  });

  it('the newest 10 records of a writer dropped: truncated by the copies, silent without them', async () => {
    const lines = original.map((e) => e.line);
    const writer = chainOf(lines.at(-1)!).writer;
    const mine = lines.map((l, n) => [l, n] as const).filter(([l]) => chainOf(l).writer === writer);
    const dropped = new Set(mine.slice(-10).map(([, n]) => n));
    await writeStream(
      'audit:{proof}:t-cut',
      lines.filter((_, n) => !dropped.has(n)),
    );
    const res = await verifyStream('audit:{proof}:t-cut', withCopies());
    expect(res.stdout).toMatch(
      new RegExp(`^truncated .*writer ${escape(writer)} ends at seq \\d+, its checkpoint at \\S+ says \\d+`, 'm'),
    );
    expect(res.code).toBe(1);
    const later = new Date(Date.now() + 60_000).toISOString();
    const alone = await verifyStream('audit:{proof}:t-cut', ['--at', later]);
    expect(alone.stdout).toMatch(new RegExp(`^silent .*writer ${escape(writer)} silent since `, 'm'));
    expect(alone.code).toBe(1);
  });

  it('a whole writer dropped: missing, named by the writers that saw it and by the copies', async () => {
    const lines = original.map((e) => e.line);
    const writer = writersOf(lines)[0]!;
    await writeStream(
      'audit:{proof}:t-gone',
      lines.filter((l) => chainOf(l).writer !== writer),
    );
    for (const extra of [[], withCopies()]) {
      const res = await verifyStream('audit:{proof}:t-gone', extra);
      expect(res.stdout, extra.join(' ')).toMatch(new RegExp(`^missing .*${escape(writer)}`, 'm'));
      expect(res.code).toBe(1);
    }
  });

  it('a forged writer, its checkpoints signed with a key of its own: forged', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const evil = checkpointSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const chain = new ChainWriter('gw-evil');
    const forged: string[] = [];
    const sign = (reason: 'open' | 'shutdown', prevCheckpoint: string) => {
      const head = chain.head;
      const body = signCheckpoint(
        {
          time: new Date().toISOString(),
          writer: chain.writer,
          seq: head.seq,
          head: head.hash,
          prevCheckpoint,
          reason,
          interval: 1_000,
          store: `redis:${STREAM}`,
        },
        evil,
      );
      forged.push(chain.link(body).line);
      return chain.head.hash;
    };
    const opened = sign('open', GENESIS);
    const sample = original.find((e) => e.line.includes('"type":"attempt"'))!.line;
    forged.push(chain.link(bodyOf(sample)).line);
    sign('shutdown', opened);
    await writeStream('audit:{proof}:t-forged', [...original.map((e) => e.line), ...forged]);
    const res = await verifyStream('audit:{proof}:t-forged', withCopies());
    expect(res.stdout).toMatch(new RegExp(`^forged .*${escape(chain.writer)}`, 'm'));
    expect(res.code).toBe(1);
  });

  it('an old checkpoint re-chained at the end of its writer: replayed', async () => {
    const lines = original.map((e) => e.line);
    const writer = chainOf(lines.at(-1)!).writer;
    const old = lines.find((l) => chainOf(l).writer === writer && l.includes('"reason":"interval"'))!;
    // Its shutdown checkpoint goes, the old checkpoint follows the last event, linked as the chain expects.
    const last = lines.map((l) => chainOf(l)).filter((c) => c.writer === writer);
    const shutdownAt = lines.findIndex((l) => chainOf(l).writer === writer && l.includes('"reason":"shutdown"'));
    const kept = lines.filter((_, n) => n !== shutdownAt);
    const head = last.at(-2)!;
    kept.push(withChain(bodyOf(old), { writer, seq: head.seq + 1, prev: head.hash }));
    await writeStream('audit:{proof}:t-replay', kept);
    const res = await verifyStream('audit:{proof}:t-replay');
    expect(res.stdout).toMatch(new RegExp(`^replayed at record \\d+ .*${escape(writer)}`, 'm'));
    expect(res.code).toBe(1);
  });

  // Last: it cuts the stream itself.
  it("the newest 10 entries deleted in place (XDEL), no copies, at once: truncated by the writer's head key", async () => {
    const writer = chainOf(original.at(-1)!.line).writer;
    const mine = original.filter((e) => chainOf(e.line).writer === writer).slice(-10);
    await redis.client.xdel(STREAM, ...mine.map((e) => e.id));
    const res = await verifyStream(STREAM);
    expect(res.stdout).toMatch(
      new RegExp(`^truncated .*writer ${escape(writer)} ends at seq \\d+, its head key \\S+ says \\d+`, 'm'),
    );
    expect(res.code).toBe(1);
  });
});

describe('a trail captured from stdout (the default sink)', () => {
  it('verifies as a file with --key, no --store needed; cut off after shutdown, it is silent once judged later', async () => {
    const doc = baseConfig(world.standIn, world.issuer, {
      audit: { checkpoints: { key: `file:${keyPath}`, interval: '1s' } },
    });
    const gw = await spawnGateway(doc, { built: true });
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    for (let i = 0; i < 5; i++) expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_200));
    expect(await gw.stop()).toBe(0);
    const lines = gw.stdout.filter((l) => l.startsWith('{'));
    expect(lines.filter((l) => l.includes('"type":"checkpoint"')).length).toBeGreaterThanOrEqual(3);
    const path = join(dir, 'captured.jsonl');
    writeFileSync(path, `${lines.join('\n')}\n`);
    const res = await runSnapgate(['audit', 'verify', '--file', path, '--key', pubPath], { env: {} });
    expect(res.stdout, res.stderr).toMatch(
      /^ok: \d+ events in 1 chain\(s\), \d+ checkpoints, every link intact and signed/,
    );
    expect(res.code).toBe(0);
    const cut = join(dir, 'captured-cut.jsonl');
    writeFileSync(cut, `${lines.slice(0, -10).join('\n')}\n`);
    const later = new Date(Date.now() + 60_000).toISOString();
    const silent = await runSnapgate(['audit', 'verify', '--file', cut, '--key', pubPath, '--at', later], { env: {} });
    expect(silent.stdout).toMatch(/^silent at record \d+ .*silent since /m);
    expect(silent.code).toBe(1);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
