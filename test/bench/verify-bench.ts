// How fast `snapgate audit verify --key` checks a large trail: writes 1,000,000 attempt and outcome events (~700
// bytes, the shape the gateway writes) with a signed checkpoint every 10,000, then times the reader and prover the CLI uses, in
// process, and the old link-only verifyChain on part of the same file for comparison. npm run bench:verify
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ChainWriter, eventBody, GENESIS, verifyChain } from '../../src/audit/chain.js';
import { checkpointSigner, signCheckpoint, trustedKeys, type CheckpointReason } from '../../src/audit/checkpoint.js';
import { buildAuditEvent } from '../../src/audit/event.js';
import { forEachLine, trailFiles } from '../../src/audit/lines.js';
import { TrailProver } from '../../src/audit/proof.js';
import { tempDir } from '../helpers/gateway.js';

const EVENTS = Number(process.env.EVENTS ?? 1_000_000);
const EVERY = 10_000;
const INTERVAL = 10_000;
/** The old path holds every line in memory: it is timed on this many. */
const OLD_SAMPLE = 200_000;

const dir = tempDir('snapgate-verify-bench-');
const path = join(dir, 'audit.jsonl');
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = checkpointSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
const chain = new ChainWriter('gw-bench-0');
const T0 = Date.parse('2026-12-02T10:00:00.000Z');

let lastCheckpoint = GENESIS;
function checkpoint(reason: CheckpointReason, ms: number): string {
  const head = chain.head;
  const body = signCheckpoint(
    {
      time: new Date(ms).toISOString(),
      writer: chain.writer,
      seq: head.seq,
      head: head.hash,
      prevCheckpoint: lastCheckpoint,
      reason,
      interval: INTERVAL,
      store: 'file:audit.jsonl',
    },
    signer,
  );
  const line = chain.link(body).line;
  lastCheckpoint = chain.head.hash;
  return line;
}

const target = {
  org: 'Acme-Prod',
  ruuid: '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5',
  action: 'runtime.stop' as const,
};

/** The gateway's pair for one allowed call: its attempt (before forwarding), then its outcome. */
function event(i: number, ms: number): string {
  const attempt = i % 2 === 1;
  return eventBody(
    buildAuditEvent({
      type: attempt ? 'attempt' : 'outcome',
      time: new Date(ms),
      requestId: `req-${(i >> 1).toString(36)}-4f1c9a2e7b3d`,
      instance: 'gw-bench-0',
      caller: { iss: 'https://idp.acme.example', sub: 'svc-billing' },
      target,
      fields: attempt
        ? {}
        : { upstreamStatus: 200, upstreamLatencyMs: 42, attemptId: '7d9f3b2a-1c4e-4f8a-9b6d-2e5a8c1f0d3b' },
      decision: 'allowed',
      reason: undefined,
      status: attempt ? undefined : 200,
      latencyMs: attempt ? undefined : 57.3,
      client: { address: '10.42.17.203', userAgent: 'billing-reconciler/2.14' },
    }),
  );
}

const written = Date.now();
const fd = openSync(path, 'w');
let batch: string[] = [checkpoint('open', T0)];
let ms = T0;
for (let i = 1; i <= EVENTS; i++) {
  ms += 1;
  batch.push(chain.link(event(i, ms)).line);
  if (i % EVERY === 0) batch.push(checkpoint('interval', ms));
  if (batch.length >= 5000) {
    writeSync(fd, `${batch.join('\n')}\n`);
    batch = [];
  }
}
batch.push(checkpoint('shutdown', ms + 1));
writeSync(fd, `${batch.join('\n')}\n`);
closeSync(fd);
const size = statSync(path).size;
const records = chain.head.seq;
console.log(
  `wrote ${records} records (${EVENTS} events, ${records - EVENTS} checkpoints), ${(size / records).toFixed(0)} ` +
    `bytes a line, ${(size / 1e6).toFixed(0)} MB, in ${((Date.now() - written) / 1000).toFixed(1)} s`,
);

// The CLI's path: trailFiles + forEachLine + TrailProver, as `audit verify --file PATH --key FILE` runs it.
const started = process.hrtime.bigint();
const cpu = process.cpuUsage();
const prover = new TrailProver({ keys: trustedKeys([publicKey]), at: ms + 2000, store: 'file:audit.jsonl' });
await forEachLine(await trailFiles(path), (l, w) => prover.add(l, w));
const report = prover.finish();
const secs = Number(process.hrtime.bigint() - started) / 1e9;
const used = process.cpuUsage(cpu);
if (report.verdict !== 'intact' || report.verified !== records) {
  throw new Error(`the bench trail did not verify: ${JSON.stringify(report).slice(0, 500)}`);
}
console.log(
  `verify --key: ${report.verified} records, ${report.checkpoints} checkpoints in ${secs.toFixed(2)} s ` +
    `(cpu ${((used.user + used.system) / 1e6).toFixed(2)} s): ${Math.round(report.verified / secs).toLocaleString('en')} ` +
    `events/s, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`,
);

// The old link-only check (JSON.parse and re-serialize each event), on the first lines held in memory as it needs.
const head = Buffer.alloc(Math.min(size, OLD_SAMPLE * Math.ceil(size / records) * 2));
const headFd = openSync(path, 'r');
readSync(headFd, head, 0, head.length, 0);
closeSync(headFd);
const sample = head.toString('utf8').split('\n').slice(0, OLD_SAMPLE).filter(Boolean);
const oldStart = process.hrtime.bigint();
const old = verifyChain(sample);
const oldSecs = Number(process.hrtime.bigint() - oldStart) / 1e9;
if (!old.ok) throw new Error('the bench trail failed verifyChain');
console.log(
  `verifyChain (links only, lines already in memory): ${old.events} events in ${oldSecs.toFixed(2)} s: ` +
    `${Math.round(old.events / oldSecs).toLocaleString('en')} events/s`,
);
rmSync(dir, { recursive: true, force: true });
