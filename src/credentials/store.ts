// What snapgate holds to authenticate to SnapLogic: per org and identity the Basic credential sets (a current and,
// while a password is rotated, a next one), and the signing keys of the JWTs it mints. Resolved from secret
// references, reloaded on demand and on file change, keeping the last good set whole.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { defaultIdentity, type OrgConfig, type SigningConfig } from '../config/schema.js';
import { parseSecretRef, resolveSecret, SecretResolutionError, type SecretRef } from '../config/secret-ref.js';
import type { Logger } from '../log.js';
import { createKeySet, SigningKeyError, type KeySet, type KeyState, type SigningAlg } from './signing-keys.js';

/** What the store reads of an org's config: its credential type and secret references. */
export type OrgSecrets = Pick<OrgConfig, 'username' | 'password'> &
  Partial<Pick<OrgConfig, 'credentials' | 'nextPassword' | 'identities'>>;

/** One identity's Basic credentials, as ready-made header values. Never log them. */
export interface BasicCredential {
  /** The `Basic …` header sent first. */
  readonly authorization: string;
  /** The `Basic …` header of the next password, tried once when SnapLogic answers 401 to `authorization`. */
  readonly next?: string;
  /** Increases each time this identity's resolved credentials change; safe to log and audit. */
  readonly version: number;
  /** True once the next password worked and is sent first (until the config changes). */
  readonly promoted: boolean;
}

/** A signing key as metrics and logs may see it: never the key. */
export interface SigningKeyInfo {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly state: KeyState;
  /** When the key was made, as far as snapgate can tell: its file's mtime, else when this process first loaded it. */
  readonly since: number;
}

export interface CredentialStore {
  /** An org identity's Basic credentials (`default` is the org's own); undefined for a jwt org. */
  basic(org: string, identity?: string): BasicCredential | undefined;
  /** The signing keys, when `signing` is configured. */
  keys(): KeySet | undefined;
  keyInfo(): readonly SigningKeyInfo[];
  /** The next password of this identity worked where the current one got 401: send it first from now on. */
  promote(org: string, identity: string, version: number): void;
  /** Re-resolves every reference; on any failure keeps the current set and returns the problems. */
  reload(): Promise<{ ok: boolean; problems: string[]; changed: string[] }>;
  /** Stops watching secret files. */
  close(): void;
}

/** Start-up stops on this error; each problem names the config field and the reference, never a value. */
export class CredentialError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`cannot resolve SnapLogic credentials:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'CredentialError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export interface CredentialSources {
  readonly orgs: Readonly<Record<string, OrgSecrets>>;
  readonly signing?: Pick<SigningConfig, 'keys'>;
}

/** One Basic set to resolve: where its references are in config (for messages) and the references. */
interface BasicRefs {
  readonly org: string;
  readonly identity: string;
  readonly at: string;
  readonly username: string;
  readonly password: string;
  readonly nextPassword?: string;
}

function basicRefs(orgs: CredentialSources['orgs']): BasicRefs[] {
  const out: BasicRefs[] = [];
  for (const [org, cfg] of Object.entries(orgs)) {
    if ((cfg.credentials ?? 'basic') !== 'basic') continue;
    if (cfg.username !== undefined && cfg.password !== undefined) {
      out.push({ org, identity: defaultIdentity, at: `orgs.${org}`, ...pickRefs(cfg) });
    }
    (cfg.identities ?? []).forEach((identity, i) => {
      if (identity.name === undefined || identity.username === undefined || identity.password === undefined) return;
      out.push({ org, identity: identity.name, at: `orgs.${org}.identities.${i}`, ...pickRefs(identity) });
    });
  }
  return out;
}

function pickRefs(cfg: { username?: string; password?: string; nextPassword?: string }) {
  return {
    username: cfg.username!,
    password: cfg.password!,
    ...(cfg.nextPassword !== undefined ? { nextPassword: cfg.nextPassword } : {}),
  };
}

const slot = (org: string, identity: string) => `${org}\u0000${identity}`;

async function resolveRef(text: string, env: Env): Promise<string> {
  const ref = parseSecretRef(text);
  if (ref === undefined) throw new SecretResolutionError('(inline value)', 'is not a secret reference');
  return resolveSecret(ref, env);
}

const basicHeader = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;

interface Resolved {
  /** Per identity slot: the current and next headers. */
  readonly basic: Map<string, { authorization: string; next?: string }>;
  readonly keys: KeySet | undefined;
  /** Per key thumbprint: its file's mtime, when it came from a file. */
  readonly fileTimes: Map<string, number>;
}

async function resolveBasic(refs: BasicRefs, env: Env, problems: string[]) {
  const values: Partial<Record<'username' | 'password' | 'nextPassword', string>> = {};
  for (const field of ['username', 'password', 'nextPassword'] as const) {
    const text = refs[field];
    if (text === undefined) continue;
    try {
      values[field] = await resolveRef(text, env);
    } catch (err) {
      if (!(err instanceof SecretResolutionError)) throw err;
      problems.push(`${refs.at}.${field}: ${err.message}`);
    }
  }
  if (values.username?.includes(':')) {
    problems.push(`${refs.at}.username: ${refs.username} contains ":", which HTTP Basic cannot carry in a user name`);
    return undefined;
  }
  if (values.username === undefined || values.password === undefined) return undefined;
  if (refs.nextPassword !== undefined && values.nextPassword === undefined) return undefined;
  return {
    authorization: basicHeader(values.username, values.password),
    ...(values.nextPassword !== undefined ? { next: basicHeader(values.username, values.nextPassword) } : {}),
  };
}

async function resolveKeys(
  signing: CredentialSources['signing'],
  env: Env,
  problems: string[],
): Promise<{ keys: KeySet | undefined; fileTimes: Map<string, number> }> {
  const fileTimes = new Map<string, number>();
  if (signing === undefined) return { keys: undefined, fileTimes };
  const inputs: { secret: string; state: KeyState; kid?: string; ref: SecretRef | undefined }[] = [];
  let missing = false;
  for (const [i, key] of signing.keys.entries()) {
    try {
      const secret = await resolveRef(key.key, env);
      inputs.push({
        secret,
        state: key.state,
        ...(key.kid !== undefined ? { kid: key.kid } : {}),
        ref: parseSecretRef(key.key),
      });
    } catch (err) {
      if (!(err instanceof SecretResolutionError)) throw err;
      problems.push(`signing.keys.${i}.key: ${err.message}`);
      missing = true;
    }
  }
  if (missing) return { keys: undefined, fileTimes };
  try {
    const keys = createKeySet(inputs, 'signing.keys');
    await Promise.all(
      keys.keys.map(async (k, i) => {
        const ref = inputs[i]!.ref;
        if (ref?.kind !== 'file') return;
        const mtime = await stat(ref.path).then(
          (s) => s.mtimeMs,
          () => undefined,
        );
        if (mtime !== undefined) fileTimes.set(k.thumbprint, mtime);
      }),
    );
    return { keys, fileTimes };
  } catch (err) {
    if (!(err instanceof SigningKeyError)) throw err;
    // createKeySet names keys as signing.keys[i]; config paths read signing.keys.i.
    problems.push(...err.problems.map((p) => p.replace(/^signing\.keys\[(\d+)\]/, 'signing.keys.$1')));
    return { keys: undefined, fileTimes };
  }
}

async function resolveAll(sources: CredentialSources, env: Env): Promise<{ resolved: Resolved; problems: string[] }> {
  const problems: string[] = [];
  const basic = new Map<string, { authorization: string; next?: string }>();
  await Promise.all(
    basicRefs(sources.orgs).map(async (refs) => {
      const value = await resolveBasic(refs, env, problems);
      if (value !== undefined) basic.set(slot(refs.org, refs.identity), value);
    }),
  );
  const { keys, fileTimes } = await resolveKeys(sources.signing, env, problems);
  return { resolved: { basic, keys, fileTimes }, problems: problems.sort() };
}

type ReloadResult = Awaited<ReturnType<CredentialStore['reload']>>;

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
function secretDirs(sources: CredentialSources): Set<string> {
  const dirs = new Set<string>();
  const texts = basicRefs(sources.orgs).flatMap((r) => [r.username, r.password, r.nextPassword]);
  texts.push(...(sources.signing?.keys ?? []).map((k) => k.key));
  for (const text of texts) {
    const ref = text === undefined ? undefined : parseSecretRef(text);
    if (ref?.kind === 'file') dirs.add(dirname(ref.path));
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

interface Held {
  readonly authorization: string;
  readonly next?: string;
  readonly version: number;
  /** What basic() answers while the next password is not promoted: made once, not per call. */
  readonly asIs: BasicCredential;
}

function heldOf(value: { authorization: string; next?: string }, version: number): Held {
  const base = {
    authorization: value.authorization,
    ...(value.next !== undefined ? { next: value.next } : {}),
    version,
  };
  return { ...base, asIs: Object.freeze({ ...base, promoted: false }) };
}

/** The sets after a reload: an identity whose headers are unchanged keeps its version; a changed one gets the next. */
function versioned(
  current: ReadonlyMap<string, Held>,
  values: ReadonlyMap<string, { authorization: string; next?: string }>,
): { held: Map<string, Held>; changed: string[] } {
  const held = new Map<string, Held>();
  const changed: string[] = [];
  for (const [key, value] of values) {
    const prev = current.get(key);
    if (prev !== undefined && prev.authorization === value.authorization && prev.next === value.next) {
      held.set(key, prev);
    } else {
      changed.push(key);
      held.set(key, heldOf(value, (prev?.version ?? 0) + 1));
    }
  }
  return { held, changed };
}

/**
 * Resolves every org's credentials and the signing keys. Throws CredentialError listing every reference that
 * cannot be resolved and every key that cannot sign. With `watchFiles`, a change to any referenced file triggers a
 * reload (debounced 100 ms).
 */
export async function createCredentialStore(
  initial: CredentialSources,
  deps: {
    env: Env;
    log: Logger;
    watchFiles?: boolean;
    now?: () => number;
    /** Told the result of every reload (a signal, a file change), for snapgate_credential_reloads_total. */
    onReload?: (ok: boolean) => void;
    /**
     * Re-reads the signing keys' list (references, states, kids) from the config file on each reload, so that a key
     * rotation (next → active → retired) needs no restart; a config that does not load fails the reload.
     */
    readSigning?: { path: string; read(): Promise<Pick<SigningConfig, 'keys'> | undefined> };
  },
): Promise<CredentialStore> {
  const now = deps.now ?? Date.now;
  let sources = initial;
  const first = await resolveAll(sources, deps.env);
  if (first.problems.length > 0) throw new CredentialError(first.problems);
  let held = new Map<string, Held>([...first.resolved.basic].map(([k, v]) => [k, heldOf(v, 1)]));
  let keys = first.resolved.keys;
  /** Per key thumbprint: when this process first loaded it (for keys that did not come from a file). */
  const firstSeen = new Map<string, number>();
  let fileTimes = first.resolved.fileTimes;
  const noteKeys = () => {
    for (const k of keys?.keys ?? []) if (!firstSeen.has(k.thumbprint)) firstSeen.set(k.thumbprint, now());
  };
  noteKeys();
  /** Identity slots whose next password was promoted, with the version it was promoted at. */
  const promoted = new Map<string, number>();

  async function reloadOnce(): Promise<ReloadResult> {
    let candidate = sources;
    if (deps.readSigning !== undefined && sources.signing !== undefined) {
      try {
        const signing = await deps.readSigning.read();
        if (signing === undefined) throw new Error('has no signing section any more; keep it while orgs use jwt');
        candidate = { ...sources, signing: { keys: signing.keys } };
      } catch (err) {
        const problems = [`${deps.readSigning.path}: ${err instanceof Error ? err.message : String(err)}`];
        deps.log.warn('credential reload failed; keeping the last good credentials', { problems });
        return { ok: false, problems, changed: [] };
      }
    }
    const next = await resolveAll(candidate, deps.env);
    if (next.problems.length > 0) {
      deps.log.warn('credential reload failed; keeping the last good credentials', { problems: next.problems });
      return { ok: false, problems: next.problems, changed: [] };
    }
    sources = candidate;
    const before = keys;
    const { held: updated, changed } = versioned(held, next.resolved.basic);
    held = updated;
    keys = next.resolved.keys;
    fileTimes = next.resolved.fileTimes;
    noteKeys();
    const orgsChanged = [...new Set(changed.map((k) => k.split('\u0000')[0]!))];
    deps.log.info('credentials reloaded', {
      changed: changed.map((k) => {
        const [org, identity] = k.split('\u0000');
        return { org, identity, version: held.get(k)?.version };
      }),
      ...(keys !== undefined ? { signingKeys: keys.keys.map((k) => ({ kid: k.kid, state: k.state })) } : {}),
    });
    if (before !== undefined && keys !== undefined && before.active.thumbprint !== keys.active.thumbprint) {
      deps.log.info('signing key rotated: new tokens are signed with the active key', {
        previous: before.active.kid,
        active: keys.active.kid,
      });
    }
    return { ok: true, problems: [], changed: orgsChanged };
  }

  // A reload already under way may have read files before the latest change: each call runs once more, after it.
  const reload = oneAtATime(async () => {
    const result = await reloadOnce();
    deps.onReload?.(result.ok);
    return result;
  });
  const dirs = secretDirs(sources);
  if (deps.readSigning !== undefined && sources.signing !== undefined) dirs.add(dirname(deps.readSigning.path));
  const watching = deps.watchFiles ? watchSecretDirs(dirs, () => void reload(), deps.log) : undefined;
  return {
    basic(org, identity = defaultIdentity) {
      const key = slot(org, identity);
      const h = held.get(key);
      if (h === undefined) return undefined;
      if (h.next !== undefined && promoted.get(key) === h.version) {
        return { authorization: h.next, version: h.version, promoted: true };
      }
      return h.asIs;
    },
    keys: () => keys,
    keyInfo: () =>
      (keys?.keys ?? []).map((k) => ({
        kid: k.kid,
        alg: k.alg,
        state: k.state,
        since: fileTimes.get(k.thumbprint) ?? firstSeen.get(k.thumbprint) ?? now(),
      })),
    promote(org, identity, version) {
      const key = slot(org, identity);
      if (held.get(key)?.version === version) promoted.set(key, version);
    },
    reload,
    close: () => watching?.close(),
  };
}
