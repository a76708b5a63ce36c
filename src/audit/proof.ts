// Proves what an audit trail holds: every writer's hash chain checked link by link, and its signed checkpoints
// (checkpoint.ts) checked against the chain, so that edits that recompute every hash, cut-off tails, deleted or
// inserted writers and replayed checkpoints are found too. Streaming: memory grows with the writers and the
// checkpoints, never with the records. Pure.
import { eventHash, GENESIS } from './chain.js';
import { checkSignature, isCheckpointLine, type Checkpoint, type TrustedKeys } from './checkpoint.js';
import { LINE_TOO_LONG } from './lines.js';

export type FindingKind =
  | 'edited'
  | 'reordered'
  | 'duplicated'
  | 'deleted'
  | 'truncated'
  | 'silent'
  | 'forged'
  | 'replayed'
  | 'missing'
  | 'malformed';

export interface ProofFinding {
  readonly kind: FindingKind;
  /** The writer it concerns (null for a line without a readable chain member). */
  readonly writer: string | null;
  /** 1-based record index in store order; 0 for a finding about a checkpoint copy outside the trail. */
  readonly position: number;
  /** `file:line` or a stream entry id (of the copy, when position is 0). */
  readonly where: string;
  readonly detail: string;
}

export interface ProofReport {
  readonly verdict: 'intact' | 'broken' | 'unverifiable';
  /** Why it is unverifiable. */
  readonly reason?: string;
  /** Every record read. */
  readonly records: number;
  /** Records hash-checked (with `since`: those from each writer's anchor on). */
  readonly verified: number;
  readonly writers: number;
  /** Checkpoint records in the trail whose signature and place are right. */
  readonly checkpoints: number;
  /** Checkpoint copies that belong to this store (duplicates counted once). */
  readonly copies: number;
  /** The first `FINDINGS_LISTED` findings, in store order (copies' findings last). */
  readonly findings: readonly ProofFinding[];
  /** All findings, listed or not. */
  readonly findingCount: number;
  /** Chains that begin after seq 1 and are explained by a signed retention marker. */
  readonly retained: readonly { writer: string; firstSeq: number; reason: string }[];
  /**
   * Writers with no shutdown checkpoint whose last checkpoint is recent (not yet silent): still running, or their
   * newest records cut off, which only a checkpoint copy, or the next check after `due`, can tell.
   */
  readonly running: readonly {
    writer: string;
    /** Its last checkpoint's time, and that checkpoint record's seq. */
    lastCheckpoint: string;
    seq: number;
    lastSeq: number;
    /** When it becomes silent without a new checkpoint. */
    due: string;
    /**
     * Retention removed all its checkpoints: `lastCheckpoint` is the time of the marker that vouches for its start,
     * `seq` the last of its records removed.
     */
    cut?: boolean;
  }[];
}

export interface ProverOptions {
  readonly keys: TrustedKeys;
  /** The time to judge silence against (ms since the epoch). */
  readonly at: number;
  /**
   * Hash each writer's events from its first checkpoint at or after this time (ms), its anchor; earlier events are
   * not hashed, but their seqs and links are followed and every checkpoint is checked.
   */
  readonly since?: number;
  /**
   * The store the trail is (`file:<base name>`, `redis:<stream>`), or the stores it may be (a file that holds a
   * captured stdout trail is `stdout`): copies of other stores are ignored.
   */
  readonly store?: string | readonly string[];
  /**
   * When the records older than this (ms) were not read at all (a Redis stream read from shortly before `since`):
   * a writer named only by a witness without `at`, or by a witness `at` or a copy older than this, may have all its
   * records before it, so it is not reported missing.
   */
  readonly readFrom?: number;
}

export const FINDINGS_LISTED = 100;

/** Seqs remembered per writer to tell a duplicate (same seq, same hash) from a reordered record. */
const RING = 64;

/**
 * A copy of a hash cut from a line. A cut keeps its whole line alive, and the line the 4 MiB chunk it was read in:
 * what outlives the record (checkpoint hashes, chain starts) must be copied, or memory grows with the trail.
 * Hashes are ASCII, so latin1 copies them exactly.
 */
const own = (text: string): string => Buffer.from(text, 'latin1').toString('latin1');

const CHAIN_MARK = ',"chain":{';

/** How far a writer's clock may step back between two checkpoint copies that do not link (NTP, VM resume). */
const CLOCK_STEP = 300_000;

interface ChainTail {
  writer: string;
  seq: number;
  prev: string;
  hash: string;
}

/** The chain member exactly as ChainWriter.link writes it, matched where it starts (sticky). */
const EXACT_TAIL =
  /,"chain":\{"writer":("(?:[^"\\]|\\.)*"),"seq":([1-9][0-9]{0,15}),"prev":"(genesis|[0-9a-f]{64})","hash":"([0-9a-f]{64})"\}\}$/y;

/** Writer ids by their JSON text in the chain member, and whether that text is how JSON.stringify writes them. */
const writerTexts = new Map<string, { writer: string; exact: boolean } | undefined>();

function writerOf(text: string): { writer: string; exact: boolean } | undefined {
  if (writerTexts.has(text)) return writerTexts.get(text);
  let got: { writer: string; exact: boolean } | undefined;
  try {
    const writer = JSON.parse(text) as string;
    got = { writer, exact: JSON.stringify(writer) === text };
  } catch {
    got = undefined;
  }
  // Writers are few; a trail of many made-up ones must not grow this without bound.
  if (writerTexts.size >= 10_000) writerTexts.clear();
  writerTexts.set(text, got);
  return got;
}

/** The chain member of a line, where it starts and whether it is exactly as written, or why there is none. */
function tailOf(line: string): { at: number; chain: ChainTail; exact: boolean } | string {
  if (line === LINE_TOO_LONG) return 'the line is longer than 16 MiB (it was skipped, not read)';
  const at = line.lastIndexOf(CHAIN_MARK);
  if (at < 0 || line.charCodeAt(line.length - 1) !== 0x7d) return 'no chain member';
  // The common case, without parsing the member: anything else in it (added members, 2.0 for 2, escapes) is bytes
  // outside the hash, so not exact.
  EXACT_TAIL.lastIndex = at;
  const m = EXACT_TAIL.exec(line);
  if (m !== null) {
    const w = writerOf(m[1]!);
    const seq = Number(m[2]);
    if (w !== undefined && Number.isSafeInteger(seq)) {
      return { at, chain: { writer: w.writer, seq, prev: m[3]!, hash: m[4]! }, exact: w.exact };
    }
  }
  let chain: ChainTail;
  try {
    chain = JSON.parse(line.slice(at + 9, -1)) as ChainTail;
  } catch {
    return 'the chain member is not JSON';
  }
  if (
    typeof chain !== 'object' ||
    chain === null ||
    typeof chain.writer !== 'string' ||
    !Number.isSafeInteger(chain.seq) ||
    chain.seq < 1 ||
    typeof chain.prev !== 'string' ||
    typeof chain.hash !== 'string'
  ) {
    return 'the chain member lacks writer, seq, prev or hash';
  }
  return { at, chain, exact: false };
}

/** A checkpoint body's members, type-checked; undefined when it is not one. */
function checkpointOf(body: string): Checkpoint | undefined {
  let c: Checkpoint;
  try {
    c = JSON.parse(body) as Checkpoint;
  } catch {
    return undefined;
  }
  const ok =
    typeof c === 'object' &&
    c !== null &&
    typeof c.time === 'string' &&
    !Number.isNaN(Date.parse(c.time)) &&
    typeof c.writer === 'string' &&
    Number.isSafeInteger(c.seq) &&
    typeof c.head === 'string' &&
    typeof c.prevCheckpoint === 'string' &&
    ['open', 'interval', 'shutdown', 'retention'].includes(c.reason) &&
    typeof c.interval === 'number' &&
    c.interval > 0 &&
    typeof c.store === 'string' &&
    (c.witness === undefined || Array.isArray(c.witness)) &&
    (c.retention === undefined || (typeof c.retention === 'object' && Array.isArray(c.retention?.chains)));
  return ok ? c : undefined;
}

const signatureWhy = {
  unknown_key: 'is signed by a key that is not trusted',
  bad_signature: 'has a signature that does not match it',
  malformed: 'has no signature',
} as const;

interface Hole {
  /** The first and last missing seq. */
  from: number;
  to: number;
  /** How many of them came later (out of order). */
  filled: number;
  /** The prev of the record after the hole: the hash the record at `to` must have. */
  nextPrev: string;
  position: number;
  where: string;
}

interface LastCheckpoint {
  time: string;
  ms: number;
  reason: Checkpoint['reason'];
  interval: number;
  /** The chain seq of the checkpoint record. */
  seq: number;
  /** Its chain hash (the next checkpoint's prevCheckpoint). */
  hash: string;
}

interface Claim {
  seq: number;
  /**
   * How recent the claimed records are: a copy's time, a witness's `at` (the writer's last append), or undefined for
   * a witness without one (about records of any age).
   */
  ms: number | undefined;
  /** How the detail names who said so. */
  by: string;
  position: number;
  where: string;
}

/** A signed retention marker's word for where a cut chain now begins (the newest marker that says so). */
interface Retained {
  hash: string;
  reason: string;
  time: string;
  ms: number;
  /** The marker's writer's checkpoint interval. */
  interval: number;
}

interface Copy {
  writer: string;
  seq: number;
  hash: string;
  prevCheckpoint: string;
  time: string;
  ms: number;
  where: string;
}

class WriterState {
  records = 0;
  verified = 0;
  /** False until the first checkpoint at or after `since` (events before it are not hashed). */
  anchored: boolean;
  /** The first record read. */
  first: { seq: number; prev: string; position: number; where: string } | undefined;
  /** The head: the last record accepted into the chain. */
  seq = 0;
  hash = GENESIS;
  /** The highest seq seen at all, and the last record seen: where a cut-off chain ends. */
  maxSeq = 0;
  lastPosition = 0;
  lastWhere = '';
  readonly ring: string[] = new Array<string>(RING);
  readonly holes: Hole[] = [];
  /** The last valid checkpoint in its place, and the hashes of all of them by chain seq (for the copies). */
  lastCp: LastCheckpoint | undefined;
  readonly cpHashes = new Map<number, string>();
  /** Whether the previous checkpoint's hash is known (false until the first checkpoint read). */
  prevCpKnown = false;
  /** A finding since the last checkpoint makes a wrong prevCheckpoint a consequence, not a replay. */
  troubleSinceCp = false;
  /** Edited events with recomputed hashes: every later signed head disagrees; reported once. */
  diverged = false;
  signedAny = false;
  /** The open at seq 1 was judged (forged or not): no second finding for the same start. */
  startJudged = false;
  shutdownSeq: number | undefined;
  afterShutdownReported = false;
  storeReported = false;
  readonly untrustedKeys = new Set<string>();

  constructor(
    readonly writer: string,
    anchored: boolean,
  ) {
    this.anchored = anchored;
  }
}

/**
 * Feed it the trail's lines in store order (`add`) and any checkpoint copies (`addCheckpointCopy`), then `finish`.
 * After a break it resynchronises on the record it saw, so one tamper yields one finding and the rest of the trail
 * is still checked.
 */
export class TrailProver {
  private readonly writers = new Map<string, WriterState>();
  private position = 0;
  private checkpoints = 0;
  private readonly found: ProofFinding[] = [];
  private foundCount = 0;
  private readonly claims = new Map<string, Claim>();
  /** Per writer, the claim about its most recent records (those with a time). */
  private readonly newestClaims = new Map<string, Claim>();
  /** Per writer, per seq: the chain hash of its last record a signed retention marker says was removed. */
  private readonly retained = new Map<string, Map<number, Retained>>();
  private readonly copies: Copy[] = [];
  private readonly copyLines = new Set<string>();
  private readonly copyFindings: ProofFinding[] = [];

  constructor(private readonly o: ProverOptions) {}

  private report(list: ProofFinding[], f: ProofFinding): void {
    this.foundCount += 1;
    if (list.length < FINDINGS_LISTED) list.push(f);
  }

  private find(kind: FindingKind, w: WriterState | null, where: string, detail: string, position = this.position) {
    this.report(this.found, { kind, writer: w?.writer ?? null, position, where, detail });
    if (w !== null) w.troubleSinceCp = true;
  }

  add(line: string, where: string): void {
    this.position += 1;
    const t = tailOf(line);
    if (typeof t === 'string') {
      this.find('malformed', null, where, `not an audit record: ${t}`);
      return;
    }
    const { at, chain, exact } = t;
    let w = this.writers.get(chain.writer);
    if (w === undefined) {
      w = new WriterState(chain.writer, this.o.since === undefined);
      this.writers.set(chain.writer, w);
    }
    w.records += 1;
    if (chain.seq > w.maxSeq) w.maxSeq = chain.seq;
    w.lastPosition = this.position;
    w.lastWhere = where;
    const checkpoint = isCheckpointLine(line);
    if (w.anchored) w.verified += 1;
    const hashed = w.anchored || checkpoint;
    const body = hashed ? `${line.slice(0, at)}}` : '';
    let broken = false;
    if (!exact) {
      this.find(
        'edited',
        w,
        where,
        `record ${chain.seq} of ${chain.writer}: its chain member is not as its writer wrote it (it was edited)`,
      );
      broken = true;
    }
    // Before a writer's --since anchor only its events go unhashed (that is what makes --since fast): their seqs and
    // links are still followed, and checkpoints are checked in full, so that removing records or checkpoints after
    // the time cannot move the anchor later unseen.
    if (!broken && hashed && eventHash(body, chain) !== chain.hash) {
      this.find(
        'edited',
        w,
        where,
        `record ${chain.seq} of ${chain.writer}: its hash does not match it (it was edited)`,
      );
      broken = true;
    }
    if (w.first === undefined) {
      w.first = { seq: chain.seq, prev: own(chain.prev), position: this.position, where };
      if (chain.seq === 1 && chain.prev !== GENESIS) {
        this.find('edited', w, where, `record 1 of ${chain.writer} does not link to genesis: the chain was altered`);
        broken = true;
      }
    } else if (chain.seq === w.seq + 1) {
      if (chain.prev !== w.hash && !broken) {
        this.find(
          'edited',
          w,
          where,
          `record ${chain.seq} of ${chain.writer} does not link to record ${w.seq}: the chain was altered`,
        );
        broken = true;
      }
    } else if (chain.seq > w.seq + 1) {
      // Judged at the end: the missing records may still come (reordered), or never (deleted).
      w.holes.push({
        from: w.seq + 1,
        to: chain.seq - 1,
        filled: 0,
        nextPrev: chain.prev,
        position: this.position,
        where,
      });
      w.troubleSinceCp = true;
    } else {
      this.outOfOrder(w, chain, where, isCheckpointLine(line));
      return;
    }
    w.seq = chain.seq;
    w.hash = chain.hash;
    w.ring[chain.seq % RING] = chain.hash;
    if (w.shutdownSeq !== undefined && !w.afterShutdownReported) {
      w.afterShutdownReported = true;
      this.find(
        'forged',
        w,
        where,
        `record ${chain.seq} of ${chain.writer} follows its shutdown checkpoint at seq ${w.shutdownSeq}: ` +
          'nothing of a writer comes after its shutdown',
      );
    }
    if (checkpoint) {
      const c = this.inTrailCheckpoint(w, body, chain, where, broken);
      if (!w.anchored && c !== undefined && Date.parse(c.time) >= this.o.since!) {
        // The anchor: hashed from here on.
        w.anchored = true;
        w.verified += 1;
        this.checkpoints += 1;
      }
    } else if (chain.seq === 1 && !w.startJudged) {
      w.startJudged = true;
      this.find('forged', w, where, `writer ${chain.writer} starts without a signed open checkpoint (inserted writer)`);
    }
  }

  /** A record at or below the head: fills a hole (reordered), repeats a record (duplicated), or is out of place. */
  private outOfOrder(w: WriterState, chain: ChainTail, where: string, checkpoint: boolean): void {
    const hole = w.holes.find((h) => chain.seq >= h.from && chain.seq <= h.to);
    if (hole !== undefined) {
      hole.filled += 1;
      if (chain.seq === hole.to && chain.hash !== hole.nextPrev) {
        this.find('edited', w, where, `record ${chain.seq} of ${chain.writer} does not link to the record after it`);
      }
      this.find('reordered', w, where, `record ${chain.seq} of ${chain.writer} comes after its record ${w.seq}`);
      return;
    }
    if (checkpoint) {
      // An old checkpoint stored again as it was: it vouches for a past head, not for what precedes it here.
      this.find(
        'replayed',
        w,
        where,
        `checkpoint record ${chain.seq} of ${chain.writer} appears again after record ${w.seq}: an old checkpoint replayed`,
      );
      return;
    }
    if (chain.seq > w.seq - RING && w.ring[chain.seq % RING] === chain.hash) {
      this.find('duplicated', w, where, `record ${chain.seq} of ${chain.writer} appears again after record ${w.seq}`);
      return;
    }
    this.find('reordered', w, where, `record ${chain.seq} of ${chain.writer} comes after its record ${w.seq}`);
  }

  /** The checkpoint when its signature is good; otherwise a forged finding (untrusted keys once per writer). */
  private signedCheckpoint(w: WriterState, body: string, where: string): Checkpoint | undefined {
    const c = checkpointOf(body);
    if (c === undefined) {
      this.find('forged', w, where, `record of ${w.writer} looks like a checkpoint but is not a valid one`);
      return undefined;
    }
    const sig = checkSignature(body, c.key, this.o.keys);
    if (!sig.ok) {
      if (sig.why === 'unknown_key') {
        if (w.untrustedKeys.has(String(c.key))) return undefined;
        w.untrustedKeys.add(String(c.key));
      }
      this.find(
        'forged',
        w,
        where,
        `checkpoint of ${w.writer} at ${c.time} ${signatureWhy[sig.why]}` +
          (sig.why === 'unknown_key' ? ` (key ${String(c.key)}; give its public key with --key if it is yours)` : ''),
      );
      return undefined;
    }
    w.signedAny = true;
    return c;
  }

  /** Witnesses and retention facts of a valid checkpoint. */
  private takeFacts(w: WriterState, c: Checkpoint, where: string): void {
    for (const s of c.witness ?? []) {
      // Seq 0: a store that no longer knew the writer's head; it proves nothing.
      if (typeof s?.writer !== 'string' || !Number.isSafeInteger(s.seq) || s.seq <= 0) continue;
      this.claim(s.writer, {
        seq: s.seq,
        ms: typeof s.at === 'number' && Number.isFinite(s.at) ? s.at : undefined,
        by: `writer ${w.writer}'s checkpoint at ${c.time} (record ${this.position})`,
        position: this.position,
        where,
      });
    }
    if (c.retention !== undefined) {
      for (const r of c.retention.chains) {
        if (typeof r?.writer !== 'string' || !Number.isSafeInteger(r.seq) || typeof r.hash !== 'string') continue;
        let m = this.retained.get(r.writer);
        if (m === undefined) this.retained.set(r.writer, (m = new Map<number, Retained>()));
        const ms = Date.parse(c.time);
        const had = m.get(r.seq);
        if (had === undefined || ms >= had.ms) {
          m.set(r.seq, { hash: r.hash, reason: String(c.retention.reason), time: c.time, ms, interval: c.interval });
        }
      }
    }
  }

  /** The writers read so far. */
  get writerIds(): string[] {
    return [...this.writers.keys()];
  }

  /**
   * A store's own count of a writer's records (Redis: its head key, which the append script sets): records beyond
   * the trail's end were cut off. Not signed: a cross-check for a cut made without rewriting the store's keys too.
   */
  addStoreHead(writer: string, seq: number, key: string): void {
    const w = this.writers.get(writer);
    if (w === undefined || !Number.isSafeInteger(seq) || seq <= 0) return;
    this.claim(writer, { seq, ms: undefined, by: `its head key ${key}`, position: w.lastPosition, where: key });
  }

  private claim(writer: string, c: Claim): void {
    const had = this.claims.get(writer);
    if (had === undefined || c.seq > had.seq) this.claims.set(writer, c);
    const newest = this.newestClaims.get(writer);
    if (c.ms !== undefined && (newest === undefined || c.ms > newest.ms!)) this.newestClaims.set(writer, c);
  }

  private inTrailCheckpoint(
    w: WriterState,
    body: string,
    chain: ChainTail,
    where: string,
    broken: boolean,
  ): Checkpoint | undefined {
    const c = this.signedCheckpoint(w, body, where);
    const atStart = chain.seq === 1 && !w.startJudged;
    if (atStart) w.startJudged = true;
    if (c === undefined) return undefined;
    if (!this.ofStore(c.store) && !w.storeReported) {
      w.storeReported = true;
      this.find(
        'replayed',
        w,
        where,
        `checkpoint of ${w.writer} at ${c.time} belongs to store ${c.store}, not ${[this.o.store].flat().join(' or ')} ` +
          `(if the trail was renamed, give --store ${c.store})`,
      );
    }
    if (c.writer !== chain.writer) {
      this.find('replayed', w, where, `a checkpoint of writer ${c.writer} (at ${c.time}) re-chained into ${w.writer}`);
      if (atStart) {
        // Its start borrows another writer's signature: nothing signed by a trusted key opened this chain.
        this.find(
          'forged',
          w,
          where,
          `writer ${w.writer} starts without a signed opening checkpoint of its own (inserted writer)`,
        );
      }
      return undefined;
    }
    if (c.seq < chain.seq - 1) {
      this.find(
        'replayed',
        w,
        where,
        `checkpoint of ${w.writer} at ${c.time} signs seq ${c.seq} but sits at seq ${chain.seq}: an old checkpoint ` +
          're-chained',
      );
      return undefined;
    }
    if (c.seq > chain.seq - 1) {
      this.find(
        'forged',
        w,
        where,
        `checkpoint of ${w.writer} at ${c.time} signs seq ${c.seq} but sits at seq ${chain.seq}`,
      );
      return undefined;
    }
    if (c.head !== chain.prev) {
      // Events edited and every later hash recomputed: the signed head remembers the original.
      if (!w.diverged && !broken) {
        this.find(
          'edited',
          w,
          where,
          `events of ${w.writer} up to seq ${c.seq} were changed: checkpoint at ${c.time} signs head ${c.head}, ` +
            `the chain has ${chain.prev}`,
        );
      }
      w.diverged = true;
    } else if (c.prevCheckpoint !== (w.lastCp?.hash ?? GENESIS)) {
      if (w.prevCpKnown && !w.troubleSinceCp && !w.diverged) {
        this.find(
          'replayed',
          w,
          where,
          `checkpoint of ${w.writer} at ${c.time} does not follow its previous checkpoint (prevCheckpoint ` +
            `${c.prevCheckpoint}): a checkpoint was replayed or removed`,
        );
      }
      w.diverged = false;
    } else {
      w.diverged = false;
    }
    // No time check here: the chain and prevCheckpoint prove the order, and a host clock may step back.
    const ms = Date.parse(c.time);
    if (c.reason === 'open' && chain.seq !== 1) {
      this.find('forged', w, where, `an open checkpoint of ${w.writer} in the middle of its chain (seq ${chain.seq})`);
    } else if (atStart && c.reason !== 'open') {
      this.find('forged', w, where, `writer ${w.writer} starts without a signed open checkpoint (inserted writer)`);
    }
    // Before the anchor they are checked, not counted: the count is of the checkpoints in the checked part.
    if (w.anchored) this.checkpoints += 1;
    this.takeFacts(w, c, where);
    const hash = own(chain.hash);
    w.lastCp = { time: c.time, ms, reason: c.reason, interval: c.interval, seq: chain.seq, hash };
    w.cpHashes.set(chain.seq, hash);
    w.prevCpKnown = true;
    w.troubleSinceCp = false;
    if (c.reason === 'shutdown') w.shutdownSeq = chain.seq;
    return c;
  }

  /** A byte-identical copy of a checkpoint line from a checkpoint sink; only copies of this store count. */
  addCheckpointCopy(line: string, where: string): void {
    if (this.copyLines.has(line)) return;
    this.copyLines.add(line);
    const bad = (kind: FindingKind, writer: string | null, detail: string) =>
      this.report(this.copyFindings, { kind, writer, position: 0, where, detail });
    const t = tailOf(line);
    if (typeof t === 'string' || !isCheckpointLine(line)) {
      bad('malformed', null, `not a checkpoint record: ${typeof t === 'string' ? t : 'no checkpoint members'}`);
      return;
    }
    const { at, chain, exact } = t;
    const body = `${line.slice(0, at)}}`;
    const c = checkpointOf(body);
    if (c === undefined) {
      bad('malformed', chain.writer, 'not a valid checkpoint');
      return;
    }
    if (!this.ofStore(c.store)) return;
    const sig = checkSignature(body, c.key, this.o.keys);
    if (!sig.ok) {
      bad('forged', chain.writer, `checkpoint copy of ${chain.writer} at ${c.time} ${signatureWhy[sig.why]}`);
      return;
    }
    if (c.writer !== chain.writer || c.seq !== chain.seq - 1 || c.head !== chain.prev) {
      bad('forged', chain.writer, `checkpoint copy of ${chain.writer} at ${c.time} disagrees with its chain member`);
      return;
    }
    if (!exact || eventHash(body, chain) !== chain.hash) {
      bad('edited', chain.writer, `checkpoint copy of ${chain.writer} at ${c.time}: its hash does not match it`);
      return;
    }
    this.copies.push({
      writer: c.writer,
      seq: chain.seq,
      hash: own(chain.hash),
      prevCheckpoint: c.prevCheckpoint,
      time: c.time,
      ms: Date.parse(c.time),
      where,
    });
    this.claim(c.writer, {
      seq: chain.seq,
      ms: Date.parse(c.time),
      by: `its checkpoint at ${c.time}`,
      position: 0,
      where,
    });
  }

  finish(): ProofReport {
    const late: ProofFinding[] = [];
    const add = (f: ProofFinding) => this.report(late, f);
    const retainedOut: { writer: string; firstSeq: number; reason: string }[] = [];
    const running: ProofReport['running'][number][] = [];
    for (const w of this.writers.values()) {
      for (const h of w.holes) {
        const size = h.to - h.from + 1;
        if (h.filled >= size) continue;
        add({
          kind: 'deleted',
          writer: w.writer,
          position: h.position,
          where: h.where,
          detail:
            `record ${h.to + 1} of ${w.writer} follows record ${h.from - 1}: ` +
            `${size - h.filled} record(s) between them were deleted`,
        });
      }
      // A partial start: explained only by a signed retention marker naming the record before it. A stream read from
      // shortly before --since (readFrom) begins mid-chain by design, but a marker still vouches for a cut start.
      let vouched: Retained | undefined;
      if (w.first !== undefined && w.first.seq > 1) {
        const r = this.retained.get(w.writer)?.get(w.first.seq - 1);
        if (r !== undefined && r.hash === w.first.prev) {
          vouched = r;
          retainedOut.push({ writer: w.writer, firstSeq: w.first.seq, reason: r.reason });
        } else if (this.o.readFrom === undefined) {
          add({
            kind: 'deleted',
            writer: w.writer,
            position: w.first.position,
            where: w.first.where,
            detail:
              `chain of ${w.writer} starts at seq ${w.first.seq} and no signed retention marker explains it: ` +
              `records 1 to ${w.first.seq - 1} were deleted`,
          });
        }
      }
      // Retention may have cut all of a writer's checkpoints (it crashed, or its stream holds less than one interval):
      // the marker vouches for its start, and its time stands in for the last checkpoint.
      const cutAll = vouched !== undefined && !w.signedAny;
      if (!w.signedAny && !w.startJudged && !cutAll) {
        add({
          kind: 'forged',
          writer: w.writer,
          position: w.first?.position ?? w.lastPosition,
          where: w.first?.where ?? w.lastWhere,
          detail: `writer ${w.writer} has ${w.records} record(s) and no signed checkpoint`,
        });
      }
      const cp =
        w.lastCp ??
        (cutAll
          ? {
              time: vouched!.time,
              ms: vouched!.ms,
              reason: 'retention' as const,
              interval: vouched!.interval,
              seq: w.first!.seq - 1,
              hash: '',
            }
          : undefined);
      const grace = cp === undefined ? 0 : cp.interval + Math.min(cp.interval, 5000);
      if (cp !== undefined && cp.reason !== 'shutdown' && this.o.at - cp.ms <= grace) {
        running.push({
          writer: w.writer,
          lastCheckpoint: cp.time,
          seq: cp.seq,
          lastSeq: w.maxSeq,
          due: new Date(cp.ms + grace).toISOString(),
          ...(cutAll ? { cut: true } : {}),
        });
      }
      if (cp !== undefined && cp.reason !== 'shutdown' && this.o.at - cp.ms > grace) {
        add({
          kind: 'silent',
          writer: w.writer,
          position: w.lastPosition,
          where: w.lastWhere,
          detail: cutAll
            ? `writer ${w.writer} silent since ${cp.time}: retention removed its records up to seq ${cp.seq} with ` +
              `all its checkpoints (marker at ${cp.time}), no checkpoint of it followed, its last record is at seq ` +
              `${w.maxSeq}, and it did not shut down`
            : `writer ${w.writer} silent since ${cp.time}: its last checkpoint (${cp.reason}, every ${cp.interval} ms) ` +
              `is at seq ${cp.seq}, its last record at seq ${w.maxSeq}, and it did not shut down`,
        });
      }
    }
    for (const [writer, c] of this.claims) {
      const w = this.writers.get(writer);
      if (w !== undefined) {
        if (w.maxSeq < c.seq) {
          add({
            kind: 'truncated',
            writer,
            position: w.lastPosition,
            where: w.lastWhere,
            detail: `truncated: writer ${writer} ends at seq ${w.maxSeq}, ${c.by} says ${c.seq}` + this.copyNote(c),
          });
        }
        continue;
      }
      // Read from readFrom on, the writer is missing only by a claim about records at or after it.
      const said = this.o.readFrom === undefined ? c : this.newestClaims.get(writer);
      if (said === undefined || (this.o.readFrom !== undefined && said.ms! < this.o.readFrom)) continue;
      const removed = [...(this.retained.get(writer)?.keys() ?? [])].some((s) => s >= said.seq);
      if (!removed) {
        add({
          kind: 'missing',
          writer,
          position: said.position,
          where: said.where,
          detail: `writer ${writer} has no record in the trail, but ${said.by} says it reached seq ${said.seq}`,
        });
      }
    }
    this.checkCopies(add);
    const foundAll = [...this.found, ...late.sort((a, b) => a.position - b.position), ...this.copyFindings];
    const inTrail = foundAll.filter((f) => f.position > 0).sort((a, b) => a.position - b.position);
    const findings = [...inTrail, ...foundAll.filter((f) => f.position === 0)].slice(0, FINDINGS_LISTED);
    let verified = 0;
    for (const w of this.writers.values()) verified += w.verified;
    const base = {
      records: this.position,
      verified,
      writers: this.writers.size,
      checkpoints: this.checkpoints,
      copies: this.copies.length,
      findings,
      findingCount: this.foundCount,
      retained: retainedOut,
      running,
    };
    if (this.position === 0 && this.foundCount === 0) {
      return { verdict: 'unverifiable', reason: 'the trail holds no records (it is empty or absent)', ...base };
    }
    if (verified === 0 && this.foundCount === 0) {
      // Records, but none checked: every writer's checkpoints end before `since`.
      return {
        verdict: 'unverifiable',
        reason: 'no writer has a checkpoint at or after --since: nothing was checked',
        ...base,
      };
    }
    return { verdict: this.foundCount === 0 ? 'intact' : 'broken', ...base };
  }

  /** Whether a checkpoint's store is this trail's (any, when none was named). */
  private ofStore(store: string): boolean {
    const s = this.o.store;
    return s === undefined || (typeof s === 'string' ? store === s : s.includes(store));
  }

  private copyNote(c: Claim): string {
    return c.position === 0 ? ` (checkpoint copy at ${c.where})` : '';
  }

  /** Each copy against the trail's checkpoint at its seq, and each writer's copies in time order. */
  private checkCopies(add: (f: ProofFinding) => void): void {
    const byWriter = new Map<string, Copy[]>();
    for (const c of this.copies) {
      const list = byWriter.get(c.writer) ?? [];
      list.push(c);
      byWriter.set(c.writer, list);
      const w = this.writers.get(c.writer);
      if (w === undefined || w.first === undefined || c.seq < w.first.seq || c.seq > w.maxSeq) continue;
      if (w.holes.some((h) => c.seq >= h.from && c.seq <= h.to)) continue;
      const held = w.cpHashes.get(c.seq);
      if (held === c.hash) continue;
      add({
        kind: 'edited',
        writer: c.writer,
        position: 0,
        where: c.where,
        detail:
          held === undefined
            ? `record ${c.seq} of ${c.writer} in the trail is not the checkpoint at ${c.time} its copy holds`
            : `the checkpoint of ${c.writer} at seq ${c.seq} differs from its copy (at ${c.time})`,
      });
    }
    for (const [writer, list] of byWriter) {
      list.sort((a, b) => a.seq - b.seq);
      for (let i = 1; i < list.length; i++) {
        // Only copies that do not link to the one before them are ordered by time, and a clock may step back a bit.
        if (list[i]!.prevCheckpoint === list[i - 1]!.hash) continue;
        if (list[i]!.ms < list[i - 1]!.ms - CLOCK_STEP) {
          add({
            kind: 'replayed',
            writer,
            position: 0,
            where: list[i]!.where,
            detail:
              `checkpoint copy of ${writer} at seq ${list[i]!.seq} (${list[i]!.time}) is more than 5 minutes older ` +
              `than its previous checkpoint (${list[i - 1]!.time})`,
          });
        }
      }
    }
  }
}
