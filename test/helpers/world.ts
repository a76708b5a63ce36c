// The parts most end-to-end suites need together: the SnapLogic stand-in, a token issuer, a private redis-server and a
// client to inspect it; and hooks that start them before a suite's tests and stop them after.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { waitForRedis } from '../../src/redis/client.js';
import { startTestStandIn, type TestGateway } from './gateway.js';
import { RedisServer } from './redis-server.js';
import type { SnapLogicStandIn } from './snaplogic-stand-in.js';
import { TokenIssuer } from './token-issuer.js';

export interface StandInAndIssuer {
  standIn: SnapLogicStandIn;
  issuer: TokenIssuer;
}

export interface World extends StandInAndIssuer {
  redis: RedisServer;
  /** A client of `redis` for the test itself (inspect keys, flush between tests). */
  admin: Redis;
  /** A token for svc-billing, valid for an hour. */
  jwt: string;
}

export async function startWorld(): Promise<World> {
  const { standIn, issuer } = await startStandInAndIssuer();
  const redis = await RedisServer.start();
  const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true });
  admin.on('error', () => {});
  await admin.connect();
  const jwt = await issuer.mint({ sub: 'svc-billing' }, { expiresIn: 3600 });
  return { standIn, issuer, redis, admin, jwt };
}

export async function stopWorld(w: World): Promise<void> {
  w.admin.disconnect();
  await w.redis.stop();
  await stopStandInAndIssuer(w);
}

/** The SnapLogic stand-in and a token issuer, for suites that start their own gateways and Redis. */
export async function startStandInAndIssuer(): Promise<StandInAndIssuer> {
  return { standIn: await startTestStandIn(), issuer: await TokenIssuer.start() };
}

export async function stopStandInAndIssuer(parts: StandInAndIssuer): Promise<void> {
  await parts.standIn.close();
  await parts.issuer.close();
}

/**
 * Parts for the suite this is called in (a file or a describe): `start` runs before its first test, `stop` after its
 * last (if `start` succeeded), after the suite's own afterAll hooks. The fields are set from the suite's beforeAll on.
 */
export function forSuite<T extends object>(start: () => Promise<T>, stop: (parts: T) => Promise<void>): T {
  const parts = {} as T;
  let started = false;
  beforeAll(async () => {
    Object.assign(parts, await start());
    started = true;
  });
  afterAll(async () => {
    if (started) await stop(parts);
  });
  return parts;
}

export interface RedisParts {
  server: RedisServer;
  /** A client that fails at once while the server is down or paused (no retries, no offline queue). */
  client: Redis;
}

/** A private redis-server and a client of it, for the suite this is called in (as forSuite). */
export function useRedis(): RedisParts {
  return forSuite(
    async () => {
      const server = await RedisServer.start();
      const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false });
      client.on('error', () => undefined);
      if (!(await waitForRedis(client, 5_000))) throw new Error('the test redis-server did not answer');
      return { server, client };
    },
    async ({ server, client }) => {
      server.resume();
      client.disconnect();
      await server.stop();
    },
  );
}

/** A world for the suite this is called in, as forSuite. */
export function useWorld(): World {
  return forSuite(startWorld, stopWorld);
}

/** useWorld without Redis: the stand-in and a token issuer for the suite this is called in. */
export function useStandInAndIssuer(): StandInAndIssuer {
  return forSuite(startStandInAndIssuer, stopStandInAndIssuer);
}

/**
 * The stand-in for the suite this is called in, and a fresh token issuer for each of its tests (closed after it, after
 * the suite's own afterEach hooks), for tests that break or count on the issuer.
 */
export function useStandInAndFreshIssuer(): StandInAndIssuer {
  const parts = forSuite(
    async () => ({ standIn: await startTestStandIn() }),
    (p) => p.standIn.close(),
  ) as StandInAndIssuer;
  beforeEach(async () => {
    parts.issuer = await TokenIssuer.start();
  });
  afterEach(async () => {
    await parts.issuer.close();
  });
  return parts;
}

/**
 * A list for the in-process gateways the current test starts: each test's are closed after it (after the suite's own
 * afterEach hooks, which run first).
 */
export function closedAfterEach(): TestGateway[] {
  const open: TestGateway[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((g) => g.close()));
  });
  return open;
}
