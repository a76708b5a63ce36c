// With server.workers the audit trail stays whole: one process writes stdout (no torn lines), and each worker slot has
// its own file and spool.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createAudit } from '../../src/audit/build.js';
import { verifyChain } from '../../src/audit/chain.js';
import { runAuditCli } from '../../src/audit/cli.js';
import { AUDIT_SCHEMA_VERSION, type AuditEvent } from '../../src/audit/event.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/ops/metrics.js';
import { baseConfig, tempDir, testSecrets, withGatewayProcess, type GatewayProcess } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { useStandInAndIssuer } from '../helpers/world.js';
import { sleep, until } from '../helpers/wait.js';

const world = useStandInAndIssuer();

function twoWorkers(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const doc = baseConfig(world.standIn, world.issuer, overrides);
  (doc.server as Record<string, unknown>).workers = 2;
  return doc;
}

/** Runs `use` with a built gateway of two workers, both listening; killed afterwards whatever happened. */
function withTwoWorkers(overrides: Record<string, unknown>, use: (gw: GatewayProcess) => Promise<void>): Promise<void> {
  return withGatewayProcess(twoWorkers(overrides), { built: true }, async (gw) => {
    await until(
      () => gw.listeners() === 2,
      15_000,
      () => gw.stderr.join('\n'),
    );
    await use(gw);
  });
}

/** `calls` resumes, `parallel` at a time; returns their statuses. */
async function load(gw: GatewayProcess, calls: number, parallel: number): Promise<number[]> {
  const jwt = await world.issuer.mint({ sub: 'svc-billing' });
  const statuses: number[] = [];
  for (let done = 0; done < calls; done += parallel) {
    const replies = await Promise.all(
      Array.from({ length: Math.min(parallel, calls - done) }, () => resumeNewRun(gw.url, world.standIn, jwt)),
    );
    statuses.push(...replies.map((r) => r.status));
  }
  return statuses;
}

async function verifyFile(path: string): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runAuditCli(['verify', '--file', path], {
    out: (t) => (out += t),
    err: (t) => (out += t),
    env: {},
    interrupted: new Promise(() => undefined),
  });
  return { code, out };
}

const writerPid = (writer: string) => Number(/:(\d+)\//.exec(writer)?.[1]);

const UPSTREAM = {
  connectTimeout: '1s',
  headersTimeout: '5s',
  bodyTimeout: '5s',
  connections: 400,
  queueTimeout: '10s',
};

describe('two workers on one stdout', () => {
  it(
    'never tears a line: with batches past the pipe buffer and a reader that stalls, ' +
      'every line parses and each worker chain verifies',
    async () => {
      // The ack timeout is far beyond the reader's stalls, so a loaded machine does not turn slow acks into 503s: the
      // test is about torn lines, not about timing.
      await withTwoWorkers({ audit: { ackTimeout: '10s' }, upstream: UPSTREAM }, async (gw) => {
        // The reader stops for 250 ms after each chunk it takes (short of the ack timeout). Meanwhile each worker
        // queues a batch larger than the pipe's 64 KiB, which the kernel takes in pieces as the reader frees room.
        const stdout = gw.proc.stdout!;
        const slow = () => {
          stdout.pause();
          setTimeout(() => stdout.resume(), 250);
        };
        stdout.on('data', slow);
        let statuses: number[];
        try {
          statuses = await load(gw, 1_800, 300);
        } finally {
          stdout.off('data', slow);
          stdout.resume();
        }
        expect(statuses.filter((s) => s !== 200)).toEqual([]);
        await until(
          () => gw.stdout.length >= 2 * statuses.length,
          20_000,
          () => `${gw.stdout.length} lines`,
        );
        expect(await gw.stop()).toBe(0);

        const torn = gw.stdout.filter((l) => {
          try {
            JSON.parse(l);
            return false;
          } catch {
            return true;
          }
        });
        expect(
          torn.slice(0, 3).map((l) => l.slice(0, 200)),
          `${torn.length} of ${gw.stdout.length} lines do not parse`,
        ).toEqual([]);
        expect(gw.stdout).toHaveLength(2 * statuses.length);
        const report = verifyChain(gw.stdout);
        expect(report.broken).toBeUndefined();
        expect(report.writers).toBe(2);
      });
    },
    120_000,
  );
});

describe('two workers when stdout closes', () => {
  it('answer 503 audit_unavailable on every worker once the reader is gone, and nothing crashes', async () => {
    await withTwoWorkers({}, async (gw) => {
      expect(await load(gw, 20, 10)).toEqual(Array(20).fill(200));
      gw.proc.stdout!.destroy();
      await sleep(300);
      // Each worker finds out on its next write; from then on it refuses at once.
      await load(gw, 20, 10);
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      const refused = await Promise.all(Array.from({ length: 10 }, () => resumeNewRun(gw.url, world.standIn, jwt)));
      expect(
        refused.map((r) => `${r.status} ${String(r.json?.code)}`),
        refused[0]?.text,
      ).toEqual(Array(10).fill('503 audit_unavailable'));
      expect((await send(gw.url, 'GET', '/livez')).status).toBe(200);
      expect(
        gw.stderr.filter((l) => l.includes('"worker died')),
        gw.stderr.slice(-10).join('\n'),
      ).toEqual([]);
      expect(gw.proc.exitCode).toBeNull();
      expect(await gw.stop()).toBe(0);
    });
  }, 60_000);
});

describe('two workers with a file sink', () => {
  it('write one file per worker slot, each verifying; a replacement worker continues its slot file', async () => {
    const dir = tempDir();
    const path = join(dir, 'audit.jsonl');
    await withTwoWorkers({ audit: { sinks: [{ type: 'file', path }] } }, async (gw) => {
      expect(await load(gw, 200, 20)).toEqual(Array(200).fill(200));
      expect(
        readdirSync(dir)
          .filter((f) => f.endsWith('.jsonl'))
          .sort(),
      ).toEqual(['audit.w1.jsonl', 'audit.w2.jsonl']);
      expect(existsSync(path)).toBe(false);

      // The worker of slot 1 dies; its replacement writes on in audit.w1.jsonl, with a new chain.
      const w1 = join(dir, 'audit.w1.jsonl');
      const firstWriter = (JSON.parse(readFileSync(w1, 'utf8').split('\n')[0]!) as AuditEvent).chain!.writer;
      process.kill(writerPid(firstWriter), 'SIGKILL');
      await until(
        () => gw.listeners() === 3,
        20_000,
        () => gw.stderr.slice(-5).join('\n'),
      );
      const writersOf = (f: string) =>
        new Set(
          readFileSync(f, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => (JSON.parse(l) as AuditEvent).chain!.writer),
        );
      const deadline = Date.now() + 15_000;
      while (writersOf(w1).size < 2 && Date.now() < deadline) {
        expect(await load(gw, 20, 10)).toEqual(Array(20).fill(200));
      }
      expect(writersOf(w1).size).toBe(2);
      expect(writersOf(join(dir, 'audit.w2.jsonl')).size).toBe(1);

      expect(await gw.stop()).toBe(0);
      for (const f of ['audit.w1.jsonl', 'audit.w2.jsonl']) {
        const v = await verifyFile(join(dir, f));
        expect(v.code, v.out).toBe(0);
      }
      expect(
        readdirSync(dir)
          .filter((f) => f.endsWith('.jsonl'))
          .sort(),
      ).toEqual(['audit.w1.jsonl', 'audit.w2.jsonl']);
    });
  }, 90_000);
});

describe('spools per worker slot', () => {
  it("one slot's replay leaves another slot's spooled events in its own spool", async () => {
    const spoolDir = tempDir();
    const config = parseConfig(
      {
        ...baseConfig(world.standIn, world.issuer),
        audit: { sinks: [{ type: 'stdout' }], onFailure: 'spool', spoolDir, ackTimeout: '100ms' },
      },
      'test',
      testSecrets,
    );
    const log = createLogger({ level: 'error', write: () => undefined });
    const up = new Map<number, boolean>([
      [1, false],
      [2, false],
    ]);
    const written = new Map<number, string[]>([
      [1, []],
      [2, []],
    ]);
    const sinkOf = (slot: number) => (text: string) => {
      if (!up.get(slot)) return Promise.reject(new Error('sink down'));
      written.get(slot)!.push(...text.split('\n').filter(Boolean));
      return Promise.resolve();
    };
    const audits = await Promise.all(
      [1, 2].map((slot) => {
        const deps = {
          log,
          metrics: createMetrics(),
          instance: `w${slot}`,
          redis: undefined,
          auditWrite: sinkOf(slot),
          workerSlot: slot,
        };
        return createAudit(config, deps);
      }),
    );
    const event = (i: number): AuditEvent => ({
      v: AUDIT_SCHEMA_VERSION,
      id: `e${i}`,
      type: 'attempt',
      time: new Date().toISOString(),
      requestId: `r${i}`,
      instance: 'x',
      caller: null,
      org: 'Acme-Prod',
      ruuid: null,
      action: 'runtime.start',
      decision: 'allowed',
      reason: null,
      rateLimit: null,
      status: null,
      upstreamStatus: null,
      slStatusCode: null,
      latencyMs: null,
      client: { address: null, userAgent: null },
    });
    try {
      // Both sinks are down: each slot's attempts go to the spool and count as stored.
      for (const [slot, audit] of audits.entries()) {
        for (let i = 0; i < 3; i++) await audit.attempt(event(slot * 10 + i));
      }
      const spools = readdirSync(spoolDir, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.jsonl'))
        .sort();
      expect(spools).toEqual([join('w1', 'stdout.spool.jsonl'), join('w2', 'stdout.spool.jsonl')]);

      // Slot 1's sink comes back: it replays its own spool only; slot 2's stays whole.
      up.set(1, true);
      await until(
        () => written.get(1)!.length === 3,
        10_000,
        () => JSON.stringify(written.get(1)),
      );
      await sleep(300);
      expect(new Set(written.get(1)!.map((l) => (JSON.parse(l) as AuditEvent).chain!.writer)).size).toBe(1);
      expect(written.get(1)!.map((l) => (JSON.parse(l) as AuditEvent).id)).toEqual(['e0', 'e1', 'e2']);
      expect(
        readFileSync(join(spoolDir, 'w2', 'stdout.spool.jsonl'), 'utf8')
          .split('\n')
          .filter(Boolean),
      ).toHaveLength(3);

      up.set(2, true);
      await until(
        () => written.get(2)!.length === 3,
        10_000,
        () => JSON.stringify(written.get(2)),
      );
      expect(verifyChain([...written.get(1)!, ...written.get(2)!]).ok).toBe(true);
    } finally {
      await Promise.all(audits.map((a) => a.close(1_000)));
    }
  });
});
