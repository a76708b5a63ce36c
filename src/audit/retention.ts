// Retention that is not deletion: before a store removes its oldest records (Redis maxLen, files beyond maxFiles),
// the writer signs a `retention` checkpoint saying what goes and where each cut chain now begins; only once that
// marker is stored are the records removed. Here: what a removal would take, and the removal itself.
import { readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../redis/client.js';
import { eventHash, GENESIS } from './chain.js';
import { checkSignature, isCheckpointLine, type RetentionFacts, type TrustedKeys } from './checkpoint.js';
import { forEachLine } from './lines.js';

/** A removal, planned: the facts its marker signs, then `apply` (after the marker is stored) or `abandon`. */
export interface RetentionPlan {
  readonly facts: RetentionFacts;
  /** Writers whose removed records could not be vouched for (they are removed, but the marker does not explain them). */
  readonly unvouched: readonly { writer: string; why: string }[];
  /** Removes the records; `marker` is the stored marker line, remembered as the newest cut points. */
  apply(marker: string): Promise<void>;
  abandon(): Promise<void>;
}

type Chains = RetentionFacts['chains'];
type Cut = { seq: number; hash: string };

/** The chains of a validly signed retention marker line; undefined for any other line. */
export function signedCuts(line: string, keys: TrustedKeys): Chains | undefined {
  if (!isCheckpointLine(line) || !line.includes('"reason":"retention"')) return undefined;
  const at = line.lastIndexOf(',"chain":{');
  if (at < 0) return undefined;
  const body = `${line.slice(0, at)}}`;
  try {
    const marker = JSON.parse(body) as { key?: unknown; retention?: { chains?: Chains } };
    if (!checkSignature(body, marker.key, keys).ok) return undefined;
    return marker.retention?.chains ?? [];
  } catch {
    return undefined;
  }
}

/**
 * What a removal takes, checked before the writer signs it: the store is writable by others, so a record is vouched
 * for only when its hash matches it and it links to the one before it of its writer, from the chain's start or from
 * a cut point a marker signed with the writer's key already vouched for (the newest marker's, and those removed in
 * the same range). Retention markers are merged only when their signature holds. A writer whose removed records do
 * not hold together is not vouched for (the marker leaves it out, so verify reports its start; the step logs it):
 * a planted copy of a record cannot make the writer sign a cut that was never retention's.
 */
export class RemovedChains {
  private readonly known = new Map<string, Cut>();
  /** Per writer: its first record in the range (judged at the end, once every marker in the range is known) and its last; null once refused. */
  private readonly inRange = new Map<string, { first: { seq: number; prev: string }; last: Cut } | null>();
  private readonly why = new Map<string, string>();
  entries = 0;

  constructor(
    private readonly keys: TrustedKeys,
    /** The cut points of the newest marker the store holds (verified by the caller), if any. */
    newest: Chains = [],
  ) {
    for (const c of newest) this.keep(c);
  }

  add(line: string): void {
    this.entries += 1;
    const at = line.lastIndexOf(',"chain":{');
    if (at < 0) return;
    let chain: { writer?: unknown; seq?: unknown; prev?: unknown; hash?: unknown };
    try {
      chain = JSON.parse(line.slice(at + 9, -1)) as typeof chain;
    } catch {
      return;
    }
    const { writer, seq, prev, hash } = chain;
    if (typeof writer !== 'string' || typeof seq !== 'number' || typeof prev !== 'string' || typeof hash !== 'string') {
      return;
    }
    const state = this.inRange.get(writer);
    if (state === null) return;
    const refuse = (why: string) => {
      this.inRange.set(writer, null);
      this.why.set(writer, why);
    };
    if (eventHash(`${line.slice(0, at)}}`, { writer, seq, prev }) !== hash) {
      return refuse(`record ${seq} does not match its hash`);
    }
    if (state !== undefined && (seq !== state.last.seq + 1 || prev !== state.last.hash)) {
      return refuse(`record ${seq} does not follow record ${state.last.seq}`);
    }
    this.inRange.set(writer, { first: state?.first ?? { seq, prev }, last: { seq, hash } });
    // A marker vouches wherever it lies in the range: it may come after the first records it explains.
    for (const c of signedCuts(line, this.keys) ?? []) this.keep(c);
  }

  private keep(c: { writer: string; seq: number; hash: string }): void {
    const had = this.known.get(c.writer);
    if (had === undefined || had.seq < c.seq) this.known.set(c.writer, { seq: c.seq, hash: c.hash });
  }

  /** Each writer's removed records begin its chain, or follow a cut point a signed marker vouched for. */
  private judgeStarts(): void {
    for (const [writer, state] of this.inRange) {
      if (state === null) continue;
      const { seq, prev } = state.first;
      const cut = this.known.get(writer);
      const fromStart = seq === 1 && prev === GENESIS;
      const fromCut = cut !== undefined && cut.seq === seq - 1 && cut.hash === prev;
      if (!fromStart && !fromCut) {
        this.inRange.set(writer, null);
        this.why.set(
          writer,
          `record ${seq} neither starts the chain nor follows a cut point a signed marker vouched for`,
        );
      }
    }
  }

  /** Where each cut chain begins after this removal: the newest cut points, moved on by what this range removes. */
  get chains(): Chains {
    this.judgeStarts();
    const out = new Map(this.known);
    for (const [writer, state] of this.inRange) {
      if (state === null) out.delete(writer);
      else out.set(writer, state.last);
    }
    return [...out].map(([writer, c]) => ({ writer, seq: c.seq, hash: c.hash }));
  }

  get unvouched(): { writer: string; why: string }[] {
    this.judgeStarts();
    return [...this.why].map(([writer, why]) => ({ writer, why }));
  }
}

/** Most entries one retention step removes: a backlog is worked off over several checkpoints. */
export const MAX_REMOVED_PER_STEP = 50_000;
const PAGE = 1_000;
/** How long a writer holds the trim lock at most (it releases it when done). */
const TRIM_LOCK_MS = 60_000;

/** The stream id right after `id` (XTRIM MINID keeps ids at or above it). */
function nextId(id: string): string {
  const [ms, seq] = id.split('-');
  return `${ms}-${BigInt(seq ?? '0') + 1n}`;
}

/**
 * The oldest entries beyond `maxLen`, when there are any and no other writer is trimming the stream (a lock in the
 * stream's hash slot): each removal is explained by exactly one marker.
 */
export async function planStreamRetention(
  client: RedisClient,
  stream: string,
  maxLen: number,
  holder: string,
  keys: TrustedKeys,
): Promise<RetentionPlan | undefined> {
  const r = client as Redis;
  const lock = `${stream}:trim-lock`;
  // The newest marker, as the step that wrote it left it: its cut points are where this step's checks start.
  const newestKey = `${stream}:retention`;
  if ((await r.set(lock, holder, 'PX', TRIM_LOCK_MS, 'NX')) !== 'OK') {
    // Writers always set the lock with an expiry; one without was planted, and would stop retention for good.
    if ((await r.pttl(lock)) === -1) {
      await r.del(lock);
      throw new Error(`${lock} was held with no expiry (not set by a writer): removed; trimming resumes next step`);
    }
    return undefined;
  }
  const release = async () => {
    // Only our own lock: it may have expired and been taken by another writer meanwhile.
    await r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end", 1, lock, holder);
  };
  try {
    const excess = Math.min((await r.xlen(stream)) - maxLen, MAX_REMOVED_PER_STEP);
    if (excess <= 0) {
      await release();
      return undefined;
    }
    const newest = await r.get(newestKey);
    const removed = new RemovedChains(keys, newest === null ? [] : (signedCuts(newest, keys) ?? []));
    let start = '-';
    let through = '';
    while (removed.entries < excess) {
      const count = Math.min(PAGE, excess - removed.entries);
      const page = (await r.xrange(stream, start, '+', 'COUNT', count)) as [string, string[]][];
      if (page.length === 0) break;
      for (const [id, fields] of page) {
        const i = fields.indexOf('e');
        removed.add(i >= 0 ? (fields[i + 1] ?? '') : '');
        through = id;
      }
      start = `(${through}`;
    }
    if (through === '') {
      await release();
      return undefined;
    }
    return {
      facts: { store: 'redis', reason: `maxLen ${maxLen}`, through, entries: removed.entries, chains: removed.chains },
      unvouched: removed.unvouched,
      async apply(marker) {
        try {
          await r.xtrim(stream, 'MINID', nextId(through));
          await r.set(newestKey, marker);
        } finally {
          await release();
        }
      },
      abandon: release,
    };
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
}

/** PATH's rotated files (PATH.<UTC time>[-n]), oldest first: the stamp sorts by time. */
export async function rotatedFiles(path: string): Promise<string[]> {
  const base = basename(path);
  const stamp = /^\.\d{4}-\d{2}-\d{2}T/;
  return (await readdir(dirname(path)).catch(() => [] as string[]))
    .filter((n) => n.startsWith(`${base}.`) && stamp.test(n.slice(base.length)))
    .sort()
    .map((n) => join(dirname(path), n));
}

/** The cut points of the newest validly signed marker in the files kept (newest file first), or none. */
async function newestCuts(files: readonly string[], keys: TrustedKeys): Promise<Chains> {
  for (const file of [...files].reverse()) {
    let cuts: Chains | undefined;
    await forEachLine([file], (line) => (cuts = signedCuts(line, keys) ?? cuts));
    if (cuts !== undefined) return cuts;
  }
  return [];
}

/**
 * The oldest rotated files beyond `maxFiles`, read for the marker; `apply` deletes them. `newest` remembers the
 * marker of the last step (so only a process's first step looks for it in the files kept).
 */
export async function planFileRetention(
  path: string,
  maxFiles: number,
  keys: TrustedKeys,
  newest: { marker?: string },
): Promise<RetentionPlan | undefined> {
  const rotated = await rotatedFiles(path);
  const doomed = rotated.slice(0, Math.max(0, rotated.length - maxFiles));
  if (doomed.length === 0) return undefined;
  const kept = [...rotated.slice(doomed.length), path];
  const cuts = newest.marker !== undefined ? (signedCuts(newest.marker, keys) ?? []) : await newestCuts(kept, keys);
  const removed = new RemovedChains(keys, cuts);
  // Read in chunks: a rotated file is up to maxBytes, and the gateway must not hold one in memory.
  await forEachLine(doomed, (line) => removed.add(line));
  return {
    facts: {
      store: 'file',
      reason: `maxFiles ${maxFiles}`,
      files: doomed.map((f) => basename(f)),
      entries: removed.entries,
      chains: removed.chains,
    },
    unvouched: removed.unvouched,
    async apply(marker) {
      for (const file of doomed) await unlink(file);
      newest.marker = marker;
    },
    abandon: () => Promise.resolve(),
  };
}
