// Signed checkpoints on a real Redis stream: two writers (two instances) share one stream, each checkpoints and names
// the other, retention past maxLen goes only behind a signed marker (one writer trims at a time), and a Redis that
// stalls mid-step removes nothing unexplained.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/audit/chain.js';
import { checkSignature, trustedKeys } from '../../src/audit/checkpoint.js';
import { CheckpointCopies } from '../../src/audit/copies.js';
import { createRedisStreamSink } from '../../src/audit/sinks.js';
import type { CheckpointOptions } from '../../src/audit/trail.js';
import { createLogger } from '../../src/log.js';
import { RedisServer } from '../helpers/redis-server.js';
import {
  bodyOf,
  newSigner,
  parsedLine,
  startedWriter,
  unexplainedStarts,
  type StoredLine,
  linksWhole,
} from '../helpers/trail.js';

const log = createLogger({ level: 'error', write: () => undefined });
let server: RedisServer;
const clients: Redis[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
});

async function client(): Promise<Redis> {
  const c = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false });
  c.on('error', () => {});
  clients.push(c);
  await new Promise((resolve) => c.once('ready', resolve));
  return c;
}

const event = (i: number) => JSON.stringify({ v: 2, id: `e${i}`, type: 'attempt', pad: 'x'.repeat(100) });
async function streamLines(c: Redis, stream: string): Promise<(StoredLine & { id: string })[]> {
  const entries = (await c.xrange(stream, '-', '+')) as [string, string[]][];
  return entries.map(([id, f]) => ({ id, ...parsedLine(f[1]!) }));
}

const writer = (c: Redis, stream: string, checkpoints: CheckpointOptions, instance: string, maxLen = 1_000_000) =>
  startedWriter(createRedisStreamSink(c, { stream, maxLen, signedRetention: true }), {
    checkpoints,
    instance,
    ackTimeoutMs: 500,
    spoolDir: mkdtempSync(join(tmpdir(), 'cp-redis-')),
  });

describe('checkpoints on a Redis stream', () => {
  it('two instances each open, checkpoint and sign off, and name each other as witnesses', async () => {
    const c = await client();
    const stream = 'audit:{w1}:events';
    const s = newSigner();
    const a = await writer(c, stream, { signer: s, intervalMs: 80 }, 'gw-a');
    const b = await writer(c, stream, { signer: s, intervalMs: 80 }, 'gw-b');
    for (let i = 0; i < 10; i++) await Promise.all([a.submit(event(i), true), b.submit(event(i), true)]);
    await new Promise((r) => setTimeout(r, 250));
    await Promise.all([a.close(), b.close()]);
    const lines = await streamLines(c, stream);
    const keys = trustedKeys([s.publicKey]);
    const cps = lines.filter((l) => l.parsed.type === 'checkpoint');
    for (const cp of cps) expect(checkSignature(bodyOf(cp.text), cp.parsed.key, keys).ok).toBe(true);
    for (const w of [a, b]) {
      const mine = cps.filter((l) => l.parsed.writer === w.writer).map((l) => l.parsed.reason);
      expect(mine[0]).toBe('open');
      expect(mine.at(-1)).toBe('shutdown');
      expect(mine).toContain('interval');
    }
    const bNamesA = cps.some(
      (l) => l.parsed.writer === b.writer && (l.parsed.witness ?? []).some((x) => x.writer === a.writer && x.seq > 1),
    );
    expect(bNamesA).toBe(true);
    expect(cps.every((l) => l.parsed.store === `redis:${stream}`)).toBe(true);
    expect(linksWhole(lines)).toBe(true);
  });

  it('trims past maxLen only behind a signed marker that explains where each cut chain begins; one trimmer at a time', async () => {
    const c = await client();
    const stream = 'audit:{w2}:events';
    const s = newSigner();
    const a = await writer(c, stream, { signer: s, intervalMs: 60 }, 'gw-a', 40);
    const b = await writer(c, stream, { signer: s, intervalMs: 60 }, 'gw-b', 40);
    for (let i = 0; i < 150; i++) await Promise.all([a.submit(event(i), true), b.submit(event(i), true)]);
    await new Promise((r) => setTimeout(r, 400));
    await Promise.all([a.close(), b.close()]);
    const lines = await streamLines(c, stream);
    // Trimmed down to about maxLen: the markers and checkpoints written since the last step remain on top.
    expect(lines.length).toBeLessThan(120);
    const keys = trustedKeys([s.publicKey]);
    const markers = lines.filter((l) => l.parsed.reason === 'retention');
    expect(markers.length).toBeGreaterThan(0);
    for (const m of markers) {
      expect(checkSignature(bodyOf(m.text), m.parsed.key, keys).ok).toBe(true);
      expect(m.parsed.retention).toMatchObject({ store: 'redis', reason: 'maxLen 40' });
    }
    // Each chain now starts after seq 1, and the newest marker naming its writer says exactly where.
    const report = verifyChain(lines.map((l) => l.text));
    expect(report.ok).toBe(true);
    expect(report.partialStarts.length).toBeGreaterThan(0);
    expect(unexplainedStarts(lines)).toEqual([]);
    // Every marker's `through` was really removed, and nothing after it.
    const newest = markers.at(-1)!.parsed.retention!;
    const after = (id: string, than: string) => {
      const [ms, seq] = id.split('-').map(BigInt) as [bigint, bigint];
      const [tms, tseq] = than.split('-').map(BigInt) as [bigint, bigint];
      return ms > tms || (ms === tms && seq > tseq);
    };
    expect(lines.filter((l) => !after(l.id, newest.through!))).toEqual([]);
    expect(await c.exists('audit:{w2}:events:trim-lock')).toBe(0);
  });

  it('a Redis that stalls during a retention step removes nothing unexplained, and the step is retried', async () => {
    const c = await client();
    const stream = 'audit:{w3}:events';
    const s = newSigner();
    const a = await writer(c, stream, { signer: s, intervalMs: 100 }, 'gw-a', 20);
    for (let i = 0; i < 60; i++) await a.submit(event(i), true);
    server.pause();
    await new Promise((r) => setTimeout(r, 700));
    server.resume();
    for (let i = 60; i < 80; i++) await a.submit(event(i), true).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    await a.close();
    const lines = await streamLines(c, stream);
    const markers = lines.filter((l) => l.parsed.reason === 'retention');
    expect(markers.length).toBeGreaterThan(0);
    const report = verifyChain(lines.map((l) => l.text));
    expect(report.ok).toBe(true);
    expect(report.partialStarts.length).toBeGreaterThan(0);
    expect(unexplainedStarts(lines)).toEqual([]);
  });

  it('copies checkpoints to a second stream on the same Redis, both streams in one hash slot, none skipped', async () => {
    const c = await client();
    const copies = new CheckpointCopies(
      createRedisStreamSink(c, { stream: 'audit:{w4}:checkpoints', maxLen: 1_000 }),
      log,
      500,
    );
    const a = await writer(
      c,
      'audit:{w4}:events',
      { signer: newSigner(), intervalMs: 60, onStored: (r) => copies.push(r) },
      'gw-a',
    );
    for (let i = 0; i < 5; i++) await a.submit(event(i), true);
    await new Promise((r) => setTimeout(r, 200));
    await a.close();
    await copies.close();
    const trail = (await streamLines(c, 'audit:{w4}:events')).filter((l) => l.parsed.type === 'checkpoint');
    const copied = await streamLines(c, 'audit:{w4}:checkpoints');
    expect(trail.length).toBeGreaterThanOrEqual(3);
    expect(copied.map((l) => l.text)).toEqual(trail.map((l) => l.text));
  });

  it('trims a busy stream soon after it passes maxLen, not only at the next interval', async () => {
    const c = await client();
    const stream = 'audit:{w5}:events';
    const a = await writer(c, stream, { signer: newSigner(), intervalMs: 60_000 }, 'gw-a', 50);
    for (let i = 0; i < 200; i++) await a.submit(event(i), true);
    // Early steps come at most once a second; still well inside the first interval, the next appends start one.
    await new Promise((r) => setTimeout(r, 1_100));
    for (let i = 200; i < 210; i++) await a.submit(event(i), true);
    await new Promise((r) => setTimeout(r, 300));
    const len = await c.xlen(stream);
    await a.close();
    expect(len).toBeLessThan(100);
    const markers = (await streamLines(c, stream)).filter((l) => l.parsed.reason === 'retention');
    expect(markers.length).toBeGreaterThan(0);
  });

  it('a writer list padded with planted members (future times, no head) still names the real writers', async () => {
    const c = await client();
    const stream = 'audit:{w6}:events';
    const s = newSigner();
    const a = await writer(c, stream, { signer: s, intervalMs: 60_000 }, 'gw-a');
    await a.submit(event(1), true);
    const planted: (string | number)[] = [];
    for (let i = 0; i < 150; i++) planted.push(9e15, `decoy/${i}`);
    for (let i = 0; i < 150; i++) planted.push(Date.now(), `headless/${i}`);
    await c.zadd(`${stream}:writers`, ...planted);
    const b = await writer(c, stream, { signer: s, intervalMs: 60_000 }, 'gw-b');
    await Promise.all([a.close(), b.close()]);
    const open = (await streamLines(c, stream)).find(
      (l) => l.parsed.writer === b.writer && l.parsed.reason === 'open',
    )!;
    expect(open.parsed.witness).toEqual([{ writer: a.writer, seq: 2, at: expect.any(Number) as number }]);
  });

  it("refuses write-ahead events when someone raised the writer's head key, instead of losing them unseen", async () => {
    const c = await client();
    const stream = 'audit:{w7}:events';
    const a = await writer(c, stream, { signer: newSigner(), intervalMs: 60_000 }, 'gw-a');
    await a.submit(event(1), true);
    await c.set(`${stream}:head:${a.writer}`, '999999999');
    await expect(a.submit(event(2), true)).rejects.toThrow(/did not acknowledge/);
    await a.close(200);
  });
});
