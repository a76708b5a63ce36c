// Reads the YAML config, applies environment overrides and validates it, reporting every bad field at once.
import { readFile, stat } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, deepFreeze } from './errors.js';
import { configIssueMessage, kindOf } from './issue-messages.js';
import { configSchema, crossFieldProblems, type Config } from './schema.js';

export { ConfigError } from './errors.js';

function pathText(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

/** Environment variables that override single config fields, for containers and quick local runs. */
function applyEnvOverrides(
  raw: unknown,
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const doc = raw as Record<string, unknown>;
  const out: Record<string, unknown> = { ...doc };
  // A section that is there but not a mapping is the schema's to report; an override never turns it into one.
  const section = (name: string): Record<string, unknown> | undefined => {
    const value = doc[name];
    if (value === undefined) return {};
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? { ...(value as Record<string, unknown>) }
      : undefined;
  };
  const server = section('server');
  if (server !== undefined) {
    if (env.SNAPGATE_PORT !== undefined) {
      // Digits only: an empty value (compose's ${PORT} with PORT unset) must not become port 0, nor 1e3 port 1000.
      if (/^[0-9]{1,5}$/.test(env.SNAPGATE_PORT)) server.port = Number(env.SNAPGATE_PORT);
      else {
        problems.push('SNAPGATE_PORT: must be a port number (digits, 0 to 65535); leave it unset to use server.port');
      }
    }
    if (env.SNAPGATE_HOST !== undefined) server.host = env.SNAPGATE_HOST;
    if (env.SNAPGATE_WORKERS !== undefined) {
      if (/^[0-9]{1,3}$/.test(env.SNAPGATE_WORKERS)) server.workers = Number(env.SNAPGATE_WORKERS);
      else {
        problems.push(
          'SNAPGATE_WORKERS: must be a whole number of worker processes (1 to 64); leave it unset to use server.workers',
        );
      }
    }
    out.server = server;
  }
  const log = section('log');
  if (env.SNAPGATE_LOG_LEVEL !== undefined && log !== undefined) out.log = { ...log, level: env.SNAPGATE_LOG_LEVEL };
  const redis = section('redis');
  if (env.SNAPGATE_REDIS_URL !== undefined && redis !== undefined) {
    out.redis = { ...redis, url: env.SNAPGATE_REDIS_URL };
  }
  if (env.SNAPGATE_ADMIN_HOST !== undefined) {
    // Only moves a listener the config declares: the port stays the config's to choose.
    const admin = doc.admin;
    if (admin === null || typeof admin !== 'object' || Array.isArray(admin)) {
      problems.push(
        "SNAPGATE_ADMIN_HOST: sets the admin listener's host, " +
          'but the config declares no admin listener (add admin.port)',
      );
    } else out.admin = { ...admin, host: env.SNAPGATE_ADMIN_HOST };
  }
  return out;
}

/** Which environment variable supplied the field at `path`, so its problem names where to fix it. */
function envSourceOf(
  path: readonly PropertyKey[],
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const at = path.map(String).join('.');
  const sources: Record<string, string> = {
    'redis.url': 'SNAPGATE_REDIS_URL',
    'admin.host': 'SNAPGATE_ADMIN_HOST',
    'log.level': 'SNAPGATE_LOG_LEVEL',
    'server.host': 'SNAPGATE_HOST',
    'server.port': 'SNAPGATE_PORT',
    'server.workers': 'SNAPGATE_WORKERS',
  };
  const name = sources[at];
  return name !== undefined && env[name] !== undefined ? name : undefined;
}

/** What validating a document found: every problem (`path: message`), and the config when there are none. */
export interface ConfigValidation {
  /** The document with the environment overrides applied, as validated. */
  readonly document: unknown;
  readonly problems: readonly string[];
  /** Deeply frozen; present exactly when `problems` is empty. */
  readonly config: Config | undefined;
}

/**
 * Applies the environment overrides and checks the document: field errors and every cross-field rule in one pass.
 * Never throws for a bad document; no message repeats a value from it.
 */
export function validateConfig(raw: unknown, env: Readonly<Record<string, string | undefined>> = {}): ConfigValidation {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    const problem =
      raw === null || raw === undefined
        ? '(root): the config is empty: it must be a YAML mapping with at least auth and orgs'
        : `(root): the config must be a YAML mapping with at least auth and orgs; got ${kindOf(raw)}`;
    return { document: raw, problems: [problem], config: undefined };
  }
  const problems: string[] = [];
  const document = applyEnvOverrides(raw, env, problems);
  const result = configSchema.safeParse(document, { error: configIssueMessage });
  const issues = [...(result.success ? [] : result.error.issues), ...crossFieldProblems(document)];
  for (const issue of issues) {
    const source = envSourceOf(issue.path, env);
    problems.push(
      `${pathText(issue.path)}: ${issue.message}${source !== undefined ? ` (the value comes from ${source})` : ''}`,
    );
  }
  const config = problems.length === 0 && result.success ? deepFreeze(result.data) : undefined;
  return { document, problems, config };
}

/** Validates an already-parsed document. Returns a deeply frozen, typed config; throws ConfigError otherwise. */
export function parseConfig(
  raw: unknown,
  source: string,
  env: Readonly<Record<string, string | undefined>> = {},
): Config {
  const { problems, config } = validateConfig(raw, env);
  if (config === undefined) throw new ConfigError(source, problems);
  return config;
}

/** Far above any real config (1,000 orgs take a few hundred KB). */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Reads the YAML file at `path` into a plain document. Throws ConfigError when it cannot be read or parsed. */
export async function readConfigDocument(path: string): Promise<unknown> {
  let text: string;
  try {
    // A device (/dev/zero) or a huge file would be read until memory runs out: refuse both before reading.
    const info = await stat(path);
    if (!info.isFile()) {
      throw new ConfigError(path, [
        `(file): the config path is ${info.isDirectory() ? 'a directory' : 'not a regular file'}; give the YAML file`,
      ]);
    }
    if (info.size > MAX_CONFIG_BYTES) {
      throw new ConfigError(path, [`(file): the config file is larger than ${MAX_CONFIG_BYTES} bytes`]);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as { code?: string }).code ?? 'read error';
    throw new ConfigError(path, [
      `(file): cannot read the config file (${code}); check the path (snapgate config check --config, or $SNAPGATE_CONFIG when serving)`,
    ]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      path,
      doc.errors.map((e) => `(yaml) line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0] ?? e.code}`),
    );
  }
  try {
    return doc.toJS();
  } catch (err) {
    // e.g. an alias bomb: yaml refuses to expand excessive aliases.
    throw new ConfigError(path, [`(yaml): ${err instanceof Error ? err.message : String(err)}`]);
  }
}

/** Reads and validates the YAML file at `path`. Throws ConfigError naming every problem. */
export async function loadConfig(
  path: string,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<Config> {
  return parseConfig(await readConfigDocument(path), path, env);
}
