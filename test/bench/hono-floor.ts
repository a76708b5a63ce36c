// A floor for snapgate: the bare proxy's work, but served by Hono on @hono/node-server (no checks at all).
// With FLOOR_REDIS (a Redis URL) each call also does the Redis work snapgate's design requires, and
// nothing else (no token, policy, metrics or headers): a rate-limit check and a write-ahead audit
// attempt acknowledged by Redis before forwarding, sent in the same write, then an outcome event.
// FLOOR_REDIS_MODE=ours (default) uses snapgate's limiter and audit trail; raw sends the three
// commands straight through ioredis, the least any gateway built on it can do.
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
import { authorization, upstream, upstreamAgent } from './bare-upstream.js';

const agent = upstreamAgent();

/** Does a call's Redis work up to forwarding; the function it returns records the outcome. */
type RedisWork = (org: string, ruuid: string) => Promise<() => void>;

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

  if (process.env.FLOOR_REDIS_MODE === 'raw') {
    const sha = String(await client.script('LOAD', LIMIT_SCRIPT));
    return async (org, ruuid) => {
      const event = eventOf(org, ruuid);
      const body = JSON.stringify(event);
      batchWritesThisTurn(client);
      await Promise.all([
        client.evalsha(sha, 1, `rl:{org:${org}}:rate`, event.id, 1, 'r', '0', 3_600, 3_600_000_000),
        client.xadd(stream, 'MAXLEN', '~', maxLen, '*', 'e', body),
      ]);
      return () => {
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
      };
    };
  }

  const limiter = createRedisLimiter(client);
  const limits = compileOrgLimits('Bench-Org', { limit: 1_000_000_000, window: '1h' } as never, 30_000);
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
  return async (org, ruuid) => {
    const event = eventOf(org, ruuid) as unknown as AuditEvent;
    await Promise.all([limiter.check({ limits, caller: 'svc-000', leaseId: event.id }), trail.record(event, true)]);
    return () => void trail.record({ ...event, type: 'outcome' });
  };
}

const work = process.env.FLOOR_REDIS ? await redisWork(process.env.FLOOR_REDIS) : undefined;
const app = new Hono();
app.post('/api/1/rest/public/runtime/start/:org/:ruuid', async (c) => {
  const done = work !== undefined ? await work(c.req.param('org'), c.req.param('ruuid')) : undefined;
  const up = await agent.request({ origin: upstream, path: c.req.path, method: 'POST', headers: { authorization } });
  const body = Buffer.from(await up.body.arrayBuffer());
  const sl = up.headers['x-sl-statuscode'];
  done?.();
  return new Response(body, {
    status: up.statusCode,
    headers: {
      'content-type': String(up.headers['content-type'] ?? 'application/json'),
      ...(typeof sl === 'string' ? { 'x-sl-statuscode': sl } : {}),
    },
  });
});
const server = serve(
  { fetch: app.fetch, port: Number(process.env.BARE_PORT ?? 0), hostname: '127.0.0.1' },
  (info: AddressInfo) => {
    process.stdout.write(`ready ${info.port}\n`);
  },
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
