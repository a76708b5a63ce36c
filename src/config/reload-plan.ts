// What a config reload may change: the fields read per call are applied, the ones a running process cannot change
// (listeners, the Redis connection, the audit sinks, …) are named and kept. Pure: no I/O, no zod, no yaml.
import { createHash } from 'node:crypto';
import type { Config } from './schema.js';

/**
 * Fields that need a restart, as path prefixes. Everything else (auth, policy, orgs, signing issuer, lifetime and
 * keys, log.level, audit.reads, server.maxBodyBytes and bodyTimeout) is applied by a reload.
 */
export const restartOnlyPaths: readonly string[] = [
  'server.host',
  'server.port',
  'server.workers',
  'server.instanceId',
  'server.shutdownTimeout',
  'server.headersTimeout',
  'server.requestTimeout',
  'server.keepAliveTimeout',
  'admin',
  'redis',
  'upstream',
  'runLock',
  'idempotency',
  'rateLimiting',
  'audit.stdout',
  'audit.sinks',
  'audit.onFailure',
  'audit.spoolDir',
  'audit.ackTimeout',
  'audit.maxQueue',
  'audit.closeTimeout',
  'audit.allowUnaudited',
  'audit.denials',
  'audit.checkpoints',
  'signing.jwks',
];

/** A short, stable hash of a config (keys sorted; secret references, never secret values): equal configs, equal hash. */
export function configHash(config: Config): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Dotted paths of the leaves that differ between `a` and `b` (arrays compare whole). */
export function changedPaths(a: unknown, b: unknown, prefix = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => changedPaths(a[k], b[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  return canonicalJson(a ?? null) === canonicalJson(b ?? null) ? [] : [prefix === '' ? '(root)' : prefix];
}

const underRestartOnly = (path: string): boolean =>
  restartOnlyPaths.some((p) => path === p || path.startsWith(`${p}.`));

export interface ReloadPlan {
  /** The config to run: the new one, with every restart-only field kept as it runs now. */
  readonly effective: Config;
  /** Changed fields that apply now. */
  readonly applied: readonly string[];
  /** Changed fields that need a restart: left as they run now. */
  readonly needRestart: readonly string[];
}

/** How `next` applies over the running config `current`. */
export function planReload(current: Config, next: Config): ReloadPlan {
  const changed = changedPaths(current, next);
  const needRestart = changed.filter(underRestartOnly);
  const applied = changed.filter((p) => !underRestartOnly(p));
  const effective: { -readonly [K in keyof Config]: Config[K] } = structuredClone(next);
  effective.server = keep(next.server, current.server, restartOnlyKeys('server'));
  effective.audit = keep(next.audit, current.audit, restartOnlyKeys('audit'));
  for (const section of ['admin', 'redis', 'upstream', 'runLock', 'idempotency', 'rateLimiting'] as const) {
    if (current[section] === undefined) delete effective[section];
    else (effective as Record<string, unknown>)[section] = current[section];
  }
  if (next.signing !== undefined) {
    // Where the JWKS is served is set at start-up; without a listener of its own, it is on the callers' port.
    const jwks = current.signing?.jwks ?? { ...next.signing.jwks };
    if (current.signing === undefined) delete (jwks as { port?: number }).port;
    effective.signing = { ...next.signing, jwks };
  }
  return { effective, applied, needRestart };
}

function restartOnlyKeys(section: string): string[] {
  return restartOnlyPaths.filter((p) => p.startsWith(`${section}.`)).map((p) => p.slice(section.length + 1));
}

/** `next` with `keys` as they are in `current` (absent where `current` has none). */
function keep<T extends object>(next: T, current: T, keys: readonly string[]): T {
  const out: Record<string, unknown> = { ...(next as Record<string, unknown>) };
  for (const k of keys) {
    if (Object.hasOwn(current, k) && (current as Record<string, unknown>)[k] !== undefined) {
      out[k] = (current as Record<string, unknown>)[k];
    } else delete out[k];
  }
  return out as T;
}
