// `snapgate config check`, `--version` and every command's `--help`, as an operator runs them: the built CLI as a
// child process. Exit codes 0 / 78 / 2; unresolvable secret references named by config path; `--print` shows the
// defaults and never a secret (a referenced value, a password planted in redis.url or SNAPGATE_REDIS_URL).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { configHash } from '../../src/config/reload-plan.js';
import { runSnapgate, type CliRun } from '../helpers/cli.js';
import { minimalConfig } from '../helpers/config.js';
import { ROOT, tempDir, writeConfig } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';

/** Values only this file uses; none may appear in anything the CLI prints. */
const planted = {
  SL_PASSWORD: 'config-cli-Pa55word-from-env!',
  FILE_PASSWORD: 'config-cli-Pa55word-from-file!',
  REDIS_PASSWORD: 'config-cli-redis-Pa55!',
  URL_PASSWORD: 'config-cli-url-Pa55-in-redis-url',
  ENV_URL_PASSWORD: 'config-cli-url-Pa55-in-env',
};
for (const value of Object.values(planted)) recordSecret(value);

type Run = CliRun;

/** Runs the built `snapgate` with `args`, its environment `env` and PATH only; every output line is recorded. */
const snapgate = (args: string[], env: Record<string, string | undefined> = {}) => runSnapgate(args, { env });

const show = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

const noPlantedSecret = (run: Run) => {
  for (const value of Object.values(planted)) {
    expect(run.stdout + run.stderr, `${value} printed:\n${show(run)}`).not.toContain(value);
  }
};

/** A valid config whose org credentials and Redis password are references: env for the user, files for the rest. */
function validSetup() {
  const dir = tempDir('snapgate-config-cli-');
  const passwordFile = join(dir, 'sl-password');
  writeFileSync(passwordFile, `${planted.FILE_PASSWORD}\n`, { mode: 0o600 });
  const doc = minimalConfig({
    redis: { url: 'redis://127.0.0.1:6379', password: 'env:REDIS_PASSWORD' },
  }) as Record<string, any>;
  doc.orgs['Acme-Prod'] = {
    pod: 'https://elastic.snaplogic.com',
    username: 'env:SL_USER',
    password: `file:${passwordFile}`,
    nextPassword: 'env:SL_PASSWORD',
  };
  const env = {
    SL_USER: 'svc-config-cli@example.com',
    SL_PASSWORD: planted.SL_PASSWORD,
    REDIS_PASSWORD: planted.REDIS_PASSWORD,
  };
  return { dir, doc, env, path: writeConfig(doc, dir), passwordFile };
}

describe('snapgate config check', () => {
  it('exits 0 with a one-line summary when the config is valid and every reference resolves', async () => {
    const { path, env } = validSetup();
    const run = await snapgate(['config', 'check', '--config', path], env);
    expect(run.code, show(run)).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(
        `^config OK: ${path} \\(1 org, 1 issuer, 1 policy rule, 4 secret references, hash [0-9a-f]{16}\\)\\n$`,
      ),
    );
    // The hash a gateway on this config exposes as snapgate_config_info{hash}.
    expect(run.stdout).toContain(`hash ${configHash(await loadConfig(path, env))})`);
    noPlantedSecret(run);
  });

  it('reads $SNAPGATE_CONFIG without --config, and applies the environment overrides as start-up does', async () => {
    const { path, env } = validSetup();
    const ok = await snapgate(['config', 'check'], { ...env, SNAPGATE_CONFIG: path });
    expect(ok.code, show(ok)).toBe(0);
    expect(ok.stdout).toContain(`config OK: ${path}`);
    const bad = await snapgate(['config', 'check'], { ...env, SNAPGATE_CONFIG: path, SNAPGATE_LOG_LEVEL: 'loud' });
    expect(bad.code, show(bad)).toBe(78);
    expect(bad.stderr).toMatch(/^log\.level: must be one of .*\(the value comes from SNAPGATE_LOG_LEVEL\)$/m);
  });

  it('exits 78 naming every unresolvable reference by its config path, with the field errors, never a value', async () => {
    const { dir, doc, path, env } = validSetup();
    doc.orgs['Acme-Prod'].password = `file:${join(dir, 'no-such-file')}`;
    doc.orgs['Acme-Prod'].nextPassword = `file:${dir}`;
    delete doc.auth.issuers[0].audience;
    writeConfig(doc, dir);
    const run = await snapgate(['config', 'check', '--config', path], { SL_USER: env.SL_USER, REDIS_PASSWORD: '' });
    expect(run.code, show(run)).toBe(78);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^auth\.issuers\.0\.audience: is required: the audience \(aud\)/),
      'redis.password: refers to the environment variable REDIS_PASSWORD, which is empty',
      `orgs.Acme-Prod.password: refers to the file ${join(dir, 'no-such-file')}, which does not exist`,
      `orgs.Acme-Prod.nextPassword: refers to the file ${dir}, which is a directory`,
      `config invalid: ${path} (4 problems)`,
    ]);
    expect(run.stderr).not.toMatch(/Invalid input/);
    noPlantedSecret(run);
  });

  it('--json writes one object with every problem as { path, message }', async () => {
    const { path } = validSetup();
    const run = await snapgate(['config', 'check', '--config', path, '--json'], { SL_USER: 'u' });
    expect(run.code, show(run)).toBe(78);
    const body = JSON.parse(run.stdout) as { ok: boolean; problems: { path: string; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.problems.map((p) => p.path)).toEqual(['redis.password', 'orgs.Acme-Prod.nextPassword']);
    noPlantedSecret(run);
  });

  it('exits 78 for a file that cannot be read or is not YAML', async () => {
    const dir = tempDir();
    const missing = await snapgate(['config', 'check', '--config', join(dir, 'absent.yaml')]);
    expect(missing.code, show(missing)).toBe(78);
    expect(missing.stderr).toMatch(/cannot read the config file \(ENOENT\)/);
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'auth: [unclosed\n');
    const yaml = await snapgate(['config', 'check', '--config', broken]);
    expect(yaml.code, show(yaml)).toBe(78);
    expect(yaml.stderr).toMatch(/^\(yaml\) line \d+:/m);
  });

  it('--print writes the effective config with its defaults as YAML, references as references, no secret', async () => {
    const { dir, doc, path, env } = validSetup();
    // A referenced value planted where no secret belongs: it must not be printed either.
    doc.server = { instanceId: `node-${planted.SL_PASSWORD}` };
    writeConfig(doc, dir);
    const run = await snapgate(['config', 'check', '--config', path, '--print'], env);
    expect(run.code, show(run)).toBe(0);
    expect(run.stderr).toContain(`config OK: ${path}`);
    const printed = parse(run.stdout) as Record<string, any>;
    expect(printed.server).toMatchObject({ port: 8080, shutdownTimeout: 15_000, instanceId: 'node-<redacted>' });
    expect(printed.upstream).toMatchObject({ connections: 32, connectTimeout: 5_000 });
    expect(printed.audit).toMatchObject({ stdout: true, onFailure: 'reject' });
    expect(printed.orgs['Acme-Prod']).toMatchObject({
      credentials: 'basic',
      username: 'env:SL_USER',
      password: expect.stringMatching(/^file:\//),
      nextPassword: 'env:SL_PASSWORD',
    });
    expect(printed.redis).toMatchObject({ url: 'redis://127.0.0.1:6379', password: 'env:REDIS_PASSWORD' });
    noPlantedSecret(run);
    expect(run.stdout).not.toContain(env.SL_USER);
  });

  it(
    'a password planted in redis.url or SNAPGATE_REDIS_URL is refused and printed nowhere',
    { timeout: 120_000 },
    async () => {
      const { dir, doc, path, env } = validSetup();
      doc.redis = { url: `redis://:${planted.URL_PASSWORD}@127.0.0.1:6379` };
      writeConfig(doc, dir);
      for (const args of [
        ['config', 'check', '--config', path],
        ['config', 'check', '--config', path, '--print'],
        ['config', 'check', '--config', path, '--json'],
      ]) {
        const run = await snapgate(args, env);
        expect(run.code, show(run)).toBe(78);
        expect(run.stdout + run.stderr).toMatch(/redis\.url"?[:,]["a-z:]*\s*"?must not carry a user or password/);
        noPlantedSecret(run);
      }
      const fromEnv = await snapgate(['config', 'check', '--config', path, '--print'], {
        ...env,
        SNAPGATE_REDIS_URL: `redis://default:${planted.ENV_URL_PASSWORD}@redis.example:6379`,
      });
      expect(fromEnv.code, show(fromEnv)).toBe(78);
      expect(fromEnv.stderr).toMatch(/redis\.url: must not carry a user or password.*SNAPGATE_REDIS_URL/);
      noPlantedSecret(fromEnv);
    },
  );

  it(
    'exits 2 with the usage on stderr for an unknown flag, an extra argument or no command',
    { timeout: 120_000 },
    async () => {
      for (const args of [
        ['config'],
        ['config', 'lint'],
        ['config', 'check', '--bogus'],
        ['config', 'check', 'extra.yaml'],
      ]) {
        const run = await snapgate(args);
        expect(run.code, `${args.join(' ')}\n${show(run)}`).toBe(2);
        expect(run.stderr).toContain('usage: snapgate config check');
        expect(run.stdout).toBe('');
      }
    },
  );
});

describe('snapgate --version and --help', () => {
  it('--version, -V and version print the version from package.json', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V', 'version']) {
      const run = await snapgate([flag]);
      expect(run.code, show(run)).toBe(0);
      expect(run.stdout).toBe(`snapgate ${version}\n`);
      expect(run.stderr).toBe('');
    }
  });

  it(
    '--help on snapgate and on every command and subcommand prints its usage on stdout and exits 0',
    { timeout: 120_000 },
    async () => {
      const cases: [string[], string][] = [
        [['--help'], 'usage: snapgate [serve]'],
        [['-h'], 'usage: snapgate [serve]'],
        [['help'], 'usage: snapgate [serve]'],
        [['serve', '--help'], 'usage: snapgate [serve]'],
        [['config', '--help'], 'usage: snapgate config check'],
        [['config', 'check', '--help'], 'usage: snapgate config check'],
        [['config', 'check', '-h'], 'usage: snapgate config check'],
        [['audit', '--help'], 'snapgate audit verify'],
        [['audit', 'verify', '--help'], 'snapgate audit verify'],
        [['audit', 'query', '--help'], 'snapgate audit query'],
        [['audit', 'tail', '--help'], 'snapgate audit tail'],
        [['keys', '--help'], 'usage: snapgate keys generate'],
        [['keys', 'generate', '--help'], 'usage: snapgate keys generate'],
        [['credentials', '--help'], 'usage: snapgate credentials check'],
        [['credentials', 'check', '--help'], 'usage: snapgate credentials check'],
      ];
      await Promise.all(
        cases.map(async ([args, text]) => {
          const run = await snapgate(args);
          expect(run.code, `${args.join(' ')}\n${show(run)}`).toBe(0);
          expect(run.stdout, args.join(' ')).toContain(text);
          expect(run.stderr, args.join(' ')).toBe('');
        }),
      );
    },
  );

  it('the top-level usage names config check and --version', async () => {
    const run = await snapgate(['--help']);
    expect(run.stdout).toContain('snapgate config check [--config FILE]');
    expect(run.stdout).toContain('--version');
  });

  it('an unknown command or flag prints the usage on stderr and exits 2', { timeout: 120_000 }, async () => {
    const cases: string[][] = [
      ['--bogus'],
      ['frobnicate'],
      ['serve', '--bogus'],
      ['serve', 'extra'],
      ['--version', 'extra'],
      ['keys'],
      ['keys', 'generate', '--bogus'],
      ['credentials'],
      ['credentials', 'check', '--bogus'],
      ['audit'],
      ['audit', 'verify', '--bogus'],
    ];
    await Promise.all(
      cases.map(async (args) => {
        const run = await snapgate(args);
        expect(run.code, `${args.join(' ')}\n${show(run)}`).toBe(2);
        expect(run.stderr, args.join(' ')).toMatch(/usage|--help/);
        expect(run.stdout, args.join(' ')).toBe('');
      }),
    );
  });
});
