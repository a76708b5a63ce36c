// Exactness across instances: three snapgate processes on one Redis (standalone, then a real 3-master Cluster) admit
// exactly limit + burst.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  baseConfig,
  spawnGateway,
  startTestGateway,
  tempDir,
  writeConfig,
  type GatewayProcess,
} from '../helpers/gateway.js';
import { resumeNewRun } from '../helpers/http.js';
import { RedisCluster } from '../helpers/redis-cluster.js';
import { freePort, RedisServer } from '../helpers/redis-server.js';
import { track } from '../helpers/children.js';
import { until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();

const LIMIT = 20;
const BURST = 5;

async function threeGateways(redis: Record<string, unknown>): Promise<GatewayProcess[]> {
  // Exactness is Redis's: a deadline missed on a loaded CI machine would hand decisions to the
  // per-instance fallback, so the deadline here is generous.
  const doc = baseConfig(world.standIn, world.issuer, {
    redis: { commandTimeout: '2s', ...redis },
    log: { level: 'info' },
  });
  const orgs = doc.orgs as Record<string, Record<string, unknown>>;
  orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit: { limit: LIMIT, window: '1h', burst: BURST } };
  const path = writeConfig(doc);
  const gateways = await Promise.all([spawnGateway(path), spawnGateway(path), spawnGateway(path)]);
  for (const g of gateways) expect(g.port, g.stderr.join('\n')).toBeGreaterThan(0);
  return gateways;
}

async function stopAll(gateways: GatewayProcess[]): Promise<void> {
  for (const g of gateways) g.kill('SIGTERM');
  await Promise.all(gateways.map((g) => g.exited));
}

/** Fires `total` concurrent resumes spread round-robin over the gateways; returns the statuses. */
async function fire(gateways: GatewayProcess[], total: number): Promise<number[]> {
  const jwt = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
  const replies = await Promise.all(
    Array.from({ length: total }, (_, i) => resumeNewRun(gateways[i % gateways.length]!.url, world.standIn, jwt)),
  );
  return replies.map((r) => r.status);
}

describe('exact limits across instances', () => {
  it('three processes on one standalone Redis admit exactly limit + burst', async () => {
    const redis = await RedisServer.start();
    const gateways = await threeGateways({ url: redis.url });
    try {
      const before = world.standIn.startCalls().length;
      const statuses = await fire(gateways, 90);
      expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT + BURST);
      expect(statuses.filter((s) => s === 429)).toHaveLength(90 - LIMIT - BURST);
      expect(world.standIn.startCalls().length - before).toBe(LIMIT + BURST);
    } finally {
      await stopAll(gateways);
      await redis.stop();
    }
  });

  it(
    'three processes on a 3-master Redis Cluster admit ' + "exactly limit + burst, all of an org's keys in one slot",
    async () => {
      const cluster = await RedisCluster.start();
      const gateways = await threeGateways({ cluster: { nodes: cluster.hosts } });
      try {
        const before = world.standIn.startCalls().length;
        const statuses = await fire(gateways, 90);
        expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT + BURST);
        expect(world.standIn.startCalls().length - before).toBe(LIMIT + BURST);

        const client = new Cluster(cluster.hosts);
        try {
          const key = 'rl:{org:Acme-Prod}:rate';
          expect(await client.exists(key)).toBe(1);
          const slots = await Promise.all(
            ['rl:{org:Acme-Prod}:rate', 'rl:{org:Acme-Prod}:conc', 'rl:{org:Acme-Prod}:caller:x'].map((k) =>
              client.cluster('KEYSLOT', k),
            ),
          );
          expect(new Set(slots).size).toBe(1);
        } finally {
          client.disconnect();
        }
      } finally {
        await stopAll(gateways);
        await cluster.stop();
      }
    },
  );
});

describe('Redis Sentinel', () => {
  it('finds the master through a real sentinel and limits through it', async () => {
    const master = await RedisServer.start();
    const dir = tempDir('snapgate-sentinel-');
    const confPath = join(dir, 'sentinel.conf');
    writeFileSync(
      confPath,
      `sentinel monitor snapmaster 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds snapmaster 5000\n`,
    );
    const sentinelPort = await freePort();
    const sentinel = track(
      spawn('redis-server', [confPath, '--sentinel', '--port', String(sentinelPort), '--bind', '127.0.0.1'], {
        stdio: 'ignore',
      }),
    );
    try {
      await waitForPort(sentinelPort);
      const doc = baseConfig(world.standIn, world.issuer, {
        redis: { sentinel: { name: 'snapmaster', sentinels: [{ host: '127.0.0.1', port: sentinelPort }] } },
      });
      const orgs = doc.orgs as Record<string, Record<string, unknown>>;
      orgs['Acme-Prod'] = { ...orgs['Acme-Prod'], rateLimit: { limit: 2, window: '1h' } };
      const gw = await startTestGateway(doc);
      try {
        const jwt = await world.issuer.mint({ sub: 'svc-billing' });
        const statuses = [];
        for (let i = 0; i < 3; i++) statuses.push((await resumeNewRun(gw.url, world.standIn, jwt)).status);
        expect(statuses).toEqual([200, 200, 429]);
        const direct = new Redis(master.port, '127.0.0.1');
        expect(await direct.exists('rl:{org:Acme-Prod}:rate')).toBe(1);
        direct.disconnect();
      } finally {
        await gw.close();
      }
    } finally {
      sentinel.kill('SIGKILL');
      await master.stop();
    }
  });
});

async function waitForPort(port: number): Promise<void> {
  const answers = async () => {
    const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      return true;
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  };
  await until(answers, 10_000, () => `nothing answered on ${port}`);
}
