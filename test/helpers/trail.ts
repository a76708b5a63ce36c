// What the checkpoint tests share: a fresh Ed25519 signer, a started SinkWriter with checkpoints, a record's chain
// member and body read as the verifier reads them, and whether a chain's late start is explained by a marker.
import { generateKeyPairSync } from 'node:crypto';
import { verifyChain } from '../../src/audit/chain.js';
import { buildAuditEvent, type AuditEvent, type ChainFields, type EventInput } from '../../src/audit/event.js';
import { checkpointSigner, type Checkpoint, type CheckpointSigner } from '../../src/audit/checkpoint.js';
import type { Sink } from '../../src/audit/sinks.js';
import { SinkWriter, type CheckpointOptions } from '../../src/audit/trail.js';
import { createLogger } from '../../src/log.js';

/** A signer for a new Ed25519 key. */
export function newSigner(): CheckpointSigner {
  const { privateKey } = generateKeyPairSync('ed25519');
  return checkpointSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
}

/** A record's chain member: the JSON after the last `,"chain":` (it is always the last member). */
export const chainOf = (line: string): ChainFields =>
  JSON.parse(line.slice(line.lastIndexOf(',"chain":{') + 9, -1)) as ChainFields;

/** A record without its chain member, as it was hashed (and, for a checkpoint, signed). */
export const bodyOf = (line: string): string => `${line.slice(0, line.lastIndexOf(',"chain":{'))}}`;

/** A stored line parsed as a checkpoint (events parse too; their checkpoint members are absent). */
export interface StoredLine {
  text: string;
  parsed: Checkpoint & { chain: ChainFields };
}

export const parsedLine = (text: string): StoredLine => ({ text, parsed: JSON.parse(text) as StoredLine['parsed'] });

const quiet = createLogger({ level: 'error', write: () => undefined });

/** A started writer on `sink`, rejecting (not spooling) when the sink fails. */
export async function startedWriter(
  sink: Sink,
  options: { checkpoints: CheckpointOptions; spoolDir: string; instance?: string; ackTimeoutMs?: number },
): Promise<SinkWriter> {
  const w = new SinkWriter({
    sink,
    required: true,
    onFailure: 'reject',
    ackTimeoutMs: options.ackTimeoutMs ?? 1_000,
    spoolDir: options.spoolDir,
    instance: options.instance ?? 'test',
    log: quiet,
    checkpoints: options.checkpoints,
  });
  await w.start();
  return w;
}

/** The writers whose first record in `lines` comes after seq 1 and that no retention marker among them explains. */
export function unexplainedStarts(lines: readonly StoredLine[]): string[] {
  const first = new Map<string, ChainFields>();
  for (const l of lines) if (!first.has(l.parsed.chain.writer)) first.set(l.parsed.chain.writer, l.parsed.chain);
  const markers = lines.filter((l) => l.parsed.reason === 'retention').map((l) => l.parsed.retention!);
  return [...first.values()]
    .filter((c) => c.seq > 1)
    .filter(
      (c) =>
        !markers.some((m) => m.chains.some((x) => x.writer === c.writer && x.seq === c.seq - 1 && x.hash === c.prev)),
    )
    .map((c) => c.writer);
}

/** Every link whole from each chain's start (the keyless check), checkpoints included as ordinary records. */
export const linksWhole = (lines: readonly StoredLine[]): boolean =>
  verifyChain(
    lines.map((l) => l.text),
    { complete: true },
  ).ok;

/** An event as the gateway builds one for svc-billing on Acme-Prod; `over` gives what differs. */
export function sampleEvent(over: Partial<EventInput> & Pick<EventInput, 'type' | 'decision'>): AuditEvent {
  return buildAuditEvent({
    time: new Date(),
    requestId: 'r-1',
    instance: 'gw',
    caller: { iss: 'https://idp.test', sub: 'svc-billing' },
    target: { org: 'Acme-Prod' },
    fields: {},
    reason: undefined,
    status: undefined,
    latencyMs: undefined,
    client: { address: '10.0.0.9', userAgent: 'e2e' },
    ...over,
  });
}
