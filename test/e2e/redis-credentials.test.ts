// No Redis password in any output: a real redis-server with requirepass, the gateway's log lines, and the audit
// CLI's messages.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAuditCli } from '../../src/audit/cli.js';
import { ConfigError } from '../../src/config/load.js';
import { baseConfig, startTestGateway, testSecrets } from '../helpers/gateway.js';
import { send } from '../helpers/http.js';
import { recordOutput, recordSecret } from '../helpers/leak-scan.js';
import { RedisServer } from '../helpers/redis-server.js';
import { poll } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const SECRET = 'redis-Requirepass-9f3c1e';
recordSecret(SECRET);

const world = useStandInAndIssuer();
let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
  await requirePassword();
});

/** Turns on requirepass (RedisServer's start-up probe pings without a password, so it cannot start with one). */
async function requirePassword(): Promise<void> {
  const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 0, lazyConnect: true });
  admin.on('error', () => {});
  await admin.connect();
  await admin.config('SET', 'requirepass', SECRET);
  admin.disconnect();
}

afterAll(async () => {
  await redis.stop();
});

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; text: string }> {
  let text = '';
  const code = await runAuditCli(args, {
    out: (t) => (text += t),
    err: (t) => (text += t),
    env,
    interrupted: new Promise(() => {}),
  });
  recordOutput(text);
  return { code, text };
}

describe('redis credentials in the gateway', () => {
  it('refuses a password smuggled into the redis.url query before anything connects', async () => {
    const doc = baseConfig(world.standIn, world.issuer, { redis: { url: `${redis.url}?password=${SECRET}` } });
    const err = await startTestGateway(doc).then(
      async (gw) => {
        const leaked = gw.logLines.filter((l) => l.includes(SECRET));
        await gw.close();
        return new Error(`started, and ${leaked.length} log line(s) held the password: ${leaked.join('\n')}`);
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).not.toContain(SECRET);
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^redis\.url: .*redis\.password/)]);
  });

  it('logs host:port only when it connects and when the connection is lost, and never the password', async () => {
    const env = { ...testSecrets, REDIS_PASSWORD: SECRET };
    const gw = await startTestGateway(
      baseConfig(world.standIn, world.issuer, {
        redis: { url: redis.url, password: 'env:REDIS_PASSWORD' },
        admin: { host: '127.0.0.1', port: 0 },
      }),
      env,
    );
    const adminUrl = `http://127.0.0.1:${gw.gateway.adminPort}`;
    const where = `127.0.0.1:${redis.port}`;
    try {
      const connected = gw.logs.find((l) => l.msg === 'redis connected');
      expect(connected, gw.logLines.join('\n')).toMatchObject({ redis: where });
      const ready = await send(gw.url, 'GET', '/readyz');
      expect(ready.status, ready.text).toBe(200);

      await redis.kill();
      await poll(() => gw.logs.some((l) => l.msg === 'redis connection lost'), Boolean);
      expect(
        gw.logs.find((l) => l.msg === 'redis connection lost'),
        gw.logLines.join('\n'),
      ).toMatchObject({ redis: where });
      // The admin listener names each check: the Redis one in fixed words, never the URL or password.
      await new Promise((r) => setTimeout(r, 1_100));
      const detail = await send(adminUrl, 'GET', '/readyz');
      expect(detail.json.checks.redis, detail.text).toBe('unreachable');
      for (const text of [
        detail.text,
        (await send(adminUrl, 'GET', '/metrics')).text,
        (await send(gw.url, 'GET', '/readyz')).text,
      ]) {
        expect(text).not.toContain(SECRET);
        expect(text).not.toContain('redis://');
      }
    } finally {
      await gw.close();
      await redis.restart();
      await requirePassword();
    }
    expect(gw.logLines.filter((l) => l.includes(SECRET))).toEqual([]);
    expect(gw.logLines.filter((l) => l.includes('redis://'))).toEqual([]);
  });
});

describe('redis credentials in the audit CLI', () => {
  it.each([
    ['userinfo', (url: string) => url.replace('redis://', `redis://:${SECRET}@`)],
    ['a user and password', (url: string) => url.replace('redis://', `redis://default:${SECRET}@`)],
    ['a password in the query', (url: string) => `${url}?password=${SECRET}`],
  ])('refuses a --redis URL with %s, naming SNAPGATE_REDIS_PASSWORD and never the value', async (_, withSecret) => {
    const { code, text } = await cli(['verify', '--redis', withSecret(redis.url)]);
    expect(code, text).toBe(2);
    expect(text).toContain('SNAPGATE_REDIS_PASSWORD');
    expect(text).not.toContain(SECRET);
  });

  it('reads the stream with the password from SNAPGATE_REDIS_PASSWORD', async () => {
    const { code, text } = await cli(['verify', '--redis', redis.url], { SNAPGATE_REDIS_PASSWORD: SECRET });
    expect(code, text).toBe(0);
    expect(text).toContain('ok: no events');
  });

  it('names host:port, not the URL, when Redis cannot be read', async () => {
    const { code, text } = await cli(['verify', '--redis', `${redis.url}/0`], {
      SNAPGATE_REDIS_PASSWORD: 'wrong-password',
    });
    expect(code, text).toBe(1);
    expect(text).toContain(`127.0.0.1:${redis.port}`);
    expect(text).not.toContain('redis://');
  });
});
