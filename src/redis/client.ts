// The Redis client for shared state: standalone, Sentinel or Cluster, with request-path-safe defaults.
import type { Socket } from 'node:net';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { parseRedisUrl, redisUrlProblems, type RedisTarget } from '../config/redis-url.js';
import type { RedisConfig } from '../config/schema.js';
import { parseSecretRef, resolveSecret } from '../config/secret-ref.js';
import type { Logger } from '../log.js';

export type RedisClient = Redis | Cluster;

/** A command did not answer within its deadline (Redis slow or hung; it may still have run). */
export class RedisDeadlineError extends Error {
  readonly code = 'ERR_SNAPGATE_REDIS_DEADLINE';
  constructor(ms: number) {
    super(`redis did not answer within ${ms} ms`);
    this.name = 'RedisDeadlineError';
  }
}

/**
 * Holds this connection's writes until the event loop's current turn ends, so the commands of all
 * the requests handled in one turn leave in one syscall. On a busy gateway a write per command
 * (each waking Redis) costs more than the rest of the rate-limit check. Standalone and Sentinel
 * connections only; a Cluster spreads commands over several sockets.
 */
export function batchWritesThisTurn(client: RedisClient): void {
  if (client instanceof Cluster || client.status !== 'ready') return;
  const stream = client.stream as Socket | undefined;
  if (stream === undefined || stream.writableCorked > 0) return;
  stream.cork();
  setImmediate(() => stream.uncork());
}

/**
 * Races a command against a deadline. When the timer fires, the rejection waits one turn of the
 * event loop (setImmediate runs after the poll phase), so a reply that already sits in the socket
 * while our own event loop was busy still wins: only Redis being slow counts as a timeout, not us.
 */
export function withDeadline<T>(command: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => setImmediate(() => reject(new RedisDeadlineError(ms))), ms);
    command.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

function standaloneTarget(url: string | undefined): RedisTarget {
  const parsed = parseRedisUrl(url ?? 'redis://127.0.0.1:6379');
  // Config validation refuses such a URL; the message names why, never the URL.
  if (!parsed.ok) throw new Error(`redis.url ${redisUrlProblems[parsed.problem]}`);
  return parsed.target;
}

/** How logs and errors name the deployment: host:port of each node, nothing else from the config. */
export function describeRedis(config: Pick<RedisConfig, 'url' | 'sentinel' | 'cluster'>): string {
  const nodes = (list: readonly { host: string; port: number }[]) => list.map((n) => `${n.host}:${n.port}`).join(',');
  if (config.cluster !== undefined) return `cluster ${nodes(config.cluster.nodes)}`;
  // The master group's name is no secret, and the operator needs it to tell deployments apart.
  if (config.sentinel !== undefined) return `sentinel ${config.sentinel.name} via ${nodes(config.sentinel.sentinels)}`;
  const parsed = parseRedisUrl(config.url ?? 'redis://127.0.0.1:6379');
  return parsed.ok ? parsed.target.where : 'redis (invalid url)';
}

type Env = Readonly<Record<string, string | undefined>>;

async function secretOf(ref: string | undefined, env: Env): Promise<string | undefined> {
  const parsed = ref !== undefined ? parseSecretRef(ref) : undefined;
  return parsed !== undefined ? resolveSecret(parsed, env) : undefined;
}

const reconnectDelay = (attempt: number): number => Math.min(attempt * 200, 2_000);

/** The options every connection gets, whatever the topology. */
function connectionOptions(config: RedisConfig, password: string | undefined): RedisOptions {
  return {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(config.tls ? { tls: {} } : {}),
    connectTimeout: config.connectTimeout,
    // Backstop only: the limiter and readiness race their commands with withDeadline(config.commandTimeout),
    // and the audit writer bounds each stream append by its ackTimeout.
    // Long enough that the answer of a script that missed its deadline during a stall is still
    // read, so what it took can be given back (see redis-limiter.ts). What can be pending meanwhile
    // is bounded: the breaker keeps calls off a stalled Redis, and audit appends are serialized.
    commandTimeout: Math.max(config.commandTimeout * 10, 300_000),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: reconnectDelay,
  };
}

/** The client for the configured topology; it starts connecting in the background. */
function connect(config: RedisConfig, common: RedisOptions, sentinelPassword: string | undefined): RedisClient {
  if (config.cluster !== undefined) {
    return new Cluster(config.cluster.nodes, {
      redisOptions: common,
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnectDelay,
      slotsRefreshTimeout: config.connectTimeout,
    });
  }
  if (config.sentinel !== undefined) {
    return new Redis({
      ...common,
      sentinels: config.sentinel.sentinels,
      name: config.sentinel.name,
      ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
      sentinelRetryStrategy: reconnectDelay,
    });
  }
  // The URL is taken apart here rather than handed to ioredis, which would also read options
  // (a password among them) from its query string.
  const target = standaloneTarget(config.url);
  return new Redis({
    ...common,
    host: target.host,
    port: target.port,
    db: target.db,
    ...(target.tls ? { tls: {} } : {}),
  });
}

/** Logs when the connection comes up and when it is lost, once each time; `where` is host:port only. */
function logConnection(client: RedisClient, where: string, log: Logger): void {
  let up = false;
  client.on('ready', () => {
    if (!up) log.info('redis connected', { redis: where });
    up = true;
  });
  client.on('error', (err: Error) => {
    if (up) log.warn('redis connection lost', { redis: where, error: err.message });
    up = false;
  });
}

/**
 * Creates the client. Commands never queue while Redis is away (no offline queue, no retries per
 * request), so a dead Redis fails a command at once; a hung one is cut off by `withDeadline` at
 * `commandTimeout` (ioredis's own timeout is only a backstop). Reconnection happens in the
 * background. Throws when the password reference cannot be resolved.
 */
export async function createRedisClient(config: RedisConfig, deps: { env: Env; log: Logger }): Promise<RedisClient> {
  const password = await secretOf(config.password, deps.env);
  const sentinelPassword = await secretOf(config.sentinel?.password, deps.env);
  const client = connect(config, connectionOptions(config, password), sentinelPassword);
  logConnection(client, describeRedis(config), deps.log);
  return client;
}

/**
 * Waits until the client is connected, for at most `timeoutMs`; false when it is not by then.
 * Start-up waits so the first requests are not decided by the fallback only because the
 * connection was still being made (with no offline queue, a command before `ready` fails).
 */
export async function waitForRedis(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return true;
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => client.once('ready', () => resolve(true))),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  return ready;
}
