// The Redis client for shared state: standalone, Sentinel or Cluster, with request-path-safe defaults.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config/schema.js';
import { parseSecretRef, resolveSecret } from '../config/secret-ref.js';
import type { Logger } from '../log.js';

export type RedisClient = Redis | Cluster;

/**
 * Creates the client. Commands never queue while Redis is away (no offline queue, no retries per
 * request) and time out after `commandTimeout`, so a dead Redis costs a request milliseconds, not
 * seconds; reconnection happens in the background. Throws when the password reference cannot be resolved.
 */
export async function createRedisClient(
  config: RedisConfig,
  deps: { env: Readonly<Record<string, string | undefined>>; log: Logger },
): Promise<RedisClient> {
  const secret = async (ref: string | undefined) => {
    const parsed = ref !== undefined ? parseSecretRef(ref) : undefined;
    return parsed !== undefined ? resolveSecret(parsed, deps.env) : undefined;
  };
  const password = await secret(config.password);
  const common: RedisOptions = {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(config.tls ? { tls: {} } : {}),
    connectTimeout: config.connectTimeout,
    commandTimeout: config.commandTimeout,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
  };

  let client: RedisClient;
  let where: string;
  if (config.cluster !== undefined) {
    where = `cluster ${config.cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
    client = new Cluster(config.cluster.nodes, {
      redisOptions: common,
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
      slotsRefreshTimeout: config.connectTimeout,
    });
  } else if (config.sentinel !== undefined) {
    where = `sentinel ${config.sentinel.name}`;
    const sentinelPassword = await secret(config.sentinel.password);
    client = new Redis({
      ...common,
      sentinels: config.sentinel.sentinels,
      name: config.sentinel.name,
      ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
    });
  } else {
    where = config.url ?? 'redis';
    client = new Redis(config.url ?? 'redis://127.0.0.1:6379', common);
  }

  let up = false;
  client.on('ready', () => {
    if (!up) deps.log.info('redis connected', { redis: where });
    up = true;
  });
  client.on('error', (err: Error) => {
    if (up) deps.log.warn('redis connection lost', { redis: where, error: err.message });
    up = false;
  });
  return client;
}
