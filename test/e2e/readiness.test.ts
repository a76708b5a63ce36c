// /readyz against a real, killable redis-server: ready while Redis answers, not ready (fast) while it is down,
// ready again after.
// The checks are read on the admin listener; the callers' port answers the status only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http.js';
import { RedisServer } from '../helpers/redis-server.js';
import { poll } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
let redis: RedisServer;
let gw: TestGateway;

beforeAll(async () => {
  redis = await RedisServer.start();
  gw = await startTestGateway(
    baseConfig(world.standIn, world.issuer, {
      redis: { url: redis.url, commandTimeout: '100ms' },
      admin: { host: '127.0.0.1', port: 0 },
    }),
  );
});

afterAll(async () => {
  await gw.close();
  await redis.stop();
});

const adminUrl = (g: TestGateway) => `http://127.0.0.1:${g.gateway.adminPort}`;

async function readyz() {
  const started = Date.now();
  const res = await send(adminUrl(gw), 'GET', '/readyz');
  return { ...res, ms: Date.now() - started };
}

/** Asks until the status is `status` (readiness is computed at most once a second), each answer fast. */
function readyzUntil(status: number) {
  return poll(
    readyz,
    (res) => {
      if (res.status === status) return true;
      expect(res.ms).toBeLessThan(1_000);
      return false;
    },
    5_000,
    100,
  );
}

describe('readiness', () => {
  it('is ready when config, credentials, keys and Redis are all usable', async () => {
    const res = await readyz();
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({
      status: 'ready',
      checks: { config: 'ok', credentials: 'ok', jwks: 'ok', redis: 'ok', audit: 'ok' },
    });
    const callers = await send(gw.url, 'GET', '/readyz');
    expect(callers.json).toEqual({ status: 'ready' });
  });

  it('is not ready while Redis is down, answering quickly, and ready again once it is back', async () => {
    await redis.kill();
    const down = await readyzUntil(503);
    expect(down.status).toBe(503);
    expect(down.json.checks.redis).toBe('unreachable');
    expect(down.ms).toBeLessThan(1_000);
    expect((await send(gw.url, 'GET', '/livez')).status).toBe(200);
    const callers = await send(gw.url, 'GET', '/readyz');
    expect(callers.json).toEqual({ status: 'not_ready' });

    await redis.restart();
    const back = await readyzUntil(200);
    expect(back.status, back.text).toBe(200);
  });

  it('stays ready without Redis when redis.requiredForReadiness is false, still reporting it', async () => {
    const lenient = await startTestGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: redis.url, commandTimeout: '100ms', requiredForReadiness: false },
        admin: { host: '127.0.0.1', port: 0 },
      }),
    );
    try {
      await redis.kill();
      const res = await send(adminUrl(lenient), 'GET', '/readyz');
      expect(res.status, res.text).toBe(200);
      expect(res.json.checks.redis).toBe('unreachable');
    } finally {
      await redis.restart();
      await lenient.close();
    }
  });

  it('does not audit health checks', async () => {
    const before = gw.audit.length;
    await readyz();
    await send(gw.url, 'GET', '/livez');
    expect(gw.audit.length).toBe(before);
  });
});
