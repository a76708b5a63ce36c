// The parts most end-to-end suites need together: the SnapLogic stand-in, a token issuer, a private redis-server and a client to inspect it.
import { Redis } from 'ioredis';
import { startTestStandIn } from './gateway.js';
import { RedisServer } from './redis-server.js';
import type { SnapLogicStandIn } from './snaplogic-stand-in.js';
import { TokenIssuer } from './token-issuer.js';

export interface World {
  standIn: SnapLogicStandIn;
  issuer: TokenIssuer;
  redis: RedisServer;
  /** A client of `redis` for the test itself (inspect keys, flush between tests). */
  admin: Redis;
  /** A token for svc-billing, valid for an hour. */
  jwt: string;
}

export async function startWorld(): Promise<World> {
  const standIn = await startTestStandIn();
  const issuer = await TokenIssuer.start();
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
  await w.standIn.close();
  await w.issuer.close();
}

/** The SnapLogic stand-in and a token issuer, for suites that start their own gateways and Redis. */
export async function startStandInAndIssuer(): Promise<{ standIn: SnapLogicStandIn; issuer: TokenIssuer }> {
  return { standIn: await startTestStandIn(), issuer: await TokenIssuer.start() };
}

export async function stopStandInAndIssuer(parts: { standIn: SnapLogicStandIn; issuer: TokenIssuer }): Promise<void> {
  await parts.standIn.close();
  await parts.issuer.close();
}
