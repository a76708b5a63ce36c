import { describe, expect, it } from 'vitest';
import { ChainWriter, eventBody, eventHash, verifyChain } from '../../src/audit/chain.js';
import { buildAuditEvent, type AuditEvent } from '../../src/audit/event.js';

const event = (i: number): AuditEvent =>
  buildAuditEvent({
    type: 'decision',
    time: new Date(1_800_000_000_000 + i),
    requestId: `r${i}`,
    instance: 'gw',
    caller: { iss: 'https://idp', sub: `svc-${i}` },
    target: { org: 'Acme-Prod' },
    fields: {},
    decision: 'forbidden',
    reason: 'forbidden',
    status: 403,
    latencyMs: 1,
    client: { address: '127.0.0.1', userAgent: 'curl/8' },
  });

function chained(n: number, writer = new ChainWriter('gw')): string[] {
  return Array.from({ length: n }, (_, i) => writer.link(eventBody(event(i))).line);
}

describe('hash chain', () => {
  it('stores the event as serialized, with the chain member last, and hashes that text', () => {
    const e = event(1);
    const body = eventBody(e);
    const record = new ChainWriter('gw').link(body);
    expect(record.seq).toBe(1);
    const stored = JSON.parse(record.line) as AuditEvent;
    expect(Object.keys(stored).at(-1)).toBe('chain');
    expect(stored).toEqual({
      ...e,
      chain: { writer: record.writer, seq: 1, prev: 'genesis', hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    });
    expect(record.line.startsWith(body.slice(0, -1))).toBe(true);
    expect(eventBody(stored)).toBe(body);
    expect(stored.chain!.hash).toBe(eventHash(body, { writer: record.writer, seq: 1, prev: 'genesis' }));
  });

  it('treats moving a member within an event as an edit', () => {
    const lines = chained(3);
    const e = JSON.parse(lines[1]!) as Record<string, unknown>;
    const { v, ...rest } = e;
    lines[1] = JSON.stringify({ ...rest, v });
    expect(verifyChain(lines)).toMatchObject({
      ok: false,
      broken: { position: 2, reason: expect.stringContaining('edited') },
    });
  });

  it('verifies an intact chain, and interleaved chains of several writers', () => {
    const a = chained(5);
    const b = chained(5, new ChainWriter('gw-2'));
    expect(verifyChain(a)).toMatchObject({ ok: true, events: 5, writers: 1 });
    const interleaved = a.flatMap((l, i) => [l, b[i]!]);
    expect(verifyChain(interleaved)).toMatchObject({ ok: true, events: 10, writers: 2 });
  });

  it('detects an edited event', () => {
    const lines = chained(5);
    lines[2] = lines[2]!.replace('"decision":"forbidden"', '"decision":"allowed"');
    expect(verifyChain(lines)).toMatchObject({
      ok: false,
      broken: { position: 3, reason: expect.stringContaining('edited') },
    });
  });

  it('detects a deleted event', () => {
    const lines = chained(5);
    lines.splice(2, 1);
    expect(verifyChain(lines)).toMatchObject({
      ok: false,
      broken: { position: 3, reason: expect.stringContaining('deleted') },
    });
  });

  it('detects reordered events', () => {
    const lines = chained(5);
    [lines[1], lines[3]] = [lines[3]!, lines[1]!];
    expect(verifyChain(lines)).toMatchObject({ ok: false, broken: { position: 2 } });
  });

  it('detects an edit that recomputes the hash but not the links after it', () => {
    const lines = chained(3);
    const { chain, ...original } = JSON.parse(lines[1]!) as AuditEvent;
    const edited = { ...original, org: 'Other' };
    // The forger re-hashes the edited event in place; the next event's prev still names the old hash.
    lines[1] = JSON.stringify({ ...edited, chain: { ...chain!, hash: eventHash(JSON.stringify(edited), chain!) } });
    expect(verifyChain(lines)).toMatchObject({
      ok: false,
      broken: { position: 3, reason: expect.stringContaining('prev does not match') },
    });
  });

  it('reports a chain that starts after seq 1, and fails on it with complete', () => {
    const lines = chained(5).slice(2);
    const report = verifyChain(lines);
    expect(report.ok).toBe(true);
    expect(report.partialStarts).toEqual([{ writer: expect.stringMatching(/^gw\//), firstSeq: 3 }]);
    expect(verifyChain(lines, { complete: true }).ok).toBe(false);
  });
});
