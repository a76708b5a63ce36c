// What a retention step vouches for: only removed records that hold together (hash, link) from their chain's start or
// from a cut point a marker signed with the writer's key vouched for, so a record planted in the oldest part of the
// store cannot make the gateway sign a cut that retention never made.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChainWriter, GENESIS } from '../../src/audit/chain.js';
import { signCheckpoint, trustedKeys, type CheckpointSigner } from '../../src/audit/checkpoint.js';
import { RemovedChains } from '../../src/audit/retention.js';
import { createFileSink } from '../../src/audit/sinks.js';
import { chainOf, newSigner, parsedLine, startedWriter } from '../helpers/trail.js';

const key = newSigner();
const keys = trustedKeys([key.publicKey]);
const event = (i: number) => JSON.stringify({ v: 3, id: `e${i}`, type: 'attempt' });

function records(w: ChainWriter, n: number): string[] {
  return Array.from({ length: n }, (_, i) => w.link(event(i)).line);
}

function marker(w: ChainWriter, chains: { writer: string; seq: number; hash: string }[], signer: CheckpointSigner) {
  const head = w.head;
  const body = signCheckpoint(
    {
      time: '2026-12-03T07:00:00.000Z',
      writer: w.writer,
      seq: head.seq,
      head: head.hash,
      prevCheckpoint: GENESIS,
      reason: 'retention',
      interval: 10_000,
      store: 'file:audit.jsonl',
      retention: { store: 'file', reason: 'maxFiles 1', files: [], entries: 0, chains },
    },
    signer,
  );
  return w.link(body).line;
}

const removedBy = (lines: string[], newest: { writer: string; seq: number; hash: string }[] = []) => {
  const r = new RemovedChains(keys, newest);
  for (const l of lines) r.add(l);
  return r;
};

describe('a retention step vouches', () => {
  it('for a chain removed from its start, and says where it now begins', () => {
    const w = new ChainWriter('gw');
    const lines = records(w, 5);
    const r = removedBy(lines);
    expect(r.chains).toEqual([{ writer: w.writer, seq: 5, hash: chainOf(lines[4]!).hash }]);
    expect(r.unvouched).toEqual([]);
  });

  it('for records that follow the newest marker’s cut point, or one signed in the same range after them', () => {
    const w = new ChainWriter('gw');
    const all = records(w, 10);
    const cut = { writer: w.writer, seq: 4, hash: chainOf(all[3]!).hash };
    expect(removedBy(all.slice(4, 8), [cut]).unvouched).toEqual([]);
    const other = new ChainWriter('gw-2');
    const inRange = [...all.slice(4, 8), marker(other, [cut], key)];
    const r = removedBy(inRange);
    expect(r.unvouched).toEqual([]);
    expect(r.chains).toContainEqual({ writer: w.writer, seq: 8, hash: chainOf(all[7]!).hash });
  });

  it('not for a planted copy of a record from the middle of a chain, nor a marker signed by another key', () => {
    const w = new ChainWriter('gw');
    const all = records(w, 60);
    const planted = removedBy([all[40]!]);
    expect(planted.chains).toEqual([]);
    expect(planted.unvouched).toEqual([
      {
        writer: w.writer,
        why: 'record 41 neither starts the chain nor follows a cut point a signed marker vouched for',
      },
    ]);
    const forger = newSigner();
    const forged = removedBy([
      all[40]!,
      marker(new ChainWriter('evil'), [{ writer: w.writer, seq: 40, hash: chainOf(all[39]!).hash }], forger),
    ]);
    expect(forged.chains.map((c) => c.writer)).not.toContain(w.writer);
  });

  it('not for a record edited (its hash no longer matches) or a gap among the removed ones', () => {
    const w = new ChainWriter('gw');
    const all = records(w, 6);
    const edited = [...all];
    edited[2] = edited[2]!.replace('"e2"', '"e9"');
    expect(removedBy(edited).unvouched).toEqual([{ writer: w.writer, why: 'record 3 does not match its hash' }]);
    expect(removedBy([all[0]!, all[1]!, all[3]!]).unvouched).toEqual([
      { writer: w.writer, why: 'record 4 does not follow record 2' },
    ]);
  });
});

describe('after a key rotation', () => {
  it('a marker signed by the retired key vouches only when that key is among the previous keys', () => {
    const old = newSigner();
    const w = new ChainWriter('gw');
    const all = records(w, 10);
    const cut = { writer: w.writer, seq: 4, hash: chainOf(all[3]!).hash };
    const range = [...all.slice(4, 8), marker(new ChainWriter('gw-old'), [cut], old)];
    const without = new RemovedChains(keys);
    const withOld = new RemovedChains(trustedKeys([key.publicKey, old.publicKey]));
    for (const l of range) {
      without.add(l);
      withOld.add(l);
    }
    expect(without.unvouched.map((u) => u.writer)).toEqual([w.writer]);
    expect(withOld.unvouched).toEqual([]);
  });
});

describe('a file sink with maxFiles', () => {
  it('removes a planted old file, but its signed marker does not vouch for the cut the plant claims', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-plant-'));
    const path = join(dir, 'audit.jsonl');
    const sink = await createFileSink({ path, maxBytes: 1_000_000, fsync: 'never', maxFiles: 1 });
    const w = await startedWriter(sink, { checkpoints: { signer: key, intervalMs: 60_000 }, spoolDir: dir });
    for (let i = 0; i < 20; i++) await w.submit(event(i), true);
    // The attacker copies the writer's record 12 into a file that sorts as the oldest rotated one, and a second
    // rotated file makes one too many for maxFiles: 1.
    const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
    writeFileSync(join(dir, 'audit.jsonl.2000-01-01T00-00-00-000Z'), `${lines[11]}\n`);
    writeFileSync(join(dir, 'audit.jsonl.2000-01-02T00-00-00-000Z'), '');
    const plan = await sink.planRetention!(w.writer, keys);
    expect(plan!.facts.chains).toEqual([]);
    expect(plan!.unvouched.map((u) => u.writer)).toEqual([w.writer]);
    await plan!.apply('{}');
    expect(readdirSync(dir).filter((n) => n.startsWith('audit.jsonl.'))).toEqual([
      'audit.jsonl.2000-01-02T00-00-00-000Z',
    ]);
    await w.close();
    expect(parsedLine(readFileSync(path, 'utf8').split('\n').filter(Boolean).at(-1)!).parsed.reason).toBe('shutdown');
  });
});
