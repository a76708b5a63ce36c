// Exactness across instances: three snapgate processes on one Redis (standalone, then a real 3-master Cluster) admit exactly limit + burst.
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, spawnGateway, startTestStandIn, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { resume } from '../helpers/http.js';
import { RedisCluster } from '../helpers/redis-cluster.js';
import { RedisServer } from '../helpers/redis-server.js';
import type { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

let standIn: SnapLogicStandIn;
let issuer: TokenIssuer;

beforeAll(async () => {
  standIn = await startTestStandIn();
  issuer = await TokenIssuer.start();
});

afterAll(async () => {
  await standIn.close();
  await issuer.close();
});

const LIMIT = 20;
const BURST = 5;

async function threeGateways(redis: Record<string, unknown>): Promise<GatewayProcess[]> {
  const doc = baseConfig(standIn, issuer, { redis, log: { level: 'info' } });
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
  const jwt = await issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
  const replies = await Promise.all(
    Array.from({ length: total }, (_, i) => resume(gateways[i % gateways.length]!.url, 'Acme-Prod', standIn.addRun('Acme-Prod'), jwt)),
  );
  return replies.map((r) => r.status);
}

describe('exact limits across instances', () => {
  it('three processes on one standalone Redis admit exactly limit + burst', async () => {
    const redis = await RedisServer.start();
    const gateways = await threeGateways({ url: redis.url });
    try {
      const before = standIn.startCalls().length;
      const statuses = await fire(gateways, 90);
      expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT + BURST);
      expect(statuses.filter((s) => s === 429)).toHaveLength(90 - LIMIT - BURST);
      expect(standIn.startCalls().length - before).toBe(LIMIT + BURST);
    } finally {
      await stopAll(gateways);
      await redis.stop();
    }
  });

  it('three processes on a 3-master Redis Cluster admit exactly limit + burst, all of an org\'s keys in one slot', async () => {
    const cluster = await RedisCluster.start();
    const gateways = await threeGateways({ cluster: { nodes: cluster.hosts } });
    try {
      const before = standIn.startCalls().length;
      const statuses = await fire(gateways, 90);
      expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT + BURST);
      expect(standIn.startCalls().length - before).toBe(LIMIT + BURST);

      const client = new Cluster(cluster.hosts);
      try {
        const key = 'rl:{org:Acme-Prod}:rate';
        expect(await client.exists(key)).toBe(1);
        const slots = await Promise.all(['rl:{org:Acme-Prod}:rate', 'rl:{org:Acme-Prod}:conc', 'rl:{org:Acme-Prod}:caller:x'].map((k) => client.cluster('KEYSLOT', k)));
        expect(new Set(slots).size).toBe(1);
      } finally {
        client.disconnect();
      }
    } finally {
      await stopAll(gateways);
      await cluster.stop();
    }
  });
});
