// `snapgate config check [--config F] [--print] [--json]`: every problem of a config in one pass (fields, rules across
// fields, secret references that cannot be resolved now), and the effective config with secrets redacted.
import { isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { configHash } from './reload-plan.js';
import { ConfigError } from './errors.js';
import { readConfigDocument, validateConfig } from './load.js';
import { redactConfig, scrub } from './redact.js';
import { checkReferences } from './references.js';
import type { Config } from './schema.js';

export interface ConfigCliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Where a relative --config is resolved from. */
  cwd: string;
}

/** Exit code for a config that cannot be used (sysexits EX_CONFIG), as `serve` uses. */
const EX_CONFIG = 78;

export const configUsage = `usage: snapgate config check [--config FILE] [--print] [--json]

  Checks the config as start-up would, and reports every problem at once as "path: message": each bad field, every
  rule across fields, and each secret reference that cannot be resolved now (env:NAME unset or empty; file:/path
  missing, not a regular file, unreadable or empty; a signing key that is not an RS256/ES256 private key). The
  environment overrides (SNAPGATE_PORT, SNAPGATE_REDIS_URL, ...) apply as at start-up. No secret value is printed.
  --config FILE  the config file (default: $SNAPGATE_CONFIG, else config/snapgate.yaml)
  --print        write the effective config (defaults applied, durations in ms) as YAML to stdout; secret
                 references print as references, any other secret value as <redacted>
  --json         write one JSON object to stdout: { ok, config, problems: [{ path, message }], summary }
Exit: 0 the config is valid and every reference resolves, 78 it has problems, 2 usage.`;

class UsageError extends Error {}

const isUsageError = (err: unknown): boolean =>
  err instanceof UsageError || ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false);

/** Splits `path: message` (paths hold no ": "; org names cannot). */
function splitProblem(problem: string): { path: string; message: string } {
  const at = problem.indexOf(': ');
  return at < 0 ? { path: '', message: problem } : { path: problem.slice(0, at), message: problem.slice(at + 2) };
}

function summaryOf(config: Config, references: number): string {
  const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const parts = [
    count(Object.keys(config.orgs).length, 'org'),
    count(config.auth.issuers.length, 'issuer'),
    count(config.policy.length, 'policy rule'),
    count(references, 'secret reference'),
  ];
  if (config.signing !== undefined) parts.push(count(config.signing.keys.length, 'signing key'));
  // The hash a gateway running this config exposes as snapgate_config_info{hash}.
  parts.push(`hash ${configHash(config)}`);
  return parts.join(', ');
}

interface CheckResult {
  problems: string[];
  config: Config | undefined;
  references: number;
  /** Resolved secret values: removed from everything printed. */
  secrets: readonly string[];
}

async function check(path: string, env: ConfigCliIo['env']): Promise<CheckResult> {
  let raw: unknown;
  try {
    raw = await readConfigDocument(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: [...err.problems], config: undefined, references: 0, secrets: [] };
  }
  const validation = validateConfig(raw, env);
  const refs = await checkReferences(validation.document, env);
  return {
    problems: [...validation.problems, ...refs.problems],
    config: validation.config,
    references: refs.sites.length,
    secrets: refs.values,
  };
}

async function configCheck(argv: string[], io: ConfigCliIo): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { config: { type: 'string' }, print: { type: 'boolean' }, json: { type: 'boolean' } },
    strict: true,
    allowPositionals: true,
  });
  if (command !== 'check') throw new UsageError('the only config command is check');
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.config === '') throw new UsageError('--config needs a file path');
  if (values.print && values.json) throw new UsageError('give --print or --json, not both');

  const given = values.config ?? io.env.SNAPGATE_CONFIG ?? 'config/snapgate.yaml';
  const path = isAbsolute(given) ? given : resolve(io.cwd, given);
  const result = await check(path, io.env);
  // Nothing printed may hold a resolved secret, even where a config repeats one outside a reference.
  const out = (text: string) => io.out(scrub(text, result.secrets));
  const err = (text: string) => io.err(scrub(text, result.secrets));
  const ok = result.problems.length === 0 && result.config !== undefined;

  if (values.json) {
    out(
      `${JSON.stringify({
        ok,
        config: given,
        problems: result.problems.map(splitProblem),
        ...(ok ? { summary: summaryOf(result.config!, result.references) } : {}),
      })}\n`,
    );
    return ok ? 0 : EX_CONFIG;
  }
  if (!ok) {
    for (const problem of result.problems) err(`${problem}\n`);
    const n = result.problems.length;
    err(`config invalid: ${given} (${n} ${n === 1 ? 'problem' : 'problems'})\n`);
    return EX_CONFIG;
  }
  const summary = `config OK: ${given} (${summaryOf(result.config!, result.references)})\n`;
  if (values.print) {
    out(stringify(redactConfig(result.config, result.secrets)));
    // stdout stays pure YAML; the verdict goes beside it.
    err(summary);
  } else out(summary);
  return 0;
}

/** Runs `snapgate config …`; returns the exit code. */
export async function runConfigCli(argv: string[], io: ConfigCliIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(`${configUsage}\n`);
    return 0;
  }
  try {
    return await configCheck(argv, io);
  } catch (err) {
    if (!isUsageError(err)) throw err;
    io.err(`snapgate config: ${(err as Error).message}\n\n${configUsage}\n`);
    return 2;
  }
}
