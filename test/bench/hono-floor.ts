// A floor for snapgate: the bare proxy's work, but served by Hono on @hono/node-server (no checks at all), for the
// resume (POST start) and the status read (GET status, its query forwarded).
// With FLOOR_REDIS (a Redis URL) each call also does the Redis work snapgate's design requires, and nothing else (no
// token, policy, metrics or headers): on a resume, the run lock taken first and, after the answer, turned into
// snapgate's default hold after a resume; on every call, a rate-limit check (reads in a bucket of their own) and a
// write-ahead audit attempt acknowledged by Redis before forwarding, sent in the same write, then an outcome event.
// FLOOR_REDIS_MODE=ours (default) uses snapgate's run lock, limiter and audit trail; raw sends the same
// commands straight through ioredis, the least any gateway built on it can do, waiting twice before forwarding (the
// run lock, then the limit and the attempt); raw-one sends all three in one write and waits once.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import type { AuditEvent } from '../../src/audit/event.js';
import { createRedisStreamSink } from '../../src/audit/sinks.js';
import { AuditTrail, SinkWriter } from '../../src/audit/trail.js';
import { createLogger } from '../../src/log.js';
import { compileOrgLimits } from '../../src/ratelimit/limits.js';
import { createRedisLimiter, LIMIT_SCRIPT } from '../../src/ratelimit/redis-limiter.js';
import { batchWritesThisTurn } from '../../src/redis/client.js';
import { ACQUIRE_SCRIPT, createRedisRunLock, RELEASE_SCRIPT, runLockKey } from '../../src/runs/run-lock.js';
import { authorization, upstream, upstreamAgent } from './bare-upstream.js';

const agent = upstreamAgent();

/**
 * Does a call's Redis work up to forwarding (a resume is a write: it takes the run lock); the function it returns
 * records the outcome and releases the lock.
 */
type RedisWork = (org: string, ruuid: string, write: boolean) => Promise<() => Promise<void>>;

/** A resume's run lock lease (about snapgate's with the default upstream timeouts), and its hold after (default). */
const LEASE_MS = 32_000;
const HOLD_AFTER_RESUME_MS = 2_000;

async function redisWork(url: string): Promise<RedisWork> {
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  await new Promise((resolve) => client.once('ready', resolve));
  const stream = 'audit:{floor}:events';
  const maxLen = Number(process.env.FLOOR_AUDIT_MAXLEN ?? 200_000);
  // Padding brings each event to the size of snapgate's (about 900 bytes of JSON).
  const eventOf = (org: string, ruuid: string) => ({
    v: 3,
    id: randomUUID(),
    type: 'attempt',
    time: new Date().toISOString(),
    caller: { iss: 'https://idp.example.com', sub: 'svc-000' },
    org,
    ruuid,
    pad: 'x'.repeat(560),
  });

  const mode = process.env.FLOOR_REDIS_MODE;
  if (mode === 'raw' || mode === 'raw-one') {
    const sha = String(await client.script('LOAD', LIMIT_SCRIPT));
    const lockSha = String(await client.script('LOAD', ACQUIRE_SCRIPT));
    const unlockSha = String(await client.script('LOAD', RELEASE_SCRIPT));
    return async (org, ruuid, write) => {
      const event = eventOf(org, ruuid);
      const body = JSON.stringify(event);
      const lock = write ? runLockKey(org, ruuid) : undefined;
      const bucket = write ? `rl:{org:${org}}:rate` : `rl:{org:${org}}:reads:rate`;
      const limit = () => client.evalsha(sha, 1, bucket, event.id, 1, 'r', '0', 3_600, 3_600_000_000);
      const attempt = () => client.xadd(stream, 'MAXLEN', '~', maxLen, '*', 'e', body);
      batchWritesThisTurn(client);
      if (mode === 'raw-one') {
        // One wait: the limit, the lock and the attempt leave in one write (snapgate's design since issue 16).
        await Promise.all([
          limit(),
          lock !== undefined ? client.evalsha(lockSha, 1, lock, event.id, LEASE_MS) : 0,
          attempt(),
        ]);
      } else {
        // Two waits: the lock first, then the limit and the attempt together.
        if (lock !== undefined) await client.evalsha(lockSha, 1, lock, event.id, LEASE_MS);
        batchWritesThisTurn(client);
        await Promise.all([limit(), attempt()]);
      }
      return () => {
        // Neither is waited for (as in snapgate): the outcome and the release leave in one write.
        batchWritesThisTurn(client);
        void client.xadd(
          stream,
          'MAXLEN',
          '~',
          maxLen,
          '*',
          'e',
          JSON.stringify({ ...event, type: 'outcome', status: 200 }),
        );
        if (lock !== undefined) void client.evalsha(unlockSha, 1, lock, event.id, HOLD_AFTER_RESUME_MS);
        return Promise.resolve();
      };
    };
  }

  const limiter = createRedisLimiter(client);
  const runLock = createRedisRunLock(client);
  const high = { limit: 1_000_000_000, window: '1h' } as never;
  const limits = compileOrgLimits('Bench-Org', high, 30_000);
  const readLimits = compileOrgLimits('Bench-Org', high, 30_000, 'reads');
  const log = createLogger({ level: 'warn', write: () => undefined });
  const sink = createRedisStreamSink(client, { stream, maxLen });
  const trail = new AuditTrail([
    new SinkWriter({
      sink,
      required: true,
      onFailure: 'reject',
      ackTimeoutMs: 1_000,
      spoolDir: '/tmp',
      instance: 'floor',
      log,
    }),
  ]);
  await trail.start();
  return async (org, ruuid, write) => {
    const lock = write ? await runLock.acquire(org, ruuid, LEASE_MS) : undefined;
    if (lock !== undefined && !lock.ok) throw new Error(`run ${org}/${ruuid} is locked: the bench resumed it twice`);
    const event = eventOf(org, ruuid) as unknown as AuditEvent;
    await Promise.all([
      limiter.check({ limits: write ? limits : readLimits, caller: 'svc-000', leaseId: event.id }),
      trail.record(event, true),
    ]);
    return async () => {
      void trail.record({ ...event, type: 'outcome' });
      await lock?.release(HOLD_AFTER_RESUME_MS);
    };
  };
}

const work = process.env.FLOOR_REDIS ? await redisWork(process.env.FLOOR_REDIS) : undefined;
/** Forwards a call as it came (path and query), with the Basic header, after its Redis work. */
async function forward(org: string, ruuid: string, method: 'GET' | 'POST', path: string): Promise<Response> {
  const done = work !== undefined ? await work(org, ruuid, method === 'POST') : undefined;
  const up = await agent.request({ origin: upstream, path, method, headers: { authorization } });
  const body = Buffer.from(await up.body.arrayBuffer());
  const sl = up.headers['x-sl-statuscode'];
  await done?.();
  return new Response(body, {
    status: up.statusCode,
    headers: {
      'content-type': String(up.headers['content-type'] ?? 'application/json'),
      ...(typeof sl === 'string' ? { 'x-sl-statuscode': sl } : {}),
    },
  });
}

const app = new Hono();
app.post('/api/1/rest/public/runtime/start/:org/:ruuid', (c) =>
  forward(c.req.param('org'), c.req.param('ruuid'), 'POST', c.req.path),
);
app.get('/api/1/rest/public/runtime/:org/:ruuid', (c) => {
  const url = c.req.url;
  const q = url.indexOf('?');
  return forward(c.req.param('org'), c.req.param('ruuid'), 'GET', q === -1 ? c.req.path : c.req.path + url.slice(q));
});
const server = serve(
  { fetch: app.fetch, port: Number(process.env.BARE_PORT ?? 0), hostname: '127.0.0.1' },
  (info: AddressInfo) => {
    process.stdout.write(`ready ${info.port}\n`);
  },
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
