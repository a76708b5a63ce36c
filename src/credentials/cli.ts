// `snapgate keys generate` (a new signing key, written 0600, and the config lines that publish it) and `snapgate
// credentials check` (each org identity's credential tried against SnapLogic). Neither ever prints a secret.
import { generateKeyPairSync } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { configSchema, type Config } from '../config/schema.js';
import { parseSecretRef } from '../config/secret-ref.js';
import { createLogger } from '../log.js';
import { createForwarder } from '../upstream/forwarder.js';
import { keyIdOf } from '../audit/checkpoint.js';
import { checkCredentials, passes, type CredentialCheck } from './check.js';
import { generateSigningKey, publicJwkFields, signingAlgs, type PublicJwk, type SigningAlg } from './signing-keys.js';
import { createCredentialStore, CredentialError, type CredentialStore } from './store.js';

export interface CredentialsCliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Where a relative --out is resolved from. */
  cwd: string;
}

/** Exit code for a config or credentials that cannot be used (sysexits EX_CONFIG), as `serve` uses. */
const EX_CONFIG = 78;

export const keysUsage = `usage: snapgate keys generate --out FILE [--alg ES256|RS256|Ed25519] [--kid KID]

  Writes a new PKCS#8 private key to FILE (mode 0600; an existing FILE is never overwritten) and prints the lines
  to add under signing.keys, then the key's public JWK as one JSON line. The private key is never printed.
  --alg  ES256 (P-256, the default) or RS256 (RSA 2048 bits): keys for the JWTs snapgate signs for SnapLogic;
         Ed25519: the audit checkpoint key (audit.checkpoints.key); its public half goes to FILE.pub, for
         \`snapgate audit verify --key FILE.pub\`, and the lines printed are for audit.checkpoints
  --kid  the key id to publish (default: the key's RFC 7638 thumbprint; not for Ed25519, whose id is derived)`;

export const credentialsUsage = `usage: snapgate credentials check [ORG] [--json]

  For each org (or ORG only) and each of its SnapLogic identities (the default one and every identities entry),
  sends one read, GET {pod}/api/1/rest/public/runtime/{org}?limit=1, with that identity's credential and prints
  what SnapLogic said. Config: $SNAPGATE_CONFIG (default config/snapgate.yaml).
  --json  one JSON object per line: org, identity, type, result, status (or error)
Exit: 0 every identity works (a next password that works where the current one is rejected counts, and says so),
  1 any is rejected or unreachable, 2 usage or an unknown ORG, 78 the config or a credential reference is invalid.`;

class UsageError extends Error {}

const isUsageError = (err: unknown): boolean =>
  err instanceof UsageError || ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false);

const wantsHelp = (argv: readonly string[]) => argv.includes('--help') || argv.includes('-h');

// ---------------------------------------------------------------------------------------------------------------
// keys generate

/** The config's own rule for a kid, so the printed lines always load. */
const kidSchema = configSchema.shape.signing.unwrap().shape.keys.element.shape.kid;

const isAlg = (text: string): text is SigningAlg => (signingAlgs as readonly string[]).includes(text);

/** The public JWK as published: the allow-listed members only, copied one by one. */
function publicOnly(jwk: PublicJwk, kid: string): Record<string, unknown> {
  const entry: Record<string, unknown> = {};
  for (const field of publicJwkFields) {
    const value = field === 'kid' ? kid : jwk[field];
    if (value !== undefined) entry[field] = value;
  }
  return entry;
}

/** Creates `path` (never replacing a file) with mode 0600 and writes `text`; on a failed write nothing is left. */
async function writeNewPrivateFile(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    // The umask may only take bits away; set exactly 0600 so the owner can read what was written.
    await handle.chmod(0o600);
    await handle.writeFile(text, 'utf8');
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw err;
  }
  await handle.close();
}

function fileProblem(err: unknown, path: string): string {
  const code = (err as { code?: string }).code;
  if (code === 'EEXIST') return `${path} exists; refusing to overwrite it (choose another --out, or move it away)`;
  if (code === 'ENOENT') return `cannot create ${path}: its directory does not exist`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot create ${path}: permission denied`;
  return `cannot write ${path} (${code ?? (err instanceof Error ? err.message : String(err))})`;
}

async function keysGenerate(argv: string[], io: CredentialsCliIo): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { alg: { type: 'string' }, kid: { type: 'string' }, out: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (command !== 'generate') throw new UsageError('the only keys command is generate');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.out === undefined || values.out === '') throw new UsageError('--out FILE is required');
  const alg = values.alg ?? 'ES256';
  if (alg === 'Ed25519') {
    if (values.kid !== undefined) throw new UsageError('--kid is not for Ed25519: a checkpoint key id is derived');
    return checkpointKeyGenerate(resolve(io.cwd, values.out), io);
  }
  if (!isAlg(alg)) throw new UsageError(`--alg must be one of ${[...signingAlgs, 'Ed25519'].join(', ')}`);
  if (values.kid !== undefined && !kidSchema.safeParse(values.kid).success) {
    throw new UsageError('--kid must be 1-128 of A-Z a-z 0-9 . _ ~ : -');
  }
  const path = resolve(io.cwd, values.out);
  const ref = `file:${path}`;
  if (parseSecretRef(ref) === undefined) throw new UsageError('--out must name a file path without line breaks');

  const key = await generateSigningKey(alg);
  const kid = values.kid ?? key.kid;
  try {
    await writeNewPrivateFile(path, key.privatePem);
  } catch (err) {
    io.err(`snapgate keys: ${fileProblem(err, path)}\n`);
    return 1;
  }
  io.err(`snapgate keys: wrote a new ${alg} private key to ${path} (mode 0600)\n`);
  io.out(
    '# add under signing.keys (publish it first as next; make it active once SnapLogic has fetched the JWKS):\n' +
      stringify([{ key: ref, state: 'next', kid }]) +
      '# its public JWK, as the JWKS publishes it:\n' +
      `${JSON.stringify(publicOnly(key.publicJwk, kid))}\n`,
  );
  return 0;
}

/** An Ed25519 checkpoint key: the private half at `path` (0600), the public half at `path`.pub for auditors. */
async function checkpointKeyGenerate(path: string, io: CredentialsCliIo): Promise<number> {
  const ref = `file:${path}`;
  if (parseSecretRef(ref) === undefined) throw new UsageError('--out must name a file path without line breaks');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicPath = `${path}.pub`;
  try {
    await writeNewPrivateFile(path, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  } catch (err) {
    io.err(`snapgate keys: ${fileProblem(err, path)}\n`);
    return 1;
  }
  try {
    const handle = await open(publicPath, 'wx', 0o644);
    await handle.writeFile(publicKey.export({ format: 'pem', type: 'spki' }).toString(), 'utf8');
    await handle.close();
  } catch (err) {
    await unlink(path).catch(() => undefined);
    io.err(`snapgate keys: ${fileProblem(err, publicPath)}\n`);
    return 1;
  }
  const kid = keyIdOf(publicKey);
  io.err(`snapgate keys: wrote a new Ed25519 private key to ${path} (mode 0600) and its public key to ${publicPath}\n`);
  io.out(
    `# key id ${kid}; add to the config (keep the private key off the hosts that hold the trail's copies):\n` +
      stringify({ audit: { checkpoints: { key: ref, interval: '10s' } } }) +
      `# auditors verify with the public key (keep every key still named by stored checkpoints):\n` +
      `#   snapgate audit verify --file audit.jsonl --key ${publicPath}\n`,
  );
  return 0;
}

/** Runs `snapgate keys …`; returns the exit code. */
export async function runKeysCli(argv: string[], io: CredentialsCliIo): Promise<number> {
  if (wantsHelp(argv)) {
    io.out(`${keysUsage}\n`);
    return 0;
  }
  try {
    return await keysGenerate(argv, io);
  } catch (err) {
    if (!isUsageError(err)) throw err;
    io.err(`snapgate keys: ${(err as Error).message}\n\n${keysUsage}\n`);
    return 2;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// credentials check

/** What a result says to a person; never a header, a password or a token. */
function describe(check: CredentialCheck): string {
  switch (check.result) {
    case 'ok':
      return `ok (${check.status})`;
    case 'ok_next_password':
      return `ok with the next password (current rejected: promote it)`;
    case 'rejected':
      if (check.status === 403 && check.type === 'basic') return 'rejected (403: Basic is disabled for this org?)';
      if (check.nextPasswordTried) return `rejected (${check.status}, the next password too)`;
      return `rejected (${check.status})`;
    case 'unexpected':
      return check.status !== undefined ? `unexpected answer (${check.status})` : `failed (${check.error})`;
    case 'unreachable':
      return `unreachable (${check.error})`;
  }
}

function printChecks(checks: readonly CredentialCheck[], json: boolean, io: CredentialsCliIo): void {
  if (json) {
    for (const c of checks) {
      io.out(
        `${JSON.stringify({
          org: c.org,
          identity: c.identity,
          type: c.type,
          ...(c.user !== undefined ? { user: c.user } : {}),
          result: c.result,
          status: c.status ?? null,
          ...(c.error !== undefined ? { error: c.error } : {}),
        })}\n`,
      );
    }
    return;
  }
  const orgWidth = Math.max(...checks.map((c) => c.org.length));
  const identityWidth = Math.max(...checks.map((c) => c.identity.length));
  for (const c of checks) {
    io.out(`${c.org.padEnd(orgWidth)}  ${c.identity.padEnd(identityWidth)}  ${describe(c)}\n`);
  }
}

/** Loads the config, or says why not: the exit code then. */
async function configOrExit(path: string, io: CredentialsCliIo): Promise<Config | number> {
  try {
    return await loadConfig(path, io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`snapgate credentials: ${err.message}\n`);
    return EX_CONFIG;
  }
}

async function credentialsCheck(argv: string[], io: CredentialsCliIo): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { json: { type: 'boolean' } },
    strict: true,
    allowPositionals: true,
  });
  if (command !== 'check') throw new UsageError('the only credentials command is check');
  if (positionals.length > 1) throw new UsageError('name at most one org');

  const configPath = io.env.SNAPGATE_CONFIG ?? 'config/snapgate.yaml';
  const config = await configOrExit(configPath, io);
  if (typeof config === 'number') return config;
  const known = Object.keys(config.orgs);
  const only = positionals[0];
  if (only !== undefined && !known.includes(only)) {
    io.err(`snapgate credentials: no org ${JSON.stringify(only)} in ${configPath}; its orgs: ${known.join(', ')}\n`);
    return 2;
  }

  const log = createLogger({ level: 'warn', write: (line) => io.err(line) });
  let store: CredentialStore;
  try {
    store = await createCredentialStore(config, { env: io.env, log });
  } catch (err) {
    if (!(err instanceof CredentialError)) throw err;
    io.err(`snapgate credentials: ${err.message}\n`);
    return EX_CONFIG;
  }
  const forwarder = createForwarder(config.upstream);
  try {
    const checks = await checkCredentials(config, { store, forwarder }, only !== undefined ? [only] : known);
    printChecks(checks, values.json ?? false, io);
    const failed = checks.filter((c) => !passes(c)).length;
    const promote = checks.filter((c) => c.result === 'ok_next_password').length;
    io.err(
      `snapgate credentials: ${checks.length - failed} of ${checks.length} identities work` +
        (promote > 0 ? `; ${promote} only with the next password (move it into password, drop nextPassword)` : '') +
        '\n',
    );
    return failed > 0 ? 1 : 0;
  } finally {
    store.close();
    // The pool keeps connections alive; closing it lets the process end at once.
    await forwarder.close();
  }
}

/** Runs `snapgate credentials …`; returns the exit code. */
export async function runCredentialsCli(argv: string[], io: CredentialsCliIo): Promise<number> {
  if (wantsHelp(argv)) {
    io.out(`${credentialsUsage}\n`);
    return 0;
  }
  try {
    return await credentialsCheck(argv, io);
  } catch (err) {
    if (!isUsageError(err)) throw err;
    io.err(`snapgate credentials: ${(err as Error).message}\n\n${credentialsUsage}\n`);
    return 2;
  }
}
