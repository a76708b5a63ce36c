// Retention that is not deletion: before a store removes its oldest records (Redis maxLen, files beyond maxFiles),
// the writer signs a `retention` checkpoint saying what goes and where each cut chain now begins; only once that
// marker is stored are the records removed. Here: what a removal would take, and the removal itself.
import { createReadStream } from 'node:fs';
import { readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../redis/client.js';
import { isCheckpointLine, type RetentionFacts } from './checkpoint.js';

/** A removal, planned: the facts its marker signs, then `apply` (after the marker is stored) or `abandon`. */
export interface RetentionPlan {
  readonly facts: RetentionFacts;
  apply(): Promise<void>;
  abandon(): Promise<void>;
}

type Chains = RetentionFacts['chains'];

/**
 * The last record of each writer among the removed ones. A removed retention marker's chains are merged in (the
 * highest seq per writer wins), so the newest marker explains where every chain cut so far begins, even once the
 * markers before it are removed in turn.
 */
export class RemovedChains {
  private readonly last = new Map<string, { seq: number; hash: string }>();
  entries = 0;

  add(line: string): void {
    this.entries += 1;
    const at = line.lastIndexOf(',"chain":{');
    if (at < 0) return;
    let chain: { writer?: unknown; seq?: unknown; hash?: unknown };
    try {
      chain = JSON.parse(line.slice(at + 9, -1)) as typeof chain;
    } catch {
      return;
    }
    if (typeof chain.writer !== 'string' || typeof chain.seq !== 'number' || typeof chain.hash !== 'string') return;
    this.keep(chain.writer, chain.seq, chain.hash);
    if (isCheckpointLine(line) && line.includes('"reason":"retention"')) {
      try {
        const earlier = (JSON.parse(line) as { retention?: { chains?: Chains } }).retention?.chains ?? [];
        for (const c of earlier) this.keep(c.writer, c.seq, c.hash);
      } catch {
        // Not JSON: the verifier reports it; it explains nothing here.
      }
    }
  }

  private keep(writer: string, seq: number, hash: string): void {
    const had = this.last.get(writer);
    if (had === undefined || had.seq < seq) this.last.set(writer, { seq, hash });
  }

  get chains(): Chains {
    return [...this.last].map(([writer, c]) => ({ writer, seq: c.seq, hash: c.hash }));
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
): Promise<RetentionPlan | undefined> {
  const r = client as Redis;
  const lock = `${stream}:trim-lock`;
  if ((await r.set(lock, holder, 'PX', TRIM_LOCK_MS, 'NX')) !== 'OK') return undefined;
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
    const removed = new RemovedChains();
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
      async apply() {
        try {
          await r.xtrim(stream, 'MINID', nextId(through));
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

/** The oldest rotated files beyond `maxFiles`, read for the marker; `apply` deletes them. */
export async function planFileRetention(path: string, maxFiles: number): Promise<RetentionPlan | undefined> {
  const rotated = await rotatedFiles(path);
  const doomed = rotated.slice(0, Math.max(0, rotated.length - maxFiles));
  if (doomed.length === 0) return undefined;
  const removed = new RemovedChains();
  // Streamed: a rotated file is up to maxBytes, and the gateway must not hold one in memory.
  for (const file of doomed) {
    const input = createReadStream(file, { encoding: 'utf8' });
    try {
      for await (const line of createInterface({ input, crlfDelay: Infinity })) if (line) removed.add(line);
    } finally {
      input.destroy();
    }
  }
  return {
    facts: {
      store: 'file',
      reason: `maxFiles ${maxFiles}`,
      files: doomed.map((f) => basename(f)),
      entries: removed.entries,
      chains: removed.chains,
    },
    async apply() {
      for (const file of doomed) await unlink(file);
    },
    abandon: () => Promise.resolve(),
  };
}
