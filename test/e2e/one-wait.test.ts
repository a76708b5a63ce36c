// One Redis wait before forwarding, on a real redis-server: snapgate talks to Redis through a TCP relay that holds
// every write from snapgate for DELAY_MS before passing it on, so each round trip snapgate waits for costs at least
// DELAY_MS. The time from sending a resume to the stand-in receiving it then counts the waits before forwarding: three
// for a bucket's first call (the limits, the run lock, the attempt, each after the other), one once the bucket is
// known to have headroom (all three leave in one write) while the trail is idle, and at most two while the trail is
// still writing the last call's outcome.
import { createServer, Socket, type Server } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, tempDir, type TestGateway } from '../helpers/gateway.js';
import { resume } from '../helpers/http.js';
import { RedisServer } from '../helpers/redis-server.js';
import { until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
const DELAY_MS = 100;

/** A relay to Redis that delays what the client writes (not Redis's answers) by DELAY_MS, keeping its order. */
async function delayingRelay(redisPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(redisPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), DELAY_MS));
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

let redis: RedisServer;
let relay: Awaited<ReturnType<typeof delayingRelay>>;
let gw: TestGateway;

beforeAll(async () => {
  redis = await RedisServer.start();
  relay = await delayingRelay(redis.port);
  const doc = baseConfig(world.standIn, world.issuer, {
    // Deadlines well above the relay's delay: every decision is Redis's.
    redis: { url: `redis://127.0.0.1:${relay.port}`, commandTimeout: '2s' },
    audit: { sinks: [{ type: 'redis' }], stdout: false },
  });
  const orgs = doc.orgs as Record<string, Record<string, unknown>>;
  orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit: { limit: 100_000, window: '1h' } };
  orgs['Other-Org'] = { ...orgs['Other-Org'], rateLimit: { limit: 10, window: '1h' } };
  gw = await startTestGateway(doc);
});

afterAll(async () => {
  await gw?.close();
  await relay?.close();
  await redis?.stop();
});

/** Resumes a new run of `org` and returns how long it took to reach the stand-in, ms. */
async function msToForward(org: string, token: string): Promise<number> {
  const ruuid = world.standIn.addRun(org);
  const sent = Date.now();
  const reply = await resume(gw.url, org, ruuid, token);
  expect(reply.status, reply.text).toBe(200);
  const received = world.standIn.calls('start', ruuid);
  expect(received).toHaveLength(1);
  return received[0]!.at - sent;
}

/** The audit stream's entries' types, in order. */
async function streamTypes(): Promise<string[]> {
  const client = new Redis(redis.port, '127.0.0.1');
  try {
    const entries = (await client.xrange('audit:{snapgate}:events', '-', '+')) as [string, string[]][];
    return entries.map(([, f]) => (JSON.parse(f[1]!) as { type: string }).type);
  } finally {
    client.disconnect();
  }
}

/** Waits until the trail holds an outcome for every attempt (nothing of the trail in flight). */
async function trailSettled(): Promise<void> {
  await until(
    async () => {
      const types = await streamTypes();
      return types.filter((t) => t === 'attempt').length === types.filter((t) => t === 'outcome').length;
    },
    5_000,
    () => 'every attempt has its outcome in the stream',
    10,
  );
}

describe('Redis waits before a resume is forwarded', () => {
  it("a bucket's first call waits three times; once it has headroom, a call waits once", async () => {
    const token = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
    const first = await msToForward('Acme-Prod', token);
    expect(first).toBeGreaterThanOrEqual(3 * DELAY_MS);
    // Within a second of the last decision, with far more than the headroom left: the limits, the run lock and the
    // attempt leave in one write; with the trail idle (the last outcome stored), that is one wait.
    for (let i = 0; i < 3; i++) {
      await trailSettled();
      const next = await msToForward('Acme-Prod', token);
      expect(next).toBeGreaterThanOrEqual(DELAY_MS);
      expect(next).toBeLessThan(2 * DELAY_MS);
    }
    // Right after an answer, its outcome is still being written: the trail writes one batch at a time (so the stream
    // keeps its order whatever fails), and the attempt goes in the next, behind it: at most two waits, not four.
    for (let i = 0; i < 3; i++) {
      const next = await msToForward('Acme-Prod', token);
      expect(next).toBeLessThan(3 * DELAY_MS);
    }
    // Every one of them left its attempt and outcome in the Redis stream.
    await trailSettled();
    const types = await streamTypes();
    expect(types.filter((t) => t === 'attempt')).toHaveLength(7);
    expect(types.filter((t) => t === 'outcome')).toHaveLength(7);
  });

  it('an org whose whole limit is under the headroom decides first: three waits on every call', async () => {
    const token = await world.issuer.mint(
      { sub: 'svc-data-eng', scope: 'snaplogic:runtime:start', groups: ['data-eng'] },
      { expiresIn: 600 },
    );
    for (let i = 0; i < 2; i++) expect(await msToForward('Other-Org', token)).toBeGreaterThanOrEqual(3 * DELAY_MS);
  });
});

describe('a call that went ahead while Redis stalls', () => {
  it('waits for the slowest deadline, not their sum: local limits and lock, the attempt spooled, all replayed', async () => {
    const stalled = await RedisServer.start();
    const doc = baseConfig(world.standIn, world.issuer, {
      redis: { url: stalled.url, commandTimeout: '400ms' },
      audit: {
        sinks: [{ type: 'redis' }],
        stdout: false,
        onFailure: 'spool',
        spoolDir: tempDir(),
        ackTimeout: '600ms',
      },
    });
    const orgs = doc.orgs as Record<string, Record<string, unknown>>;
    orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit: { limit: 100_000, window: '1h' } };
    const stallGw = await startTestGateway(doc);
    try {
      const token = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
      expect((await resume(stallGw.url, 'Acme-Prod', world.standIn.addRun('Acme-Prod'), token)).status).toBe(200);
      stalled.pause();
      const ruuid = world.standIn.addRun('Acme-Prod');
      const sent = Date.now();
      const reply = await resume(stallGw.url, 'Acme-Prod', ruuid, token);
      const took = Date.now() - sent;
      stalled.resume();
      // The limits (400 ms), the lock (400 ms) and the attempt (600 ms) ran out together: one after the other they
      // would take 1.4 s.
      expect(reply.status, reply.text).toBe(200);
      expect(took).toBeLessThan(1_200);
      expect(reply.headers['x-snapgate-ratelimit-degraded']).toBe('local');
      expect(reply.headers['x-snapgate-run-lock-degraded']).toBe('local');
      expect(world.standIn.calls('start', ruuid)).toHaveLength(1);
      // Once Redis answers again the spool is replayed: the call's attempt and outcome are in the stream.
      const client = new Redis(stalled.port, '127.0.0.1');
      try {
        await until(
          async () => {
            const entries = (await client.xrange('audit:{snapgate}:events', '-', '+')) as [string, string[]][];
            const mine = entries.map(([, f]) => JSON.parse(f[1]!) as { type: string; requestId: string });
            return mine.filter((e) => e.requestId === reply.headers['x-request-id']).length === 2;
          },
          10_000,
          () => 'the attempt and outcome of the stalled call replayed into the stream',
          100,
        );
      } finally {
        client.disconnect();
      }
    } finally {
      stalled.resume();
      await stallGw.close();
      await stalled.stop();
    }
  });
});
