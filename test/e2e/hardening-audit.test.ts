// Bounded memory while a required audit sink is down: a cap on each sink's queue, counted drops, and a `dropped`
// event in the sink's own chain once it is back. Real redis-server, killed and restarted.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { resume, send } from '../helpers/http.js';
import type { RedisServer } from '../helpers/redis-server.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import type { TokenIssuer } from '../helpers/token-issuer.js';
import { startWorld, stopWorld, type World } from '../helpers/world.js';
import { verifyChain } from '../../src/audit/chain.js';

let world: World;
let standIn: SnapLogicStandIn;
let issuer: TokenIssuer;
let redis: RedisServer;
let gw: TestGateway;
const MAX_QUEUE = 200;

beforeAll(async () => {
  world = await startWorld();
  ({ standIn, issuer, redis } = world);
  gw = await startTestGateway(
    baseConfig(standIn, issuer, {
      redis: { url: redis.url, commandTimeout: '100ms' },
      admin: { host: '127.0.0.1', port: 0 },
      audit: { sinks: [{ type: 'redis', stream: 'audit:{q}:events' }], onFailure: 'reject', ackTimeout: '200ms', maxQueue: MAX_QUEUE },
    }),
  );
});

afterAll(async () => {
  await gw.close();
  await stopWorld(world);
});

const metric = (text: string, name: string): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);

describe('a required sink that is down', () => {
  it('holds at most audit.maxQueue events, counts the rest as dropped, and writes a dropped event once back', async () => {
    const adminUrl = `http://127.0.0.1:${gw.gateway.adminPort}`;
    await redis.kill();
    // Full rate for a few seconds: every call is refused (503 audit_unavailable) and its events queue.
    const until = Date.now() + 4_000;
    let calls = 0;
    let maxDepth = 0;
    const worker = async () => {
      while (Date.now() < until) {
        const r = await resume(gw.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), world.jwt);
        expect([503]).toContain(r.status);
        calls += 1;
      }
    };
    const sampler = (async () => {
      while (Date.now() < until) {
        maxDepth = Math.max(maxDepth, metric((await send(adminUrl, 'GET', '/metrics')).text, 'snapgate_audit_queue_depth'));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await Promise.all([...Array.from({ length: 8 }, worker), sampler]);
    const text = (await send(adminUrl, 'GET', '/metrics')).text;
    const dropped = metric(text, 'snapgate_audit_dropped_total');
    expect(calls).toBeGreaterThan(MAX_QUEUE);
    expect(maxDepth).toBeGreaterThan(0);
    // The queue never grows past its cap (a failed batch put back can add at most one batch).
    expect(maxDepth).toBeLessThanOrEqual(MAX_QUEUE + 500);
    expect(metric(text, 'snapgate_audit_queue_depth')).toBeLessThanOrEqual(MAX_QUEUE);
    expect(dropped).toBeGreaterThan(0);

    await redis.restart();
    const reader = new Redis(redis.port, '127.0.0.1', { lazyConnect: true });
    await reader.connect();
    try {
      let entries: [string, string[]][] = [];
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        entries = await reader.xrange('audit:{q}:events', '-', '+');
        if (entries.some(([, f]) => f[1]!.includes('"type":"dropped"'))) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const lines = entries.map(([, f]) => f[1]!);
      const events = lines.map((l) => JSON.parse(l) as { type: string; count?: number; sink?: string });
      const droppedEvent = events.find((e) => e.type === 'dropped');
      expect(droppedEvent, 'a dropped event once the sink is back').toBeDefined();
      expect(droppedEvent?.sink).toBe('redis');
      // Every drop is accounted for: the dropped events' counts add up to the metric.
      const droppedAfter = metric((await send(adminUrl, 'GET', '/metrics')).text, 'snapgate_audit_dropped_total');
      expect(events.filter((e) => e.type === 'dropped').reduce((n, e) => n + (e.count ?? 0), 0)).toBe(droppedAfter);
      // What was queued and the dropped event form one unbroken chain: drops never leave a gap in it.
      expect(verifyChain(lines, { complete: true }).ok, JSON.stringify(verifyChain(lines, { complete: true }))).toBe(true);
    } finally {
      reader.disconnect();
    }
  }, 40_000);
});
