// Reading trail files line by line: every line with its place, and a line too long to hold handed on as a marker
// (the verifier reports it malformed) without buffering it.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forEachLine, LINE_TOO_LONG, MAX_LINE } from '../../src/audit/lines.js';
import { trustedKeys } from '../../src/audit/checkpoint.js';
import { TrailProver } from '../../src/audit/proof.js';

const dir = mkdtempSync(join(tmpdir(), 'lines-'));

async function read(text: string | Buffer, maxLine?: number): Promise<[string, string][]> {
  const path = join(dir, `t-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(path, text);
  const got: [string, string][] = [];
  await forEachLine([path], (l, w) => got.push([l, w.replace(/^t-\w+\.jsonl:/, '')]), undefined, maxLine);
  return got;
}

describe('forEachLine', () => {
  it('hands on every non-empty line with its line number, the last one without its newline too', async () => {
    expect(await read('a\n\nbc\r\nd')).toEqual([
      ['a', '1'],
      ['bc\r', '3'],
      ['d', '4'],
    ]);
  });

  it('joins lines across 4 MiB chunks, multi-byte characters split between them included', async () => {
    const long = 'é'.repeat(3 << 20);
    expect(await read(`x\n${long}\ny`)).toEqual([
      ['x', '1'],
      [long, '2'],
      ['y', '3'],
    ]);
  });

  it('hands on a line longer than the cap as a marker, then goes on after its newline', async () => {
    const over = 'a'.repeat(9 << 20);
    expect(await read(`x\n${over}\ny\n${over}`, 8 << 20)).toEqual([
      ['x', '1'],
      [LINE_TOO_LONG, '2'],
      ['y', '3'],
      [LINE_TOO_LONG, '4'],
    ]);
    // At the cap exactly it is still a line.
    const at = 'b'.repeat(8 << 20);
    expect((await read(`${at}\n`, 8 << 20)).map(([l, w]) => [l.length, w])).toEqual([[8 << 20, '1']]);
  });

  it('reads a 40 MiB line without a newline in linear time, as the marker, by default cap', async () => {
    expect(MAX_LINE).toBe(16 << 20);
    const started = Date.now();
    expect(await read(Buffer.alloc(40 << 20, 0x61))).toEqual([[LINE_TOO_LONG, '1']]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('the marker is malformed to the verifier, at its place', () => {
    const p = new TrailProver({ keys: trustedKeys([]), at: Date.now() });
    p.add(LINE_TOO_LONG, 'audit.jsonl:7');
    const r = p.finish();
    expect(r.findings).toEqual([
      {
        kind: 'malformed',
        writer: null,
        position: 1,
        where: 'audit.jsonl:7',
        detail: 'not an audit record: the line is longer than 16 MiB (it was skipped, not read)',
      },
    ]);
  });
});
