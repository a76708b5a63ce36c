// Tamper evidence: each writer's events form a SHA-256 hash chain over each event's serialized form; verify finds
// the first broken link. Pure.
import { hash, randomBytes } from 'node:crypto';
import type { AuditEvent, ChainFields } from './event.js';

/**
 * One event as a sink stores it: its JSON line (chain member last, no newline) and the chain
 * position, so sinks can skip what they already hold without parsing the line again.
 */
export interface ChainedRecord {
  readonly writer: string;
  readonly seq: number;
  readonly line: string;
}

export const GENESIS = 'genesis';

/**
 * The canonical form of an event is its JSON as `JSON.stringify` writes it, members in the
 * order the event holds them, without the `chain` member. Events are serialized once, hashed
 * and stored as that same text, so a verifier recomputes it from the parsed line exactly.
 */
export function eventBody(event: AuditEvent): string {
  if (event.chain === undefined) return JSON.stringify(event);
  const { chain: _chain, ...rest } = event;
  return JSON.stringify(rest);
}

/** sha256(prev + "\n" + writer + "\n" + seq + "\n" + body), hex. */
export function eventHash(body: string, chain: Omit<ChainFields, 'hash'>): string {
  return hash('sha256', `${chain.prev}\n${chain.writer}\n${chain.seq}\n${body}`, 'hex');
}

/** The running state of one writer's chain (one per sink per process). */
export class ChainWriter {
  private seq = 0;
  private prev = GENESIS;
  readonly writer: string;
  private readonly writerJson: string;

  constructor(instance: string) {
    // A fresh writer id per start: a restarted process begins a new chain instead of forking the old one.
    this.writer = `${instance}/${randomBytes(4).toString('hex')}`;
    this.writerJson = JSON.stringify(this.writer);
  }

  /** The seq of the last record linked (0 before the first). */
  get head(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.prev };
  }

  /** Links an event body (from `eventBody`) into the chain and returns the line to store. */
  link(body: string): ChainedRecord {
    const seq = this.seq + 1;
    const prev = this.prev;
    const hash = eventHash(body, { writer: this.writer, seq, prev });
    this.seq = seq;
    this.prev = hash;
    const chain = `{"writer":${this.writerJson},"seq":${seq},"prev":"${prev}","hash":"${hash}"}`;
    return { writer: this.writer, seq, line: `${body.slice(0, -1)},"chain":${chain}}` };
  }
}

/** The chain position of a stored line (for spool replay); undefined when it has none or is not JSON. */
export function recordOf(line: string): ChainedRecord | undefined {
  try {
    const chain = (JSON.parse(line) as AuditEvent).chain;
    if (chain === undefined || typeof chain.writer !== 'string' || typeof chain.seq !== 'number') return undefined;
    return { writer: chain.writer, seq: chain.seq, line };
  } catch {
    return undefined;
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
    if (eventHash(eventBody(event), chain) !== chain.hash) {
      return fail(id, 'hash does not match the event: it was edited');
    }
    const head = heads.get(chain.writer);
    if (head === undefined) {
      if (chain.seq !== 1 || chain.prev !== GENESIS) {
        if (options.complete) {
          return fail(id, `chain of ${chain.writer} starts at seq ${chain.seq}: earlier events are missing`);
        }
        partialStarts.push({ writer: chain.writer, firstSeq: chain.seq });
      }
    } else {
      if (chain.seq !== head.seq + 1) {
        const what = chain.seq > head.seq + 1 ? 'deleted' : 'reordered or duplicated';
        return fail(id, `seq ${chain.seq} follows ${head.seq} for ${chain.writer}: events were ${what}`);
      }
      if (chain.prev !== head.hash) {
        return fail(id, `prev does not match the hash of seq ${head.seq}: the chain was altered`);
      }
    }
    heads.set(chain.writer, { seq: chain.seq, hash: chain.hash });
  }
  return { ok: true, events: position, writers: heads.size, partialStarts };
}
