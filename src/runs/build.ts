// The run lock and the Idempotency-Key store from config: shared through Redis when it is configured (each org's
// onRedisError mode deciding during an outage), this process's alone otherwise.
import { type Config } from '../config/schema.js';
import type { RedisClient } from '../redis/client.js';
import { longestCallMs, type UpstreamOrg } from '../upstream/orgs.js';
import {
  createLocalIdempotencyStore,
  createModalIdempotencyStore,
  createRedisIdempotencyStore,
  type ModalIdempotencyStore,
} from './idempotency.js';
import type { RunGuardDeps, RunGuardOrg } from './run-guard.js';
import { createLocalRunLock, createModalRunLock, createRedisRunLock, type ModalRunLock } from './run-lock.js';

/**
 * Each org's guard settings: its Redis mode, whether it requires a key, and how long a call to SnapLogic can take
 * once the guard has let it go: a wait for a pooled connection (upstream.queueTimeout) plus the call itself (the
 * org's connect + headers + body timeouts); and the audit attempt's acknowledgement before it (audit.ackTimeout).
 */
export function runGuardOrgs(
  config: Pick<Config, 'orgs' | 'upstream' | 'audit'>,
  orgs: ReadonlyMap<string, UpstreamOrg>,
): ReadonlyMap<string, RunGuardOrg> {
  const out = new Map<string, RunGuardOrg>();
  for (const [name, cfg] of Object.entries(config.orgs)) {
    const upstream = orgs.get(name);
    if (upstream === undefined) continue;
    out.set(name, {
      onRedisError: cfg.onRedisError,
      requireIdempotencyKey: cfg.requireIdempotencyKey,
      callMs: config.upstream.queueTimeout + longestCallMs(upstream.timeouts),
      attemptMs: config.audit.ackTimeout,
    });
  }
  return out;
}

/** The lock and the store the run guard uses; `shared` is false without Redis (every instance then has its own). */
export function createRunCoordination(
  config: Pick<Config, 'idempotency' | 'redis' | 'runLock'>,
  redis: RedisClient | undefined,
): Pick<RunGuardDeps, 'lock' | 'idempotency' | 'shared' | 'holdAfterResumeMs'> {
  const holdAfterResumeMs = config.runLock.holdAfterResume;
  const options = { retentionMs: config.idempotency.retention, bodyCapBytes: config.idempotency.maxBodyBytes };
  const localLock = createLocalRunLock();
  const localStore = createLocalIdempotencyStore(options);
  if (redis === undefined) {
    const lock: ModalRunLock = {
      acquire: (org, ruuid, leaseMs, _mode, purpose) => localLock.acquire(org, ruuid, leaseMs, purpose),
    };
    const idempotency: ModalIdempotencyStore = {
      begin: (scope, fingerprint, leaseMs) => localStore.begin(scope, fingerprint, leaseMs),
      complete: (token, answer) => localStore.complete(token, answer),
      unknown: (token) => localStore.unknown(token),
      abandon: (token) => localStore.abandon(token),
    };
    return { lock, idempotency, shared: false, holdAfterResumeMs };
  }
  // A write waits on Redis up to runLock.commandTimeout (redis.commandTimeout unless set), then the org's mode decides.
  const deadlineMs = config.runLock.commandTimeout ?? config.redis?.commandTimeout;
  return {
    lock: createModalRunLock({ redis: createRedisRunLock(redis, { deadlineMs }), local: localLock }),
    idempotency: createModalIdempotencyStore({
      redis: createRedisIdempotencyStore(redis, { ...options, deadlineMs }),
      local: localStore,
    }),
    shared: true,
    holdAfterResumeMs,
  };
}
