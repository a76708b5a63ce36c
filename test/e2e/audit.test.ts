// The audit trail end to end: write-ahead attempts, file and Redis Stream sinks, reject and spool on failure, hash
// chains, the CLI, bounded denials.
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runAuditCli } from '../../src/audit/cli.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { createFileSink } from '../../src/audit/sinks.js';
import { ChainWriter, eventBody } from '../../src/audit/chain.js';
import { buildAuditEvent } from '../../src/audit/event.js';
import {
  baseConfig,
  spawnGateway,
  startTestGateway,
  tempDir,
  type GatewayProcess,
  type TestGateway,
} from '../helpers/gateway.js';
import { resume, resumeNewRun } from '../helpers/http.js';
import { poll, sleep } from '../helpers/wait.js';
import { closedAfterEach, useWorld } from '../helpers/world.js';

const STREAM = 'audit:{snapgate}:events';
const world = useWorld();
const open = closedAfterEach();

beforeEach(async () => {
  await world.admin.flushall();
  world.standIn.setFault(undefined);
  world.standIn.onRequest = undefined;
});

async function gateway(audit: Record<string, unknown>): Promise<TestGateway> {
  const gw = await startTestGateway(
    baseConfig(world.standIn, world.issuer, { redis: { url: world.redis.url }, audit }),
  );
  open.push(gw);
  return gw;
}

/** A fresh audit file path, in a temporary directory of its own. */
function auditFile(): { dir: string; path: string } {
  const dir = tempDir('snapgate-audit-');
  return { dir, path: join(dir, 'audit.jsonl') };
}

async function streamEvents(): Promise<AuditEvent[]> {
  const entries = (await world.admin.xrange(STREAM, '-', '+')) as [string, string[]][];
  return entries.map(([, f]) => JSON.parse(f[1]!) as AuditEvent);
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runAuditCli(args, {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: {},
    interrupted: new Promise<void>((r) => setTimeout(r, 600)),
  });
  return { code, out, err };
}

describe('write-ahead', () => {
  it('has the attempt in the Redis stream before SnapLogic sees the call, and the outcome after', async () => {
    await gateway({ sinks: [{ type: 'redis' }] });
    const seenAtArrival: AuditEvent[][] = [];
    world.standIn.onRequest = async () => {
      seenAtArrival.push(await streamEvents());
    };
    const gw = open[0]!;
    const requestId = `wa-${randomUUID()}`;
    const res = await resumeNewRun(gw.url, world.standIn, world.jwt, {
      headers: {
        'x-request-id': requestId,
        'user-agent': 'billing-job/1.2',
      },
    });
    expect(res.status).toBe(200);
    expect(seenAtArrival[0]!.filter((e) => e.requestId === requestId).map((e) => e.type)).toEqual(['attempt']);
    const events = await poll(streamEvents, (es) => es.filter((e) => e.requestId === requestId).length === 2);
    const mine = events.filter((e) => e.requestId === requestId);
    expect(mine.map((e) => e.type)).toEqual(['attempt', 'outcome']);
    expect(mine[1]).toMatchObject({
      v: 3,
      attemptId: mine[0]!.id,
      instance: 'test-instance',
      caller: { iss: world.issuer.issuer, sub: 'svc-billing' },
      org: 'Acme-Prod',
      action: 'runtime.start',
      decision: 'allowed',
      status: 200,
      upstreamStatus: 200,
      slStatusCode: '200',
      client: { address: '127.0.0.1', userAgent: 'billing-job/1.2' },
    });
    expect(typeof mine[1]!.latencyMs).toBe('number');
    expect(JSON.stringify(mine)).not.toContain(world.jwt.split('.')[2]!);
  });

  it(
    'reject mode: a required sink that cannot take the ' + 'attempt means 503 audit_unavailable and nothing forwarded',
    async () => {
      const gw = await gateway({ sinks: [{ type: 'redis' }], onFailure: 'reject', ackTimeout: '300ms' });
      expect((await resumeNewRun(gw.url, world.standIn, world.jwt)).status).toBe(200);
      await world.redis.kill();
      try {
        const before = world.standIn.startCalls().length;
        const refused = await resumeNewRun(gw.url, world.standIn, world.jwt, {
          headers: {
            'x-request-id': 'refused-1',
          },
        });
        expect(refused.status).toBe(503);
        expect(refused.json.code).toBe('audit_unavailable');
        expect(refused.headers['retry-after']).toBe('1');
        expect(world.standIn.startCalls().length).toBe(before);
      } finally {
        await world.redis.restart();
      }
      // Nothing is lost: once Redis is back, the refused attempt and its 503 outcome reach the stream, chain intact.
      const events = await poll(
        streamEvents,
        (es) => es.some((e) => e.requestId === 'refused-1' && e.type === 'outcome'),
        8_000,
      );
      const refusedEvents = events.filter((e) => e.requestId === 'refused-1');
      expect(refusedEvents.map((e) => [e.type, e.status])).toEqual([
        ['attempt', null],
        ['outcome', 503],
      ]);
      const verify = await cli(['verify', '--redis', world.redis.url]);
      expect(verify.code, verify.out).toBe(0);
      expect(verify.out).toContain('starts at seq');
    },
  );

  it('spool mode: forwards while the sink is down, then replays the spool in order without duplicates', async () => {
    const spoolDir = tempDir('snapgate-spool-');
    const gw = await gateway({ sinks: [{ type: 'redis' }], onFailure: 'spool', spoolDir, ackTimeout: '200ms' });
    const ok = await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': 'before-outage' } });
    expect(ok.status).toBe(200);
    await poll(streamEvents, (es) => es.length >= 2);
    await world.redis.kill();
    const during: string[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const id = `during-${i}`;
        during.push(id);
        expect((await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': id } })).status).toBe(
          200,
        );
      }
      const spool = readFileSync(join(spoolDir, 'redis.spool.jsonl'), 'utf8');
      for (const id of during) expect(spool).toContain(`"requestId":"${id}"`);
    } finally {
      await world.redis.restart();
    }
    const events = await poll(
      streamEvents,
      (es) => es.filter((e) => e.requestId.startsWith('during-')).length === 10,
      15_000,
    );
    const duringEvents = events.filter((e) => e.requestId.startsWith('during-'));
    expect(duringEvents.map((e) => `${e.requestId}:${e.type}`)).toEqual(
      during.flatMap((id) => [`${id}:attempt`, `${id}:outcome`]),
    );
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    await poll(() => gw.logs.some((l) => l.msg === 'audit spool replayed'), Boolean, 15_000);
    expect(gw.logs.some((l) => l.msg === 'audit spool replayed')).toBe(true);
    expect(readFileSync(join(spoolDir, 'redis.spool.jsonl'), 'utf8')).toBe('');
  });
});

describe('file sink', () => {
  it(
    'appends chained JSON lines, rotates by size without dropping anything, ' + 'and verifies across rotated files',
    async () => {
      const { dir, path } = auditFile();
      const gw = await gateway({ sinks: [{ type: 'file', path, maxBytes: 4_000, fsync: 'always' }] });
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const id = `file-${i}`;
        ids.push(id);
        expect((await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': id } })).status).toBe(
          200,
        );
      }
      await gw.close();
      open.splice(0);
      const files = readdirSync(dir).filter((n) => n.startsWith('audit.jsonl'));
      expect(files.length).toBeGreaterThan(2);
      const lines = files
        .sort((a, b) => (a === 'audit.jsonl' ? 1 : b === 'audit.jsonl' ? -1 : a < b ? -1 : 1))
        .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean));
      const events = lines.map((l) => JSON.parse(l) as AuditEvent);
      expect(events.filter((e) => e.type === 'attempt').map((e) => e.requestId)).toEqual(ids);
      expect(events.filter((e) => e.type === 'outcome').map((e) => e.requestId)).toEqual(ids);
      for (const f of files) expect(readFileSync(join(dir, f)).byteLength).toBeLessThanOrEqual(4_000);

      const verify = await cli(['verify', '--file', path, '--complete']);
      expect(verify.code, verify.out).toBe(0);
      expect(verify.out).toContain(`ok: ${events.length} events`);
    },
  );

  it('skips events it already holds when a batch is replayed', async () => {
    const { path } = auditFile();
    const sink = await createFileSink({ path, maxBytes: 1_000_000, fsync: 'never' });
    const writer = new ChainWriter('t');
    const batch = [1, 2, 3].map((i) =>
      writer.link(
        eventBody(
          buildAuditEvent({
            type: 'decision',
            time: new Date(),
            requestId: `r${i}`,
            instance: 't',
            caller: undefined,
            fields: {},
            decision: 'forbidden',
            reason: 'forbidden',
            status: 403,
            latencyMs: 1,
            client: { address: undefined, userAgent: undefined },
          }),
        ),
      ),
    );
    await sink.append(batch);
    await sink.append(batch);
    await sink.close();
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(3);
  });
});

describe('tamper evidence and the CLI', () => {
  async function fileWithEvents(n: number): Promise<string> {
    const { path } = auditFile();
    const gw = await gateway({ sinks: [{ type: 'file', path, fsync: 'never' }] });
    for (let i = 0; i < n; i++) {
      await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': `t-${i}` } });
    }
    await gw.close();
    open.splice(0);
    return path;
  }

  it('finds an edited, a deleted and a reordered event, naming the first broken link', async () => {
    const path = await fileWithEvents(4);
    const original = readFileSync(path, 'utf8').split('\n').filter(Boolean);
    expect((await cli(['verify', '--file', path])).code).toBe(0);

    const edited = [...original];
    edited[3] = edited[3]!.replace('"status":200', '"status":201');
    writeFileSync(path, `${edited.join('\n')}\n`);
    const e = await cli(['verify', '--file', path]);
    expect(e.code).toBe(1);
    expect(e.out).toMatch(/BROKEN at event 4 .*edited/);

    const deleted = original.filter((_, i) => i !== 2);
    writeFileSync(path, `${deleted.join('\n')}\n`);
    const d = await cli(['verify', '--file', path]);
    expect(d.code).toBe(1);
    expect(d.out).toMatch(/BROKEN at event 3 .*deleted/);

    const reordered = [...original];
    [reordered[1], reordered[2]] = [reordered[2]!, reordered[1]!];
    writeFileSync(path, `${reordered.join('\n')}\n`);
    const r = await cli(['verify', '--file', path]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/BROKEN at event 2/);
  });

  it('finds a tampered Redis stream entry', async () => {
    const gw = await gateway({ sinks: [{ type: 'redis' }] });
    for (let i = 0; i < 3; i++) await resumeNewRun(gw.url, world.standIn, world.jwt);
    const entries = await poll(
      async () => (await world.admin.xrange(STREAM, '-', '+')) as [string, string[]][],
      (es) => es.length === 6,
    );
    expect((await cli(['verify', '--redis', world.redis.url, '--complete'])).code).toBe(0);
    await world.admin.xdel(STREAM, entries[2]![0]);
    const res = await cli(['verify', '--redis', world.redis.url]);
    expect(res.code).toBe(1);
    expect(res.out).toContain('deleted');
  });

  it('queries by org, caller, decision and time, as JSON lines or a table, and tails new events', async () => {
    const { path } = auditFile();
    const gw = await gateway({ sinks: [{ type: 'file', path, fsync: 'never' }] });
    const since = new Date().toISOString();
    await resumeNewRun(gw.url, world.standIn, world.jwt);
    await resumeNewRun(gw.url, world.standIn, world.jwt, { org: 'Other-Org' });
    await resumeNewRun(gw.url, world.standIn, 'bad-token');
    await poll(
      () => readFileSync(path, 'utf8').split('\n').filter(Boolean).length,
      (n) => n >= 4,
    );

    const forbidden = await cli(['query', '--file', path, '--decision', 'forbidden', '--caller', 'svc-billing']);
    const rows = forbidden.out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ org: 'Other-Org', decision: 'forbidden', reason: 'forbidden' });

    const acme = await cli(['query', '--file', path, '--org', 'Acme-Prod', '--since', since, '--format', 'table']);
    const table = acme.out.split('\n').filter(Boolean);
    expect(table[0]).toBe('time\ttype\tdecision\treason\torg\truuid\tcaller\tstatus\tupstream\tms\tcount\trequest-id');
    expect(table.slice(1).map((l) => l.split('\t').slice(1, 3).join(' '))).toEqual([
      'attempt allowed',
      'outcome allowed',
      'decision unauthenticated',
    ]);

    const none = await cli(['query', '--file', path, '--until', '2000-01-01T00:00:00Z']);
    expect(none.out).toBe('');
    expect((await cli(['query', '--file', path, '--since', 'yesterday'])).code).toBe(2);

    // tail prints what arrives after it started (what is there already only with --from-start).
    const tail = cli(['tail', '--file', path, '--type', 'outcome']);
    await sleep(100);
    await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': 'tailed' } });
    const tailed = await tail;
    expect(tailed.out).toContain('"requestId":"tailed"');
    const tailedIds = tailed.out
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as AuditEvent).requestId);
    expect(
      tailedIds.every((id) => id === 'tailed'),
      tailed.out,
    ).toBe(true);
  });
});

describe('bounded denials', () => {
  it(
    'writes a few full events per caller and reason per second, ' + 'and folds the rest into counted denials events',
    async () => {
      const { path } = auditFile();
      const gw = await gateway({
        sinks: [{ type: 'file', path, fsync: 'never' }],
        denials: { fullPerSecond: 3, maxKeys: 100 },
      });
      const N = 300;
      await Promise.all(Array.from({ length: N }, () => resumeNewRun(gw.url, world.standIn, 'garbage-token')));
      await sleep(1_300);
      const events = readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditEvent);
      const full = events.filter((e) => e.type === 'decision' && e.reason === 'token_malformed');
      const folded = events.filter((e) => e.type === 'denials');
      const seconds = new Set(full.map((e) => e.time.slice(0, 19))).size;
      expect(full.length).toBeLessThanOrEqual(3 * seconds);
      expect(folded.length).toBeGreaterThan(0);
      expect(full.length + folded.reduce((n, e) => n + (e.count ?? 0), 0)).toBe(N);
      expect(folded[0]).toMatchObject({
        decision: 'unauthenticated',
        reason: 'token_malformed',
        client: { address: '127.0.0.1' },
      });
      expect(events.length).toBeLessThan(20);
    },
  );
});

/**
 * Keeps 20 callers resuming through `gw` until SnapLogic has received `atLeast` of their calls,
 * then kills snapgate with SIGKILL; returns the request ids SnapLogic received.
 */
async function loadThenKill(gw: GatewayProcess, prefix: string, atLeast = 200): Promise<string[]> {
  let n = 0;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      await resumeNewRun(gw.url, world.standIn, world.jwt, { headers: { 'x-request-id': `${prefix}${n++}` } }).catch(
        () => undefined,
      );
    }
  };
  const workers = Promise.all(Array.from({ length: 20 }, worker));
  const mine = () =>
    world.standIn
      .startCalls()
      .map((c) => String(c.headers['x-request-id']))
      .filter((id) => id.startsWith(prefix));
  await poll(
    () => mine().length,
    (k) => k >= atLeast,
    10_000,
  );
  gw.kill('SIGKILL');
  await gw.exited;
  stop = true;
  await workers;
  return mine();
}

describe('crash', () => {
  it('after kill -9 mid-load, every call SnapLogic received has its attempt in the stream', async () => {
    const gw = await spawnGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: world.redis.url },
        audit: { sinks: [{ type: 'redis' }] },
      }),
    );
    expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
    const received = await loadThenKill(gw, `crash-${randomUUID().slice(0, 8)}-`);
    expect(received.length).toBeGreaterThanOrEqual(200);
    const attempts = new Set((await streamEvents()).filter((e) => e.type === 'attempt').map((e) => e.requestId));
    const missing = received.filter((id) => !attempts.has(id));
    expect(missing).toEqual([]);
  }, 60_000);
});

describe('crash with the default stdout trail', () => {
  it('after kill -9, every call SnapLogic received has its attempt line on stdout', async () => {
    const gw = await spawnGateway(baseConfig(world.standIn, world.issuer));
    expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
    const received = await loadThenKill(gw, `stdout-crash-${randomUUID().slice(0, 8)}-`);
    await sleep(100);
    const attempts = new Set(
      gw.stdout.flatMap((l) => {
        try {
          const e = JSON.parse(l) as AuditEvent;
          return e.type === 'attempt' ? [e.requestId] : [];
        } catch {
          return []; // the last line may be torn by the kill
        }
      }),
    );
    expect(received.filter((id) => !attempts.has(id))).toEqual([]);
  }, 60_000);
});

describe('volume', () => {
  it('10,000 calls through the Redis stream sink leave an attempt and an outcome for each, in order', async () => {
    const gw = await gateway({ sinks: [{ type: 'redis' }] });
    const total = 10_000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const res = await resume(
          gw.url,
          'Acme-Prod',
          world.standIn.addRun('Acme-Prod', 'Suspended', `${(i + 1).toString(16).padStart(24, '0')}_${randomUUID()}`),
          world.jwt,
          {
            'x-request-id': `vol-${i}`,
          },
        );
        if (res.status !== 200) throw new Error(`call ${i}: ${res.status} ${res.text}`);
      }
    };
    await Promise.all(Array.from({ length: 50 }, worker));
    const len = await poll(
      () => world.admin.xlen(STREAM),
      (n) => n >= 2 * total,
      20_000,
    );
    expect(len).toBe(2 * total);
    const positions = new Map<string, string[]>();
    let start = '-';
    for (;;) {
      const page = (await world.admin.xrange(STREAM, start, '+', 'COUNT', 5000)) as [string, string[]][];
      for (const [id, f] of page) {
        const e = JSON.parse(f[1]!) as AuditEvent;
        positions.set(e.requestId, [...(positions.get(e.requestId) ?? []), e.type]);
        start = `(${id}`;
      }
      if (page.length < 5000) break;
    }
    expect(positions.size).toBe(total);
    for (const [, types] of positions) expect(types).toEqual(['attempt', 'outcome']);
    expect((await cli(['verify', '--redis', world.redis.url, '--complete'])).code).toBe(0);
  }, 120_000);
});
