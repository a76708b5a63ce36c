// Per-org SnapLogic Basic credentials, resolved from secret references; reloaded on demand and on file change, keeping the last good set.
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { OrgConfig } from '../config/schema.js';
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
  orgs: Readonly<Record<string, OrgConfig>>,
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

/**
 * Resolves every org's credentials. Throws CredentialError listing every reference that cannot be
 * resolved. With `watchFiles`, a change to any referenced file triggers a reload (debounced 100 ms).
 */
export async function createCredentialStore(
  orgs: Readonly<Record<string, OrgConfig>>,
  deps: { env: Env; log: Logger; watchFiles?: boolean },
): Promise<CredentialStore> {
  const first = await resolveAll(orgs, deps.env);
  if (first.problems.length > 0) throw new CredentialError(first.problems);

  let current = new Map<string, OrgCredential>(
    [...first.values].map(([org, authorization]) => [org, { authorization, version: 1 }]),
  );
  let reloading: Promise<{ ok: boolean; problems: string[]; changed: string[] }> | undefined;

  async function reloadOnce(): Promise<{ ok: boolean; problems: string[]; changed: string[] }> {
    const next = await resolveAll(orgs, deps.env);
    if (next.problems.length > 0) {
      deps.log.warn('credential reload failed; keeping the last good credentials', { problems: next.problems });
      return { ok: false, problems: next.problems, changed: [] };
    }
    const changed: string[] = [];
    const replacement = new Map<string, OrgCredential>();
    for (const [org, authorization] of next.values) {
      const prev = current.get(org);
      if (prev?.authorization === authorization) {
        replacement.set(org, prev);
      } else {
        changed.push(org);
        replacement.set(org, { authorization, version: (prev?.version ?? 0) + 1 });
      }
    }
    current = replacement;
    deps.log.info('credentials reloaded', {
      changed: changed.map((org) => ({ org, version: replacement.get(org)?.version })),
    });
    return { ok: true, problems: [], changed };
  }

  const reload = (): Promise<{ ok: boolean; problems: string[]; changed: string[] }> => {
    // A reload already under way may have read files before the latest change: chain one more.
    const run = (reloading ?? Promise.resolve()).then(reloadOnce, reloadOnce);
    reloading = run.finally(() => {
      if (reloading === run) reloading = undefined;
    });
    return run;
  };

  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  if (deps.watchFiles) {
    const dirs = new Set<string>();
    for (const cfg of Object.values(orgs)) {
      for (const text of [cfg.username, cfg.password]) {
        const ref = parseSecretRef(text);
        // Watch the directory: secret mounts replace files by rename or symlink swap.
        if (ref?.kind === 'file') dirs.add(dirname(ref.path));
      }
    }
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          clearTimeout(timer);
          timer = setTimeout(() => void reload(), 100);
        });
        w.on('error', (err) => deps.log.warn('secret file watch failed', { dir, error: err.message }));
        watchers.push(w);
      } catch (err) {
        deps.log.warn('cannot watch secret directory; reload with SIGHUP', { dir, error: (err as Error).message });
      }
    }
  }

  return {
    get: (org) => current.get(org),
    reload,
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
