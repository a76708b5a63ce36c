import { describe, expect, it } from 'vitest';
import { canonicalJson, ChainWriter, verifyChain } from '../../src/audit/chain.js';
import { buildAuditEvent, type AuditEvent } from '../../src/audit/event.js';

const event = (i: number): AuditEvent =>
  buildAuditEvent({
    type: 'decision',
    time: new Date(1_800_000_000_000 + i),
    requestId: `r${i}`,
    instance: 'gw',
    caller: { iss: 'https://idp', sub: `svc-${i}` },
    fields: { org: 'Acme-Prod' },
    decision: 'forbidden',
    reason: 'forbidden',
    status: 403,
    latencyMs: 1,
    client: { address: '127.0.0.1', userAgent: 'curl/8' },
  });

function chained(n: number, writer = new ChainWriter('gw')): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify(writer.link(event(i))));
}

describe('hash chain', () => {
  it('canonical JSON sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined } })).toBe('{"a":{"d":[2,{"y":2,"z":1}]},"b":1}');
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
    expect(verifyChain(lines)).toMatchObject({ ok: false, broken: { position: 3, reason: expect.stringContaining('edited') } });
  });

  it('detects a deleted event', () => {
    const lines = chained(5);
    lines.splice(2, 1);
    expect(verifyChain(lines)).toMatchObject({ ok: false, broken: { position: 3, reason: expect.stringContaining('deleted') } });
  });

  it('detects reordered events', () => {
    const lines = chained(5);
    [lines[1], lines[3]] = [lines[3]!, lines[1]!];
    expect(verifyChain(lines)).toMatchObject({ ok: false, broken: { position: 2 } });
  });

  it('detects an edit that recomputes the hash but not the links after it', () => {
    const writer = new ChainWriter('gw');
    const lines = chained(3, writer);
    const forged = JSON.parse(lines[1]!) as AuditEvent;
    const other = new ChainWriter('x');
    // A forger re-hashing one event with its own writer cannot keep the next link.
    lines[1] = JSON.stringify({ ...other.link({ ...forged, chain: undefined, org: 'Other' }), chain: { ...forged.chain!, hash: 'f'.repeat(64) } });
    expect(verifyChain(lines).ok).toBe(false);
  });

  it('reports a chain that starts after seq 1, and fails on it with complete', () => {
    const lines = chained(5).slice(2);
    const report = verifyChain(lines);
    expect(report.ok).toBe(true);
    expect(report.partialStarts).toEqual([{ writer: expect.stringMatching(/^gw\//), firstSeq: 3 }]);
    expect(verifyChain(lines, { complete: true }).ok).toBe(false);
  });
});
