// The writer side of signed checkpoints, on real files: every chain opens with a signed checkpoint, checkpoints
// follow at the interval (also when idle) and at close, each links to the one before, copies reach the checkpoint
// sink only once stored, and rotated files beyond maxFiles go only behind a signed retention marker.
import { appendFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChainWriter, eventHash, GENESIS } from '../../src/audit/chain.js';
import { checkSignature, trustedKeys } from '../../src/audit/checkpoint.js';
import { CheckpointCopies } from '../../src/audit/copies.js';
import { createFileSink } from '../../src/audit/sinks.js';
import type { CheckpointOptions } from '../../src/audit/trail.js';
import { createLogger } from '../../src/log.js';
import { bodyOf, newSigner, parsedLine, startedWriter, type StoredLine, linksWhole } from '../helpers/trail.js';

const log = createLogger({ level: 'error', write: () => undefined });

const event = (i: number) => JSON.stringify({ v: 2, id: `e${i}`, type: 'attempt', pad: 'x'.repeat(200) });

const linesOf = (path: string): StoredLine[] => readFileSync(path, 'utf8').split('\n').filter(Boolean).map(parsedLine);

async function writerOn(dir: string, checkpoints: CheckpointOptions, sink?: { maxBytes?: number; maxFiles?: number }) {
  const file = await createFileSink({
    path: join(dir, 'audit.jsonl'),
    maxBytes: sink?.maxBytes ?? 10_000_000,
    fsync: 'never',
    ...(sink?.maxFiles !== undefined ? { maxFiles: sink.maxFiles } : {}),
  });
  return startedWriter(file, { checkpoints, spoolDir: dir });
}

describe('a writer with checkpoints', () => {
  it('opens, checkpoints at the interval (also idle) and at close, each signed and linked to the one before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-writer-'));
    const s = newSigner();
    const w = await writerOn(dir, { signer: s, intervalMs: 60 });
    for (let i = 0; i < 5; i++) await w.submit(event(i), true);
    await new Promise((r) => setTimeout(r, 200));
    await w.close();
    const lines = linesOf(join(dir, 'audit.jsonl'));
    const checkpoints = lines.filter((l) => l.parsed.type === 'checkpoint');
    expect(checkpoints[0]!.parsed).toMatchObject({ reason: 'open', seq: 0, head: GENESIS, prevCheckpoint: GENESIS });
    expect(checkpoints[0]!.parsed.chain.seq).toBe(1);
    expect(checkpoints.filter((c) => c.parsed.reason === 'interval').length).toBeGreaterThanOrEqual(2);
    expect(checkpoints.at(-1)!.parsed.reason).toBe('shutdown');
    expect(lines.at(-1)!.parsed.reason).toBe('shutdown');
    const keys = trustedKeys([s.publicKey]);
    let prev = GENESIS;
    for (const c of checkpoints) {
      const p = c.parsed;
      expect(checkSignature(bodyOf(c.text), p.key, keys)).toEqual({ ok: true });
      expect(p).toMatchObject({
        writer: p.chain.writer,
        seq: p.chain.seq - 1,
        head: p.chain.prev,
        store: 'file:audit.jsonl',
      });
      expect(p.prevCheckpoint).toBe(prev);
      prev = p.chain.hash;
    }
    // Checkpoints are ordinary chain members: the keyless chain check holds over them.
    expect(linksWhole(lines)).toBe(true);
    const hashOk = lines.every((l) => eventHash(bodyOf(l.text), l.parsed.chain) === l.parsed.chain.hash);
    expect(hashOk).toBe(true);
  });

  it('names the writers already in the file in its opening checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-witness-'));
    const s = newSigner();
    const first = await writerOn(dir, { signer: s, intervalMs: 60_000 });
    await first.submit(event(1), true);
    await first.close();
    const second = await writerOn(dir, { signer: s, intervalMs: 60_000 });
    await second.close();
    const opens = linesOf(join(dir, 'audit.jsonl')).filter((l) => l.parsed.reason === 'open');
    expect(opens).toHaveLength(2);
    // The first writer's chain: open, the event, shutdown = seq 3.
    expect(opens[1]!.parsed.witness).toEqual([{ writer: first.writer, seq: 3 }]);
  });

  it('copies each checkpoint to the checkpoint sink byte for byte, once stored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-copies-'));
    const copySink = await createFileSink({ path: join(dir, 'copies.jsonl'), maxBytes: 1e9, fsync: 'never' });
    const copies = new CheckpointCopies(copySink, log, 1_000);
    const w = await writerOn(dir, { signer: newSigner(), intervalMs: 50, onStored: (r) => copies.push(r) });
    await w.submit(event(1), true);
    await new Promise((r) => setTimeout(r, 120));
    await w.close();
    await copies.close();
    const trail = linesOf(join(dir, 'audit.jsonl'))
      .filter((l) => l.parsed.type === 'checkpoint')
      .map((l) => l.text);
    expect(trail.length).toBeGreaterThanOrEqual(3);
    expect(linesOf(join(dir, 'copies.jsonl')).map((l) => l.text)).toEqual(trail);
  });

  it('removes rotated files beyond maxFiles only behind a signed marker naming them and the chains they cut', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-retention-'));
    const s = newSigner();
    // A long interval: the removals follow the rotations themselves.
    const w = await writerOn(dir, { signer: s, intervalMs: 60_000 }, { maxBytes: 2_000, maxFiles: 1 });
    for (let i = 0; i < 40; i++) await w.submit(event(i), true);
    // Early steps come at most once a second: the next write after that removes what the burst rotated.
    await new Promise((r) => setTimeout(r, 1_100));
    await w.submit(event(40), true);
    await new Promise((r) => setTimeout(r, 250));
    await w.close();
    const rotated = readdirSync(dir).filter((n) => n.startsWith('audit.jsonl.'));
    expect(rotated.length).toBeLessThanOrEqual(2);
    const all = [...rotated.sort(), 'audit.jsonl'].flatMap((n) => linesOf(join(dir, n)));
    const markers = all.filter((l) => l.parsed.reason === 'retention');
    expect(markers.length).toBeGreaterThan(0);
    const removed = markers.flatMap((m) => m.parsed.retention!.files ?? []);
    // Each file a marker lists is gone, and the oldest rotated files went first.
    for (const name of removed) expect(rotated).not.toContain(name);
    expect([...removed].sort().at(-1)! < [...rotated].sort()[0]!).toBe(true);
    for (const m of markers) {
      expect(checkSignature(bodyOf(m.text), m.parsed.key, trustedKeys([s.publicKey])).ok).toBe(true);
    }
    // The newest marker says where the cut chain now begins: the first remaining record follows its entry.
    const first = all[0]!.parsed.chain;
    const last = markers.at(-1)!.parsed.retention!;
    expect(last.chains).toContainEqual({ writer: first.writer, seq: first.seq - 1, hash: first.prev });
  });

  it('ends a torn last line a crash left before it writes, so its opening checkpoint is a line of its own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-torn-'));
    const first = await writerOn(dir, { signer: newSigner(), intervalMs: 60_000 });
    await first.submit(event(1), true);
    await first.close();
    appendFileSync(join(dir, 'audit.jsonl'), '{"v":2,"id":"torn-by-a-crash');
    const second = await writerOn(dir, { signer: newSigner(), intervalMs: 60_000 });
    await second.close();
    const raw = readFileSync(join(dir, 'audit.jsonl'), 'utf8').split('\n');
    expect(raw.at(-1)).toBe('');
    const torn = raw.indexOf('{"v":2,"id":"torn-by-a-crash');
    expect(torn).toBeGreaterThan(0);
    expect(JSON.parse(raw[torn + 1]!)).toMatchObject({ type: 'checkpoint', reason: 'open', writer: second.writer });
  });

  it('names rotated files so that they sort in rotation order, also when several rotate within one millisecond', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-rotate-'));
    // The second rotation finds the first's name taken and the clock moved on: its counted name must still sort
    // before the third rotation's.
    const times = [123, 123, 124, 124, 125, 125, 126].map((ms) => new Date(Date.UTC(2026, 11, 3, 7, 0, 0, ms)));
    let i = 0;
    const sink = await createFileSink({
      path: join(dir, 'audit.jsonl'),
      maxBytes: 10,
      fsync: 'never',
      now: () => times[Math.min(i++, times.length - 1)]!,
    });
    const w = new ChainWriter('gw');
    for (let n = 0; n < 5; n++) await sink.append([w.link(event(n))]);
    await sink.close();
    const rotated = readdirSync(dir)
      .filter((n) => n.startsWith('audit.jsonl.'))
      .sort();
    const order = rotated.map((n) => JSON.parse(readFileSync(join(dir, n), 'utf8').trim()) as { id: string });
    expect(order.map((e) => e.id)).toEqual(['e0', 'e1', 'e2', 'e3']);
  });
});
