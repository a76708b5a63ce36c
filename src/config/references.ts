// Finds every secret reference (and key file) a config document names and checks that each can be resolved now,
// as start-up would: env vars set and non-empty, files readable regular files, not empty; signing keys usable.
import { createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { checkpointSigner, CheckpointKeyError, parsePublicKeys } from '../audit/checkpoint.js';
import { loadJwksFile } from '../auth/key-source.js';
import { createKeySet, SigningKeyError } from '../credentials/signing-keys.js';
import { parseSecretRef, type SecretRef } from './secret-ref.js';

type Env = Readonly<Record<string, string | undefined>>;

/** One place in the config that names a secret or a key file. */
export interface ReferenceSite {
  /** The config path, e.g. `orgs.Acme-Prod.password`. */
  readonly path: string;
  /** The reference as written (`env:NAME`, `file:/path`); never a value. */
  readonly ref: string;
  readonly kind: 'secret' | 'signing-key' | 'checkpoint-key' | 'checkpoint-public-key' | 'public-key' | 'jwks-file';
}

/** What checking the references found. `values` holds what they resolved to, only so output can be scrubbed. */
export interface ReferenceCheck {
  readonly sites: readonly ReferenceSite[];
  /** `path: message`, naming the reference and never its value. */
  readonly problems: readonly string[];
  /** Resolved secret values (never to be printed: callers remove them from anything they print). */
  readonly values: readonly string[];
}

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * Every reference in the (raw, env-overridden) document, read defensively: a field of the wrong type is the
 * schema's problem, and inline values are not references (the schema refuses them where a secret belongs).
 */
export function referenceSites(doc: unknown): ReferenceSite[] {
  const sites: ReferenceSite[] = [];
  const add = (path: string, value: unknown, kind: ReferenceSite['kind']) => {
    if (typeof value === 'string' && parseSecretRef(value) !== undefined) sites.push({ path, ref: value, kind });
  };
  const root = asRecord(doc);
  const redis = asRecord(root?.redis);
  add('redis.password', redis?.password, 'secret');
  add('redis.sentinel.password', asRecord(redis?.sentinel)?.password, 'secret');
  asList(asRecord(root?.auth)?.issuers).forEach((entry, j) => {
    const issuer = asRecord(entry);
    add(`auth.issuers.${j}.secret`, issuer?.secret, 'secret');
    if (typeof issuer?.publicKey === 'string' && issuer.publicKey.startsWith('file:')) {
      add(`auth.issuers.${j}.publicKey`, issuer.publicKey, 'public-key');
    }
    if (typeof issuer?.jwksFile === 'string' && issuer.jwksFile !== '') {
      // jwksFile is a plain path, not a reference; checked the same way.
      const ref = `file:${issuer.jwksFile}`;
      if (parseSecretRef(ref) !== undefined) sites.push({ path: `auth.issuers.${j}.jwksFile`, ref, kind: 'jwks-file' });
    }
  });
  const checkpoints = asRecord(asRecord(root?.audit)?.checkpoints);
  add('audit.checkpoints.key', checkpoints?.key, 'checkpoint-key');
  add('audit.checkpoints.sink.password', asRecord(checkpoints?.sink)?.password, 'secret');
  asList(checkpoints?.previousKeys).forEach((path, i) => {
    // Plain paths of public keys (not secrets), read as start-up reads them.
    if (typeof path === 'string' && parseSecretRef(`file:${path}`) !== undefined) {
      sites.push({ path: `audit.checkpoints.previousKeys.${i}`, ref: `file:${path}`, kind: 'checkpoint-public-key' });
    }
  });
  asList(asRecord(root?.signing)?.keys).forEach((entry, i) =>
    add(`signing.keys.${i}.key`, asRecord(entry)?.key, 'signing-key'),
  );
  for (const [name, value] of Object.entries(asRecord(root?.orgs) ?? {})) {
    const org = asRecord(value);
    for (const field of ['username', 'password', 'nextPassword']) add(`orgs.${name}.${field}`, org?.[field], 'secret');
    asList(org?.identities).forEach((entry, i) => {
      const identity = asRecord(entry);
      for (const field of ['username', 'password', 'nextPassword']) {
        add(`orgs.${name}.identities.${i}.${field}`, identity?.[field], 'secret');
      }
    });
  }
  return sites;
}

/** A secret, a key or a JWKS is a few KB; a bigger file is the wrong one, and is not read into memory. */
const MAX_SECRET_FILE_BYTES = 1024 * 1024;

/** Reads a reference's value, or says why it cannot be used (naming the reference, never a value). */
async function resolve(ref: SecretRef, env: Env): Promise<{ value: string } | { problem: string }> {
  if (ref.kind === 'env') {
    const value = env[ref.name];
    if (value === undefined) return { problem: `refers to the environment variable ${ref.name}, which is not set` };
    if (value === '') return { problem: `refers to the environment variable ${ref.name}, which is empty` };
    return { value };
  }
  const file = (what: string) => ({ problem: `refers to the file ${ref.path}, which ${what}` });
  let info;
  try {
    info = await stat(ref.path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return file('does not exist');
    if (code === 'EACCES') return file('cannot be reached (a directory on the way is not searchable)');
    return file(`cannot be read (${code ?? 'error'})`);
  }
  if (!info.isFile()) return file(`is ${info.isDirectory() ? 'a directory' : 'not a regular file'}`);
  if (info.size > MAX_SECRET_FILE_BYTES) {
    return file(`is larger than ${MAX_SECRET_FILE_BYTES} bytes; it should hold one value`);
  }
  let text: string;
  try {
    text = await readFile(ref.path, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    return file(`cannot be read (${code === 'EACCES' ? 'permission denied for this user' : (code ?? 'error')})`);
  }
  // As resolveSecret reads it: one trailing newline is not part of the value, and nothing else is trimmed.
  const value = text.replace(/\r?\n$/, '');
  if (value === '') return file('is empty');
  return { value };
}

/** The key's own problems (not its state: the schema counts the active keys), with its config path. */
function signingKeyProblems(path: string, secret: string, kid: string | undefined): string[] | { kid: string } {
  try {
    const set = createKeySet([{ secret, state: 'active', ...(kid !== undefined ? { kid } : {}) }], 'key');
    return { kid: set.active.kid };
  } catch (err) {
    if (!(err instanceof SigningKeyError)) throw err;
    // createKeySet names the one key "key[0] (kid …)"; the config path says which entry it is.
    return err.problems.map((p) => `${path}: ${p.replace(/^key\[0\](?: \(kid "[^"]*"\))?: /, '')}`);
  }
}

/**
 * Checks every reference in `doc` against `env` and the file system. Signing keys must parse as private keys
 * snapgate can sign with (RS256 with RSA ≥ 2048 bits, ES256 on P-256) and have distinct kids; a publicKey file
 * must hold a public key and a jwksFile a JWKS. Never throws for a bad reference; never puts a value in a problem.
 */
export async function checkReferences(doc: unknown, env: Env): Promise<ReferenceCheck> {
  const sites = referenceSites(doc);
  const problems: string[] = [];
  const values: string[] = [];
  const kids = new Map<string, string>();
  const keyEntries = asList(asRecord(asRecord(doc)?.signing)?.keys);
  for (const site of sites) {
    const ref = parseSecretRef(site.ref)!;
    const resolved = await resolve(ref, env);
    if ('problem' in resolved) {
      problems.push(`${site.path}: ${resolved.problem}`);
      continue;
    }
    const value = resolved.value;
    if (site.kind === 'secret' || site.kind === 'signing-key' || site.kind === 'checkpoint-key') values.push(value);
    if (site.kind === 'checkpoint-key') {
      try {
        checkpointSigner(value);
      } catch (err) {
        if (!(err instanceof CheckpointKeyError)) throw err;
        problems.push(`${site.path}: ${site.ref} ${err.message}`);
      }
    }
    if (
      site.kind === 'secret' &&
      /\.username$/.test(site.path) &&
      site.path.startsWith('orgs.') &&
      value.includes(':')
    ) {
      problems.push(`${site.path}: ${site.ref} holds a ":", which HTTP Basic cannot carry in a user name`);
    }
    if (site.kind === 'signing-key') {
      const index = Number(/^signing\.keys\.(\d+)\.key$/.exec(site.path)?.[1]);
      const kidValue = asRecord(keyEntries[index])?.kid;
      const result = signingKeyProblems(site.path, value, typeof kidValue === 'string' ? kidValue : undefined);
      if (Array.isArray(result)) problems.push(...result);
      else {
        const first = kids.get(result.kid);
        if (first !== undefined) {
          problems.push(
            `signing.keys.${index}: kid "${result.kid}" is already used by ${first}; give each key its own kid`,
          );
        } else kids.set(result.kid, `signing.keys.${index}`);
      }
    }
    if (site.kind === 'checkpoint-public-key') {
      try {
        parsePublicKeys(value);
      } catch (err) {
        const why = err instanceof CheckpointKeyError ? err.message : 'holds no usable Ed25519 public key';
        problems.push(`${site.path}: ${site.ref.slice(5)} ${why}`);
      }
    }
    if (site.kind === 'public-key') {
      try {
        createPublicKey(value);
      } catch {
        problems.push(`${site.path}: ${site.ref} does not hold a PEM public key`);
      }
    }
    if (site.kind === 'jwks-file') {
      try {
        await loadJwksFile(ref.kind === 'file' ? ref.path : '');
      } catch (err) {
        const why = err instanceof Error ? err.message.replace(/^JWKS file \S+ /, '') : 'cannot be read';
        problems.push(`${site.path}: ${site.ref.slice(5)} is not a usable JWKS (${why})`);
      }
    }
  }
  return { sites, problems, values };
}
