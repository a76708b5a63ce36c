// Per-org SnapLogic Basic credentials, resolved from secret references; reloaded on demand and on file change,
// keeping the last good set.
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { OrgConfig } from '../config/schema.js';

/** What the store reads of an org's config: its secret references. */
type OrgSecrets = Pick<OrgConfig, 'username' | 'password'>;
import { parseSecretRef, resolveSecret, SecretResolutionError } from '../config/secret-ref.js';
import type { Logger } from '../log.js';

export interface OrgCredential {
  /** The ready-made `Basic …` header value. Never log it. */
  readonly authorization: string;
  /** Increases each time the org's resolved credential changes; safe to log and audit. */
  readonly version: number;
}

export interface CredentialStore {
  get(org: string): OrgCredential | undefined;
  /** Re-resolves every reference; on any failure keeps the current set and returns the problems. */
  reload(): Promise<{ ok: boolean; problems: string[]; changed: string[] }>;
  /** Stops watching secret files. */
  close(): void;
}

/** Start-up stops on this error; each problem names the org field and the reference, never a value. */
export class CredentialError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`cannot resolve SnapLogic credentials:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'CredentialError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

async function resolveAll(
  orgs: Readonly<Record<string, OrgSecrets>>,
  env: Env,
): Promise<{ values: Map<string, string>; problems: string[] }> {
  const values = new Map<string, string>();
  const problems: string[] = [];
  await Promise.all(
    Object.entries(orgs).map(async ([org, cfg]) => {
      const resolved: Partial<Record<'username' | 'password', string>> = {};
      for (const field of ['username', 'password'] as const) {
        const ref = parseSecretRef(cfg[field]);
        try {
          if (ref === undefined) throw new SecretResolutionError('(inline value)', 'is not a secret reference');
          resolved[field] = await resolveSecret(ref, env);
        } catch (err) {
          if (!(err instanceof SecretResolutionError)) throw err;
          problems.push(`orgs.${org}.${field}: ${err.message}`);
        }
      }
      if (resolved.username?.includes(':')) {
        problems.push(
          `orgs.${org}.username: ${cfg.username} contains ":", which HTTP Basic cannot carry in a user name`,
        );
        return;
      }
      if (resolved.username !== undefined && resolved.password !== undefined) {
        values.set(org, `Basic ${Buffer.from(`${resolved.username}:${resolved.password}`, 'utf8').toString('base64')}`);
      }
    }),
  );
  return { values, problems: problems.sort() };
}

type ReloadResult = Awaited<ReturnType<CredentialStore['reload']>>;

/**
 * The credentials after a reload: an org whose header is unchanged keeps its entry (and version);
 * a new or changed one gets the next version.
 */
function versioned(
  current: ReadonlyMap<string, OrgCredential>,
  values: ReadonlyMap<string, string>,
): { credentials: Map<string, OrgCredential>; changed: string[] } {
  const credentials = new Map<string, OrgCredential>();
  const changed: string[] = [];
  for (const [org, authorization] of values) {
    const prev = current.get(org);
    if (prev?.authorization === authorization) {
      credentials.set(org, prev);
    } else {
      changed.push(org);
      credentials.set(org, { authorization, version: (prev?.version ?? 0) + 1 });
    }
  }
  return { credentials, changed };
}

/** Runs `fn` once per call, each run starting after the one before it settled. */
function oneAtATime<T>(fn: () => Promise<T>): () => Promise<T> {
  let previous: Promise<unknown> = Promise.resolve();
  return () => {
    const run = previous.then(fn);
    previous = run.catch(() => undefined);
    return run;
  };
}

/** The directories of the file references: secret mounts replace files by rename or symlink swap. */
function secretDirs(orgs: Readonly<Record<string, OrgSecrets>>): Set<string> {
  const dirs = new Set<string>();
  for (const cfg of Object.values(orgs)) {
    for (const text of [cfg.username, cfg.password]) {
      const ref = parseSecretRef(text);
      if (ref?.kind === 'file') dirs.add(dirname(ref.path));
    }
  }
  return dirs;
}

/** Watches each secret directory; after a change, `onChange` runs once things are quiet for 100 ms. */
function watchSecretDirs(dirs: Iterable<string>, onChange: () => void, log: Logger): { close(): void } {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  for (const dir of dirs) {
    try {
      const w = watch(dir, { persistent: false }, () => {
        clearTimeout(timer);
        timer = setTimeout(onChange, 100);
      });
      w.on('error', (err) => log.warn('secret file watch failed', { dir, error: err.message }));
      watchers.push(w);
    } catch (err) {
      log.warn('cannot watch secret directory; reload with SIGHUP', { dir, error: (err as Error).message });
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}

/**
 * Resolves every org's credentials. Throws CredentialError listing every reference that cannot be
 * resolved. With `watchFiles`, a change to any referenced file triggers a reload (debounced 100 ms).
 */
export async function createCredentialStore(
  orgs: Readonly<Record<string, OrgSecrets>>,
  deps: { env: Env; log: Logger; watchFiles?: boolean },
): Promise<CredentialStore> {
  const first = await resolveAll(orgs, deps.env);
  if (first.problems.length > 0) throw new CredentialError(first.problems);
  let current = new Map<string, OrgCredential>(
    [...first.values].map(([org, authorization]) => [org, { authorization, version: 1 }]),
  );

  async function reloadOnce(): Promise<ReloadResult> {
    const next = await resolveAll(orgs, deps.env);
    if (next.problems.length > 0) {
      deps.log.warn('credential reload failed; keeping the last good credentials', { problems: next.problems });
      return { ok: false, problems: next.problems, changed: [] };
    }
    const { credentials, changed } = versioned(current, next.values);
    current = credentials;
    deps.log.info('credentials reloaded', {
      changed: changed.map((org) => ({ org, version: credentials.get(org)?.version })),
    });
    return { ok: true, problems: [], changed };
  }

  // A reload already under way may have read files before the latest change: each call runs once more, after it.
  const reload = oneAtATime(reloadOnce);
  const watching = deps.watchFiles ? watchSecretDirs(secretDirs(orgs), () => void reload(), deps.log) : undefined;
  return {
    get: (org) => current.get(org),
    reload,
    close: () => watching?.close(),
  };
}
