// Tamper evidence: each writer's events form a SHA-256 hash chain over a canonical form; verify finds the first broken link. Pure.
import { createHash, randomBytes } from 'node:crypto';
import type { AuditEvent, ChainFields } from './event.js';

/** JSON with object keys sorted at every level, undefined members dropped: the same event always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i]);
    return `${out}]`;
  }
  return canonicalObject(value as Record<string, unknown>, undefined, undefined);
}

/** Sorted-key JSON of an object; `replaceKey` (if given) is written with `replaceValue` instead, even if absent. */
function canonicalObject(obj: Record<string, unknown>, replaceKey: string | undefined, replaceValue: unknown): string {
  const keys = Object.keys(obj);
  if (replaceKey !== undefined && !(replaceKey in obj)) keys.push(replaceKey);
  keys.sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = k === replaceKey ? replaceValue : obj[k];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

export const GENESIS = 'genesis';

/** sha256(prev + "\n" + canonical(event, with chain = {writer, seq, prev}: chain.hash left out)), hex. */
export function eventHash(event: AuditEvent, chain: Omit<ChainFields, 'hash'>): string {
  const canonical = canonicalObject(event as unknown as Record<string, unknown>, 'chain', { prev: chain.prev, seq: chain.seq, writer: chain.writer });
  return createHash('sha256').update(chain.prev).update('\n').update(canonical).digest('hex');
}

/** The running state of one writer's chain (one per sink per process). */
export class ChainWriter {
  private seq = 0;
  private prev = GENESIS;
  readonly writer: string;

  constructor(instance: string) {
    // A fresh writer id per start: a restarted process begins a new chain instead of forking the old one.
    this.writer = `${instance}/${randomBytes(4).toString('hex')}`;
  }

  /** Returns the event with its chain fields, and advances the chain. */
  link(event: AuditEvent): AuditEvent {
    const base = { writer: this.writer, seq: this.seq + 1, prev: this.prev };
    const hash = eventHash(event, base);
    this.seq = base.seq;
    this.prev = hash;
    return { ...event, chain: { ...base, hash } };
  }
}

export interface VerifyReport {
  ok: boolean;
  events: number;
  writers: number;
  /** The first broken link: where (1-based position in the input) and why. */
  broken?: { position: number; id: string | null; reason: string };
  /** Chains that begin after seq 1 (older events trimmed by MAXLEN, or deleted). */
  partialStarts: { writer: string; firstSeq: number }[];
}

/**
 * Checks records in the order they were stored. Within each writer, seq must rise by one and
 * `prev` must equal the previous hash; each hash must match the event. Writers may interleave.
 * A chain that starts after seq 1 is reported in `partialStarts`, and is a break when `complete`.
 */
export function verifyChain(records: Iterable<string>, options: { complete?: boolean } = {}): VerifyReport {
  const heads = new Map<string, { seq: number; hash: string }>();
  const partialStarts: { writer: string; firstSeq: number }[] = [];
  let position = 0;
  const fail = (id: string | null, reason: string): VerifyReport => ({
    ok: false,
    events: position - 1,
    writers: heads.size,
    broken: { position, id, reason },
    partialStarts,
  });
  for (const line of records) {
    position += 1;
    let event: AuditEvent;
    try {
      event = JSON.parse(line) as AuditEvent;
    } catch {
      return fail(null, 'not valid JSON');
    }
    const id = typeof event.id === 'string' ? event.id : null;
    const chain = event.chain;
    if (chain === undefined || typeof chain.writer !== 'string' || typeof chain.seq !== 'number') {
      return fail(id, 'no chain fields');
    }
    if (eventHash(event, chain) !== chain.hash) return fail(id, 'hash does not match the event: it was edited');
    const head = heads.get(chain.writer);
    if (head === undefined) {
      if (chain.seq !== 1 || chain.prev !== GENESIS) {
        if (options.complete) return fail(id, `chain of ${chain.writer} starts at seq ${chain.seq}: earlier events are missing`);
        partialStarts.push({ writer: chain.writer, firstSeq: chain.seq });
      }
    } else {
      if (chain.seq !== head.seq + 1) {
        return fail(id, `seq ${chain.seq} follows ${head.seq} for ${chain.writer}: events were ${chain.seq > head.seq + 1 ? 'deleted' : 'reordered or duplicated'}`);
      }
      if (chain.prev !== head.hash) return fail(id, `prev does not match the hash of seq ${head.seq}: the chain was altered`);
    }
    heads.set(chain.writer, { seq: chain.seq, hash: chain.hash });
  }
  return { ok: true, events: position, writers: heads.size, partialStarts };
}
