// Bounded memory while a required audit sink is down: a cap on each sink's queue, counted drops, and a `dropped`
// event in the sink's own chain once it is back. Real redis-server, killed and restarted.
import { readdirSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, tempDir, type TestGateway } from '../helpers/gateway.js';
import { resumeNewRun, send } from '../helpers/http.js';
import { poll, sleep } from '../helpers/wait.js';
import { useWorld } from '../helpers/world.js';
import { verifyChain } from '../../src/audit/chain.js';

const world = useWorld();
let gw: TestGateway;
const MAX_QUEUE = 200;

beforeAll(async () => {
  gw = await startTestGateway(
    baseConfig(world.standIn, world.issuer, {
      redis: { url: world.redis.url, commandTimeout: '100ms' },
      admin: { host: '127.0.0.1', port: 0 },
      audit: {
        sinks: [{ type: 'redis', stream: 'audit:{q}:events' }],
        onFailure: 'reject',
        ackTimeout: '200ms',
        maxQueue: MAX_QUEUE,
      },
    }),
  );
});

afterAll(async () => {
  await gw.close();
});

const metric = (text: string, name: string): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);

describe('a required sink that is down', () => {
  it(
    'holds at most audit.maxQueue events, ' + 'counts the rest as dropped, and writes a dropped event once back',
    async () => {
      const adminUrl = `http://127.0.0.1:${gw.gateway.adminPort}`;
      await world.redis.kill();
      // Full rate for a few seconds: every call is refused (503 audit_unavailable) and its events queue.
      const until = Date.now() + 4_000;
      let calls = 0;
      let maxDepth = 0;
      const worker = async () => {
        while (Date.now() < until) {
          const r = await resumeNewRun(gw.url, world.standIn, world.jwt);
          expect([503]).toContain(r.status);
          calls += 1;
        }
      };
      const sampler = (async () => {
        while (Date.now() < until) {
          maxDepth = Math.max(
            maxDepth,
            metric((await send(adminUrl, 'GET', '/metrics')).text, 'snapgate_audit_queue_depth'),
          );
          await sleep(100);
        }
      })();
      await Promise.all([...Array.from({ length: 8 }, worker), sampler]);
      const text = (await send(adminUrl, 'GET', '/metrics')).text;
      const dropped = metric(text, 'snapgate_audit_dropped_total');
      expect(calls).toBeGreaterThan(MAX_QUEUE);
      expect(maxDepth).toBeGreaterThan(0);
      // The queue never grows past its cap (the batch being written counts against it).
      expect(maxDepth).toBeLessThanOrEqual(MAX_QUEUE);
      expect(metric(text, 'snapgate_audit_queue_depth')).toBeLessThanOrEqual(MAX_QUEUE);
      expect(dropped).toBeGreaterThan(0);

      await world.redis.restart();
      const reader = new Redis(world.redis.port, '127.0.0.1', { lazyConnect: true });
      await reader.connect();
      try {
        const entries = await poll(
          () => reader.xrange('audit:{q}:events', '-', '+'),
          (es) => es.some(([, f]) => f[1]!.includes('"type":"dropped"')),
          10_000,
          200,
        );
        const lines = entries.map(([, f]) => f[1]!);
        const events = lines.map((l) => JSON.parse(l) as { type: string; count?: number; sink?: string });
        const droppedEvent = events.find((e) => e.type === 'dropped');
        expect(droppedEvent, 'a dropped event once the sink is back').toBeDefined();
        expect(droppedEvent?.sink).toBe('redis');
        // Every drop is accounted for: the dropped events' counts add up to the metric.
        const droppedAfter = metric((await send(adminUrl, 'GET', '/metrics')).text, 'snapgate_audit_dropped_total');
        expect(events.filter((e) => e.type === 'dropped').reduce((n, e) => n + (e.count ?? 0), 0)).toBe(droppedAfter);
        // What was queued and the dropped event form one unbroken chain: drops never leave a gap in it.
        expect(verifyChain(lines, { complete: true }).ok, JSON.stringify(verifyChain(lines, { complete: true }))).toBe(
          true,
        );
      } finally {
        reader.disconnect();
      }
    },
    40_000,
  );
});

describe('spool mode while the sink is stalled', () => {
  it('keeps forwarding through a Redis stall (events go to the spool at once), then replays it whole', async () => {
    const spoolDir = tempDir('snapgate-spool-');
    const spooling = await startTestGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: world.redis.url, commandTimeout: '100ms', requiredForReadiness: false },
        admin: { host: '127.0.0.1', port: 0 },
        audit: {
          sinks: [
            { type: 'redis', stream: 'audit:{s1}:events' },
            { type: 'redis', stream: 'audit:{s2}:events' },
          ],
          onFailure: 'spool',
          spoolDir,
          ackTimeout: '300ms',
        },
      }),
    );
    try {
      expect((await resumeNewRun(spooling.url, world.standIn, world.jwt)).status).toBe(200);
      world.redis.pause();
      const statuses: number[] = [];
      const refused: string[] = [];
      const durations: number[] = [];
      const until = Date.now() + 3_000;
      while (Date.now() < until) {
        const t0 = Date.now();
        const r = await resumeNewRun(spooling.url, world.standIn, world.jwt);
        durations.push(Date.now() - t0);
        statuses.push(r.status);
        if (r.status !== 200) refused.push(r.text);
      }
      // Two sinks of one type never share a spool file.
      expect(readdirSync(spoolDir).sort()).toEqual(['redis.2.spool.jsonl', 'redis.spool.jsonl']);
      const ready = await send(`http://127.0.0.1:${spooling.gateway.adminPort}`, 'GET', '/readyz');
      world.redis.resume();
      expect(statuses.length).toBeGreaterThan(5);
      expect(refused, 'no call refused while spooling').toEqual([]);
      // A call waits for the spool, or at most for one paced replay attempt (ackTimeout, 300 ms), never longer.
      expect(Math.max(...durations), durations.join(',')).toBeLessThan(600);
      expect(ready.status, ready.text).toBe(200);
      expect(ready.json.checks.audit).toMatch(/^spooling: redis/);

      const reader = new Redis(world.redis.port, '127.0.0.1', { lazyConnect: true });
      await reader.connect();
      try {
        const expected = (statuses.length + 1) * 2;
        await poll(
          async () => [await reader.xlen('audit:{s1}:events'), await reader.xlen('audit:{s2}:events')],
          (counts) => counts.every((n) => n >= expected),
          10_000,
          200,
        );
        for (const stream of ['audit:{s1}:events', 'audit:{s2}:events']) {
          const lines = (await reader.xrange(stream, '-', '+')).map(([, f]) => f[1]!);
          expect(lines.length, stream).toBe(expected);
          const report = verifyChain(lines, { complete: true });
          expect(report.ok, JSON.stringify(report)).toBe(true);
          expect(report.writers).toBe(1);
        }
      } finally {
        reader.disconnect();
      }
    } finally {
      world.redis.resume();
      await spooling.close();
    }
  }, 30_000);

  it('is not ready while a required sink fails in reject mode (every call would be refused)', async () => {
    const rejecting = await startTestGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: world.redis.url, commandTimeout: '100ms', requiredForReadiness: false },
        admin: { host: '127.0.0.1', port: 0 },
        audit: { sinks: [{ type: 'redis', stream: 'audit:{r}:events' }], onFailure: 'reject', ackTimeout: '200ms' },
      }),
    );
    try {
      await world.redis.kill();
      expect((await resumeNewRun(rejecting.url, world.standIn, world.jwt)).status).toBe(503);
      await sleep(1_100);
      const ready = await send(`http://127.0.0.1:${rejecting.gateway.adminPort}`, 'GET', '/readyz');
      expect(ready.status, ready.text).toBe(503);
      expect(ready.json.checks.audit).toBe('failing: redis');
    } finally {
      await world.redis.restart();
      await rejecting.close();
    }
  });
});
