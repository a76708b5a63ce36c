// The trail prover against each tamper an attacker who holds the store (but not the signing key) can make: every
// finding names its kind and the record it is at, and an intact trail yields none.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChainWriter, eventBody, eventHash, GENESIS } from '../../src/audit/chain.js';
import {
  checkpointSigner,
  signCheckpoint,
  trustedKeys,
  type CheckpointReason,
  type CheckpointSigner,
  type RetentionFacts,
  type Witness,
} from '../../src/audit/checkpoint.js';
import { TrailProver, type ProofReport } from '../../src/audit/proof.js';
import { chainOf, sampleEvent } from '../helpers/trail.js';

const STORE = 'file:audit.jsonl';
const T0 = Date.parse('2026-12-02T10:00:00.000Z');
const INTERVAL = 10_000;

function signer(): CheckpointSigner {
  const { privateKey } = generateKeyPairSync('ed25519');
  return checkpointSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
}

/** A writer as the gateway runs one: events linked into its chain, checkpoints signed and linked like events. */
class Writer {
  readonly chain: ChainWriter;
  private lastCheckpoint = GENESIS;
  /** The chain hash of each record by seq, for retention markers. */
  readonly hashes = new Map<number, string>();

  constructor(
    private readonly key: CheckpointSigner,
    instance = 'gw',
  ) {
    this.chain = new ChainWriter(instance);
  }

  get id(): string {
    return this.chain.writer;
  }

  event(ms: number): string {
    const body = eventBody(
      sampleEvent({
        type: 'outcome',
        time: new Date(ms),
        requestId: `r-${ms}`,
        fields: { upstreamStatus: 200 },
        decision: 'allowed',
        status: 200,
        latencyMs: 3,
        client: { address: '10.0.0.1', userAgent: 'curl/8' },
      }),
    );
    return this.link(body);
  }

  checkpoint(
    reason: CheckpointReason,
    ms: number,
    extra: { witness?: Witness[]; retention?: RetentionFacts; store?: string } = {},
  ): string {
    const head = this.chain.head;
    const body = signCheckpoint(
      {
        time: new Date(ms).toISOString(),
        writer: this.id,
        seq: head.seq,
        head: head.hash,
        prevCheckpoint: this.lastCheckpoint,
        reason,
        interval: INTERVAL,
        store: extra.store ?? STORE,
        ...(extra.witness !== undefined ? { witness: extra.witness } : {}),
        ...(extra.retention !== undefined ? { retention: extra.retention } : {}),
      },
      this.key,
    );
    const line = this.link(body);
    this.lastCheckpoint = this.chain.head.hash;
    return line;
  }

  get seq(): number {
    return this.chain.head.seq;
  }

  private link(body: string): string {
    const r = this.chain.link(body);
    this.hashes.set(r.seq, this.chain.head.hash);
    return r.line;
  }
}

/** open, then `n` events one second apart with an interval checkpoint every 10 s, then shutdown (if `close`). */
function run(w: Writer, n: number, close = true, start = T0): string[] {
  const lines = [w.checkpoint('open', start)];
  for (let i = 1; i <= n; i++) {
    lines.push(w.event(start + i * 1000));
    if (i % 10 === 0) lines.push(w.checkpoint('interval', start + i * 1000));
  }
  if (close) lines.push(w.checkpoint('shutdown', start + n * 1000 + 500));
  return lines;
}

/** The attacker's re-link: every record of `writer` from index `from` on gets its prev and hash recomputed. */
function rechain(lines: string[], writer: string, from: number): string[] {
  const out = [...lines];
  let prev: string | undefined;
  for (let i = 0; i < out.length; i++) {
    const line = out[i]!;
    const at = line.lastIndexOf(',"chain":{');
    const c = chainOf(line);
    if (c.writer !== writer) continue;
    if (i < from) {
      prev = c.hash;
      continue;
    }
    const body = `${line.slice(0, at)}}`;
    const p = prev ?? GENESIS;
    const hash = eventHash(body, { writer, seq: c.seq, prev: p });
    out[i] = `${line.slice(0, at)},"chain":${JSON.stringify({ writer, seq: c.seq, prev: p, hash })}}`;
    prev = hash;
  }
  return out;
}

/** A record re-linked at the end of `writer`'s chain, as an attacker appends a copy of an old one. */
function appendRechained(lines: string[], line: string, writer: string): string[] {
  const last = lines
    .map(chainOf)
    .filter((c) => c.writer === writer)
    .at(-1)!;
  const body = `${line.slice(0, line.lastIndexOf(',"chain":{'))}}`;
  const chain = { writer, seq: last.seq + 1, prev: last.hash, hash: '' };
  chain.hash = eventHash(body, chain);
  return [...lines, `${body.slice(0, -1)},"chain":${JSON.stringify(chain)}}`];
}

function prove(
  lines: string[],
  o: { keys: CheckpointSigner[]; at?: number; since?: number; copies?: string[] },
): ProofReport {
  const p = new TrailProver({
    keys: trustedKeys(o.keys.map((k) => k.publicKey)),
    at: o.at ?? T0 + 60_000,
    store: STORE,
    ...(o.since !== undefined ? { since: o.since } : {}),
  });
  (o.copies ?? []).forEach((l, i) => p.addCheckpointCopy(l, `checkpoints.jsonl:${i + 1}`));
  lines.forEach((l, i) => p.add(l, `audit.jsonl:${i + 1}`));
  return p.finish();
}

const kinds = (r: ProofReport) => r.findings.map((f) => [f.kind, f.position]);

const key = signer();

describe('an intact trail', () => {
  it('of two interleaved writers is intact with zero findings', () => {
    const a = run(new Writer(key, 'gw-1'), 25);
    const b = run(new Writer(key, 'gw-2'), 25);
    const lines = a.flatMap((l, i) => [l, ...(b[i] !== undefined ? [b[i]] : [])]);
    const r = prove(lines, { keys: [key] });
    expect(r.findings).toEqual([]);
    expect(r).toMatchObject({ verdict: 'intact', records: lines.length, verified: lines.length, writers: 2 });
    // open + 2 intervals + shutdown, each.
    expect(r.checkpoints).toBe(8);
  });

  it('is unverifiable when it holds no records', () => {
    expect(prove([], { keys: [key] })).toMatchObject({ verdict: 'unverifiable', records: 0 });
  });
});

describe('edits', () => {
  it('an edited event whose hash was left: edited at that record', () => {
    const lines = run(new Writer(key), 25);
    lines[5] = lines[5]!.replace('"status":200', '"status":201');
    const r = prove(lines, { keys: [key] });
    expect(kinds(r)).toEqual([['edited', 6]]);
  });

  it('an edited event with every later hash recomputed: edited at the next checkpoint, by its signed head', () => {
    const w = new Writer(key);
    const lines = run(w, 25);
    lines[5] = lines[5]!.replace('"status":200', '"status":201');
    const tampered = rechain(lines, w.id, 5);
    const r = prove(tampered, { keys: [key] });
    // The checkpoint after 10 events is the 12th record (open, 10 events, checkpoint).
    expect(kinds(r)).toEqual([['edited', 12]]);
    expect(r.findings[0]!.detail).toMatch(
      new RegExp(`^events of ${w.id} up to seq 11 were changed: checkpoint at 2026-12-02T10:00:10.000Z signs head`),
    );
  });

  it('a checkpoint copy that differs from the trail record at its seq: edited', () => {
    const w = new Writer(key);
    const lines = run(w, 25);
    const copies = [lines[11]!, lines[22]!];
    const tampered = [...lines];
    // The attacker swaps the second interval checkpoint for an event, re-linking the rest.
    tampered[22] = w.event(T0 + 99_000).replace(/,"chain":\{.*\}$/, `,"chain":${JSON.stringify(chainOf(lines[22]!))}}`);
    const r = prove(rechain(tampered, w.id, 22), { keys: [key], copies });
    expect(r.findings.map((f) => [f.kind, f.position, f.where])).toContainEqual(['edited', 0, 'checkpoints.jsonl:2']);
  });
});

describe('cut-off tails', () => {
  const at = T0 + 45_000;

  function cut() {
    const w = new Writer(key);
    // 30 events, still running: open, events, checkpoints at 10, 20, 30 events.
    const lines = run(w, 30, false);
    return { w, lines, kept: lines.slice(0, -10) };
  }

  it('the newest 10 records dropped, their checkpoint with them: silent once the interval has passed', () => {
    const { w, kept } = cut();
    const r = prove(kept, { keys: [key], at });
    expect(kinds(r)).toEqual([['silent', kept.length]]);
    expect(r.findings[0]!.detail).toMatch(new RegExp(`^writer ${w.id} silent since 2026-12-02T10:00:20.000Z`));
    // Within the interval nothing is wrong yet, but the report says the writer's end is not vouched for.
    const early = prove(kept, { keys: [key], at: T0 + 24_000 });
    expect(early.verdict).toBe('intact');
    expect(early.running).toEqual([
      {
        writer: w.id,
        lastCheckpoint: '2026-12-02T10:00:20.000Z',
        seq: chainOf(kept.findLast((l) => l.includes('"type":"checkpoint"'))!).seq,
        lastSeq: chainOf(kept.at(-1)!).seq,
        due: '2026-12-02T10:00:35.000Z',
      },
    ]);
    // A writer that shut down is not running.
    expect(prove(run(new Writer(key, 'gw-3'), 5), { keys: [key], at: T0 + 1_000 }).running).toEqual([]);
  });

  it('truncated when a checkpoint copy says the writer got further', () => {
    const { w, lines, kept } = cut();
    const r = prove(kept, { keys: [key], at: T0 + 24_000, copies: [lines.at(-1)!] });
    expect(kinds(r)).toEqual([['truncated', kept.length]]);
    expect(r.findings[0]!.detail).toBe(
      `truncated: writer ${w.id} ends at seq ${chainOf(kept.at(-1)!).seq}, its checkpoint at ` +
        `2026-12-02T10:00:30.000Z says ${chainOf(lines.at(-1)!).seq} (checkpoint copy at checkpoints.jsonl:1)`,
    );
  });

  it("truncated when another writer's checkpoint witnessed more", () => {
    const { w, lines, kept } = cut();
    const x = new Writer(key, 'gw-2');
    const witness = [
      x.checkpoint('open', T0 + 1000),
      x.checkpoint('interval', T0 + 31_000, { witness: [{ writer: w.id, seq: w.seq }] }),
    ];
    const r = prove([...kept, ...witness], { keys: [key], at: T0 + 24_000 });
    expect(kinds(r)).toEqual([['truncated', kept.length]]);
    expect(r.findings[0]!.detail).toContain(`ends at seq ${chainOf(kept.at(-1)!).seq}`);
    expect(lines).toHaveLength(kept.length + 10);
  });
});

describe('whole writers', () => {
  it('a dropped writer is missing, by a witness and by a checkpoint copy', () => {
    const gone = new Writer(key, 'gw-gone');
    const goneLines = run(gone, 5, false);
    const x = new Writer(key, 'gw-2');
    const lines = [
      x.checkpoint('open', T0),
      x.event(T0 + 1000),
      x.checkpoint('interval', T0 + 10_000, { witness: [{ writer: gone.id, seq: gone.seq }] }),
      x.checkpoint('shutdown', T0 + 11_000),
    ];
    const byWitness = prove(lines, { keys: [key] });
    expect(kinds(byWitness)).toEqual([['missing', 3]]);
    expect(byWitness.findings[0]!.writer).toBe(gone.id);
    const y = new Writer(key, 'gw-3');
    const alone = [y.checkpoint('open', T0), y.event(T0 + 1000), y.checkpoint('shutdown', T0 + 2000)];
    const byCopy = prove(alone, { keys: [key], copies: [goneLines[0]!] });
    expect(byCopy.findings.map((f) => [f.kind, f.writer, f.where])).toEqual([
      ['missing', gone.id, 'checkpoints.jsonl:1'],
    ]);
  });

  it('a witness at seq 0 proves nothing; a stream read from shortly before --since misses no writer it never read', () => {
    const x = new Writer(key, 'gw-2');
    const lines = [
      x.checkpoint('open', T0, { witness: [{ writer: 'gw-old/00000000', seq: 0 }] }),
      x.checkpoint('interval', T0 + 10_000, { witness: [{ writer: 'gw-gone/11111111', seq: 7 }] }),
      x.checkpoint('shutdown', T0 + 11_000),
    ];
    expect(kinds(prove(lines, { keys: [key] }))).toEqual([['missing', 2]]);
    const p = new TrailProver({
      keys: trustedKeys([key.publicKey]),
      at: T0 + 60_000,
      since: T0,
      readFrom: T0 - 300_000,
    });
    lines.forEach((l, i) => p.add(l, `e-${i}`));
    expect(p.finish()).toMatchObject({ verdict: 'intact', findings: [] });
  });

  it('read from shortly before --since, a writer is missing by a witness whose `at` is at or after the reading start', () => {
    const readFrom = T0 - 300_000;
    const x = new Writer(key, 'gw-2');
    const lines = [
      x.checkpoint('open', T0, { witness: [{ writer: 'gw-old/00000000', seq: 9, at: readFrom - 1 }] }),
      x.checkpoint('interval', T0 + 10_000, { witness: [{ writer: 'gw-gone/11111111', seq: 7, at: T0 + 9_000 }] }),
      x.checkpoint('interval', T0 + 20_000, { witness: [{ writer: 'gw-gone/11111111', seq: 8 }] }),
      x.checkpoint('shutdown', T0 + 21_000),
    ];
    const p = new TrailProver({ keys: trustedKeys([key.publicKey]), at: T0 + 60_000, since: T0, readFrom });
    lines.forEach((l, i) => p.add(l, `e-${i}`));
    const r = p.finish();
    // gw-old appended last before the reading start: its records may all be before it. gw-gone did not.
    expect(r.findings.map((f) => [f.kind, f.writer, f.position])).toEqual([['missing', 'gw-gone/11111111', 2]]);
    expect(r.findings[0]!.detail).toMatch(/says it reached seq 7$/);
  });

  it('an inserted writer with a self-made key is forged; one without checkpoints too', () => {
    const real = run(new Writer(key), 5);
    const own = signer();
    const fake = run(new Writer(own, 'gw-fake'), 5);
    const r = prove([...real, ...fake], { keys: [key] });
    expect(kinds(r)).toEqual([['forged', real.length + 1]]);
    expect(r.findings[0]!.detail).toMatch(/signed by a key that is not trusted/);
    const bare = new Writer(key, 'gw-bare');
    const r2 = prove([...real, bare.event(T0), bare.event(T0 + 1)], { keys: [key] });
    expect(kinds(r2)).toEqual([['forged', real.length + 1]]);
    expect(r2.findings[0]!.detail).toMatch(/without a signed open checkpoint/);
  });

  it('records after a writer shut down are forged', () => {
    const w = new Writer(key);
    const lines = [...run(w, 5), w.event(T0 + 9000)];
    expect(kinds(prove(lines, { keys: [key] }))).toEqual([['forged', lines.length]]);
  });
});

describe('replayed checkpoints', () => {
  it('an old checkpoint re-chained at the end is replayed', () => {
    const w = new Writer(key);
    const lines = run(w, 25, false);
    const replay = appendRechained(lines, lines[11]!, w.id);
    const r = prove(replay, { keys: [key], at: T0 + 26_000 });
    expect(kinds(r)).toEqual([['replayed', replay.length]]);
    expect(r.findings[0]!.detail).toMatch(/signs seq 11 but sits at seq 29: an old checkpoint re-chained/);
  });

  it('an old checkpoint stored again as it was (its chain member too) is replayed, not merely duplicated', () => {
    const w = new Writer(key);
    const lines = run(w, 25, false);
    const again = [...lines, lines[11]!];
    const r = prove(again, { keys: [key], at: T0 + 26_000 });
    expect(kinds(r)).toEqual([['replayed', again.length]]);
    expect(r.findings[0]!.detail).toMatch(
      /^checkpoint record 12 of .* appears again after record \d+: an old checkpoint replayed/,
    );
    // An event stored twice stays duplicated.
    expect(kinds(prove([...lines, lines[5]!], { keys: [key], at: T0 + 26_000 }))).toEqual([
      ['duplicated', lines.length + 1],
    ]);
  });

  it("an inserted writer that opens with a copy of another writer's checkpoint is replayed and forged", () => {
    const w = new Writer(key);
    const lines = run(w, 5);
    const evil = new ChainWriter('evil');
    const open = lines[0]!;
    const inserted = [evil.link(`${open.slice(0, open.lastIndexOf(',"chain":{'))}}`).line, evil.link('{"v":3}').line];
    const r = prove([...lines, ...inserted], { keys: [key], at: T0 + 6_000 });
    expect(kinds(r)).toEqual([
      ['replayed', lines.length + 1],
      ['forged', lines.length + 1],
    ]);
  });

  it('a checkpoint of another store is replayed, once per writer', () => {
    const w = new Writer(key);
    const lines = [
      w.checkpoint('open', T0, { store: 'file:other.jsonl' }),
      w.event(T0 + 1),
      w.checkpoint('shutdown', T0 + 2, { store: 'file:other.jsonl' }),
    ];
    const r = prove(lines, { keys: [key] });
    expect(kinds(r)).toEqual([['replayed', 1]]);
    expect(r.findings[0]!.detail).toMatch(/belongs to store file:other\.jsonl, not file:audit\.jsonl/);
  });

  it('a clock that steps back between linked checkpoints is no finding; copies that do not link, beyond 5 min, are', () => {
    const w = new Writer(key);
    const a = w.checkpoint('open', T0 + 5000);
    const b = w.checkpoint('interval', T0 - 25_000);
    const c = w.checkpoint('interval', T0 - 400_000);
    const d = w.checkpoint('shutdown', T0 - 420_000);
    // In the trail each links to the one before it: the order is proven, whatever the times say.
    expect(prove([a, b, c, d], { keys: [key], at: T0 + 6000 })).toMatchObject({ verdict: 'intact', findings: [] });
    // Copies a and c do not link (b is not among them): c is 6 min 45 s older than a. d links to c.
    const r = prove([a, b, c, d], { keys: [key], copies: [a, c, d], at: T0 + 6000 });
    expect(r.findings.map((f) => [f.kind, f.position, f.where])).toEqual([['replayed', 0, 'checkpoints.jsonl:2']]);
    expect(r.findings[0]!.detail).toMatch(/is more than 5 minutes older than its previous checkpoint/);
    // 20 s back between copies that do not link is tolerated.
    const x = new Writer(key, 'gw-x');
    const xs = [x.checkpoint('open', T0 + 30_000), x.checkpoint('interval', T0 + 40_000)];
    xs.push(x.checkpoint('shutdown', T0 + 10_000));
    expect(prove(xs, { keys: [key], copies: [xs[0]!, xs[2]!], at: T0 + 41_000 }).findings).toEqual([]);
  });
});

describe('retention', () => {
  /** Writer records 1..30; its retention marker (after them) says records up to seq 10 go. */
  function trimmed(marker: 'valid' | 'none' | 'forged') {
    const w = new Writer(key);
    const lines = run(w, 25, false);
    const cutSeq = 10;
    const retention: RetentionFacts = {
      store: 'file',
      reason: 'maxFiles 3',
      files: ['audit.jsonl.2026-12-02T10-00-00Z'],
      entries: cutSeq,
      chains: [
        { writer: w.id, seq: marker === 'forged' ? 5 : cutSeq, hash: w.hashes.get(marker === 'forged' ? 5 : cutSeq)! },
      ],
    };
    let all =
      marker === 'none'
        ? [...lines, w.event(T0 + 27_000)]
        : [...lines, w.checkpoint('retention', T0 + 26_000, { retention }), w.event(T0 + 27_000)];
    if (marker === 'forged') {
      // The attacker widens a real marker to cover what it deleted, and re-links the chain after it.
      const i = all.length - 2;
      all[i] = all[i]!.replace(`"seq":5,"hash":"${w.hashes.get(5)}"`, `"seq":10,"hash":"${w.hashes.get(10)}"`);
      all = rechain(all, w.id, i);
    }
    return all.slice(cutSeq);
  }

  it('a partial start explained by a signed retention marker is intact', () => {
    const r = prove(trimmed('valid'), { keys: [key], at: T0 + 28_000 });
    expect(r.findings).toEqual([]);
    expect(r.verdict).toBe('intact');
    expect(r.retained).toEqual([{ writer: expect.any(String), firstSeq: 11, reason: 'maxFiles 3' }]);
  });

  it('a partial start without a marker is deleted', () => {
    const lines = trimmed('none');
    const r = prove(lines, { keys: [key], at: T0 + 28_000 });
    expect(kinds(r)).toEqual([['deleted', 1]]);
    expect(r.findings[0]!.detail).toMatch(/starts at seq 11 and no signed retention marker explains it/);
  });

  it('a marker with a bad signature is forged (and the start it claims to explain is deleted)', () => {
    const lines = trimmed('forged');
    const r = prove(lines, { keys: [key], at: T0 + 28_000 });
    expect(kinds(r)).toEqual([
      ['deleted', 1],
      ['forged', lines.length - 1],
    ]);
    expect(r.findings[1]!.detail).toMatch(/signature that does not match/);
  });
});

describe('key rotation', () => {
  it('writers signed by two trusted keys are intact; with the old key dropped, its writer is forged', () => {
    const old = signer();
    const a = run(new Writer(old, 'gw-1'), 5);
    const b = run(new Writer(key, 'gw-2'), 5);
    const lines = [...a, ...b];
    expect(prove(lines, { keys: [old, key] })).toMatchObject({ verdict: 'intact', findings: [] });
    const r = prove(lines, { keys: [key] });
    expect(kinds(r)).toEqual([['forged', 1]]);
    expect(r.findings[0]!.detail).toContain(`key ${old.kid}`);
  });
});

describe('order', () => {
  it('two events swapped: reordered at the one that comes late', () => {
    const lines = run(new Writer(key), 5);
    [lines[2], lines[3]] = [lines[3]!, lines[2]!];
    expect(kinds(prove(lines, { keys: [key] }))).toEqual([['reordered', 4]]);
  });

  it('an event stored twice: duplicated', () => {
    const lines = run(new Writer(key), 5);
    lines.splice(3, 0, lines[2]!);
    expect(kinds(prove(lines, { keys: [key] }))).toEqual([['duplicated', 4]]);
  });

  it('an event removed: deleted at the record after the gap, and the rest still checked', () => {
    const lines = run(new Writer(key), 25);
    lines.splice(3, 1);
    lines[20] = lines[20]!.replace('"status":200', '"status":500');
    const r = prove(lines, { keys: [key] });
    expect(kinds(r)).toEqual([
      ['deleted', 4],
      ['edited', 21],
    ]);
    expect(r.findings[0]!.detail).toMatch(/1 record\(s\) between them were deleted/);
  });

  it('lists the first 100 findings and counts them all', () => {
    const lines = run(new Writer(key), 160);
    let edited = 0;
    for (let i = 1; i < lines.length - 1; i++) {
      if (lines[i]!.includes('"type":"outcome"')) {
        lines[i] = lines[i]!.replace('"status":200', '"status":201');
        edited += 1;
      }
    }
    const r = prove(lines, { keys: [key] });
    expect(edited).toBe(160);
    expect(r.findingCount).toBe(160);
    expect(r.findings).toHaveLength(100);
    expect(r.findings.every((f) => f.kind === 'edited')).toBe(true);
    expect(r.findings[0]!.position).toBe(2);
  });

  it('a line that is not a record: malformed', () => {
    const lines = run(new Writer(key), 3);
    lines.splice(1, 0, '{"v":3,"type":"outcome"}');
    expect(kinds(prove(lines, { keys: [key] }))).toEqual([['malformed', 2]]);
  });
});

describe('--since', () => {
  it('checks each writer from its first checkpoint at or after the time, and not before', () => {
    const lines = run(new Writer(key), 25);
    const since = T0 + 15_000;
    const early = [...lines];
    early[3] = early[3]!.replace('"status":200', '"status":500');
    const r = prove(early, { keys: [key], since });
    expect(r.findings).toEqual([]);
    // The anchor is the checkpoint after 20 events (record 23): it and what follows are checked.
    expect(r).toMatchObject({ verdict: 'intact', records: lines.length, verified: lines.length - 22 });
    const late = [...lines];
    late[24] = late[24]!.replace('"status":200', '"status":500');
    expect(kinds(prove(late, { keys: [key], since }))).toEqual([['edited', 25]]);
  });

  it('is unverifiable when no writer has a checkpoint at or after it', () => {
    const lines = run(new Writer(key), 5);
    expect(prove(lines, { keys: [key], since: T0 + 3_600_000, at: T0 + 3_600_000 })).toMatchObject({
      verdict: 'unverifiable',
      verified: 0,
      reason: expect.stringMatching(/nothing was checked/),
    });
  });

  it('still finds an inserted writer', () => {
    const lines = run(new Writer(key), 5);
    const bare = new Writer(key, 'gw-bare');
    const r = prove([...lines, bare.event(T0)], { keys: [key], since: T0 + 1000 });
    expect(kinds(r)).toEqual([['forged', lines.length + 1]]);
    const fake = run(new Writer(signer(), 'gw-fake'), 3);
    expect(kinds(prove([...lines, ...fake], { keys: [key], since: T0 + 1000 }))).toEqual([
      ['forged', lines.length + 1],
    ]);
  });
});

describe('--since anchors', () => {
  const since = T0 + 15_000;

  it('deleting the checkpoints after the time, and the records between, does not move the anchor later unseen', () => {
    const lines = run(new Writer(key), 50);
    // Kept: everything up to the checkpoint at 10 s (record 12), and the shutdown; the checkpoints at 20 s to 50 s
    // and the events after 10 s are gone, so the shutdown would be the first checkpoint after the time.
    const tampered = [...lines.slice(0, 12), lines.at(-1)!];
    const r = prove(tampered, { keys: [key], since });
    expect(kinds(r)).toEqual([['deleted', 13]]);
    expect(r.findings[0]!.detail).toMatch(
      /record 57 of .* follows record 12: 44 record\(s\) between them were deleted/,
    );
  });

  it('a writer that opens after the time, its open checkpoint and first records cut off: deleted', () => {
    const lines = run(new Writer(key), 15, true, T0 + 20_000);
    const r = prove(lines.slice(11), { keys: [key], since });
    expect(kinds(r)).toEqual([['deleted', 1]]);
    expect(r.findings[0]!.detail).toMatch(/starts at seq 12 and no signed retention marker explains it/);
    expect(prove(lines, { keys: [key], since })).toMatchObject({ verdict: 'intact', findings: [] });
  });

  it('events between the time and the anchor edited with every later hash recomputed: edited at the anchor', () => {
    const w = new Writer(key);
    const lines = run(w, 35);
    lines[15] = lines[15]!.replace('"status":200', '"status":201');
    const r = prove(rechain(lines, w.id, 15), { keys: [key], since });
    // Every checkpoint after the edit signs another head; the first of them is still the anchor (record 23).
    expect(kinds(r)).toEqual([['edited', 23]]);
  });

  it('the anchor must follow the last checkpoint read before it', () => {
    const w = new Writer(key);
    const lines = run(w, 25);
    // The checkpoint at 10 s (record 12) swapped for an event under the same chain member: events before the anchor
    // are not hashed, but the anchor at 20 s (record 23) names the checkpoint at 10 s as its previous one.
    const event = w.event(T0 + 10_500);
    lines[11] = `${event.slice(0, event.lastIndexOf(',"chain":{'))}${lines[11]!.slice(lines[11]!.lastIndexOf(',"chain":{'))}`;
    const r = prove(lines, { keys: [key], since });
    expect(kinds(r)).toEqual([['replayed', 23]]);
    expect(r.findings[0]!.detail).toMatch(/does not follow its previous checkpoint/);
  });

  it('a stream read from shortly before the time begins mid-chain and is intact', () => {
    const lines = run(new Writer(key), 35);
    const p = new TrailProver({
      keys: trustedKeys([key.publicKey]),
      at: T0 + 60_000,
      store: STORE,
      since,
      readFrom: T0 + 5_000,
    });
    lines.slice(6).forEach((l, i) => p.add(l, `e-${i}`));
    expect(p.finish()).toMatchObject({ verdict: 'intact', findings: [], verified: lines.length - 22 });
  });
});

describe('the chain member', () => {
  it('bytes added inside it, outside the hash, are edited at that record', () => {
    const lines = run(new Writer(key), 3);
    const added = [...lines];
    added[1] = added[1]!.replace(/\}\}$/, ',"decision":"allowed"}}');
    expect(kinds(prove(added, { keys: [key] }))).toEqual([['edited', 2]]);
    const respelled = [...lines];
    respelled[2] = respelled[2]!.replace('"seq":3,', '"seq":3.0,');
    const r = prove(respelled, { keys: [key] });
    expect(kinds(r)).toEqual([['edited', 3]]);
    expect(r.findings[0]!.detail).toMatch(/its chain member is not as its writer wrote it/);
    // A checkpoint copy holds the same bytes as the trail, or it is not a copy of it.
    const copy = lines[0]!.replace(/\}\}$/, ',"x":1}}');
    expect(prove(lines, { keys: [key], copies: [copy] }).findings.map((f) => [f.kind, f.where])).toEqual([
      ['edited', 'checkpoints.jsonl:1'],
    ]);
  });
});

describe("retention that cut all of a writer's checkpoints", () => {
  /** A crashes after its checkpoint at 10 s; B's marker at 30 s removes A's records up to that checkpoint. */
  function crashed() {
    const a = new Writer(key, 'gw-a');
    const aLines = run(a, 15, false);
    const cutSeq = 12;
    const b = new Writer(key, 'gw-b');
    const retention: RetentionFacts = {
      store: 'file',
      reason: 'maxFiles 3',
      files: ['audit.jsonl.2026-12-02T10-00-00Z'],
      entries: cutSeq,
      chains: [{ writer: a.id, seq: cutSeq, hash: a.hashes.get(cutSeq)! }],
    };
    const bLines = [b.checkpoint('open', T0 + 20_000), b.checkpoint('retention', T0 + 30_000, { retention })];
    return { a, lines: [...aLines.slice(cutSeq), ...bLines] };
  }

  it('the marker vouches for its start: silent since the marker, not forged', () => {
    const { a, lines } = crashed();
    const r = prove(lines, { keys: [key], at: T0 + 60_000 });
    const silent = r.findings.filter((f) => f.writer === a.id);
    expect(silent.map((f) => [f.kind, f.position])).toEqual([['silent', 5]]);
    expect(silent[0]!.detail).toMatch(
      new RegExp(`^writer ${a.id} silent since 2026-12-02T10:00:30.000Z: retention removed its records up to seq 12`),
    );
  });

  it('in a stream read from shortly before --since too', () => {
    const { a, lines } = crashed();
    const p = new TrailProver({
      keys: trustedKeys([key.publicKey]),
      at: T0 + 60_000,
      store: STORE,
      since: T0 + 15_000,
      readFrom: T0 - 285_000,
    });
    lines.forEach((l, i) => p.add(l, `e-${i}`));
    const r = p.finish();
    expect(r.findings.filter((f) => f.writer === a.id).map((f) => [f.kind, f.position])).toEqual([['silent', 5]]);
  });

  it('within an interval of the marker it may still be running: a note, no finding', () => {
    const { a, lines } = crashed();
    const r = prove(lines, { keys: [key], at: T0 + 31_000 });
    expect(r.findings).toEqual([]);
    expect(r.running).toContainEqual({
      writer: a.id,
      lastCheckpoint: '2026-12-02T10:00:30.000Z',
      seq: 12,
      lastSeq: 17,
      due: '2026-12-02T10:00:45.000Z',
      cut: true,
    });
  });
});
