// `snapgate keys generate` and `snapgate credentials check` as an operator runs them: the built CLI as a child
// process, against the SnapLogic stand-in (Basic users and passwords, and JWTs verified through a JWKS it fetches
// over HTTP). Nothing either command prints may hold a password, a Basic header, a token or private key material.
import { createPrivateKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKeySet, publicJwkFields, publicJwks, type SigningKeyInput } from '../../src/credentials/signing-keys.js';
import { runSnapgate, type CliRun } from '../helpers/cli.js';
import { baseConfig, tempDir, testSecrets, writeConfig } from '../helpers/gateway.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { listenOnLoopback, type Listening } from '../helpers/loopback.js';
import { freePort } from '../helpers/redis-server.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();

/** Members of a private JWK (RSA and EC) and of a symmetric one: none may be printed. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
const ACME = 'Acme-Prod';
const OTHER = 'Other-Org';
const SIGNING_ISSUER = 'snapgate-cli-test';
const JWT_USER = 'svc-snapgate@acme.example';
const MAPPED_USER = 'reporting@acme.example';

/** Passwords only this file uses, recorded for the leak scan like the shared test secrets. */
const localSecrets = {
  ACME_OLD_PASSWORD: 'acme-old-Pa55word-expired!',
  REPORTING_SL_USER: 'svc-reporting@example.com',
  REPORTING_SL_PASSWORD: 'reporting-secret-Pa55word!',
  OTHER_WRONG_PASSWORD: 'other-rotated-elsewhere-Pa55!',
};
/** Every value no output line may contain, with the Basic header values built from them. */
const secrets = [
  testSecrets.ACME_SL_PASSWORD,
  testSecrets.OTHER_SL_PASSWORD,
  localSecrets.ACME_OLD_PASSWORD,
  localSecrets.REPORTING_SL_PASSWORD,
  localSecrets.OTHER_WRONG_PASSWORD,
  ...[
    [testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD],
    [testSecrets.ACME_SL_USER, localSecrets.ACME_OLD_PASSWORD],
    [testSecrets.OTHER_SL_USER, testSecrets.OTHER_SL_PASSWORD],
    [localSecrets.REPORTING_SL_USER, localSecrets.REPORTING_SL_PASSWORD],
  ].map(([u, p]) => Buffer.from(`${u}:${p}`).toString('base64')),
];
for (const s of secrets) recordSecret(s);

type Run = CliRun;

/** Runs the built `snapgate` with `args`, its environment `env` and PATH only; every output line is recorded. */
const snapgate = runSnapgate;

/** The JSON objects of a --json run's stdout, one per line. */
const jsonLines = (stdout: string): Record<string, unknown>[] =>
  stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** What a run printed, for failure messages. */
const shown = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

/** No secret of this file, no Authorization scheme and no JWT in anything the run printed. */
function expectNoSecrets(r: Run, more: readonly string[] = []): void {
  const all = r.stdout + r.stderr;
  for (const s of [...secrets, ...more]) expect(all.includes(s), `a secret was printed\n${shown(r)}`).toBe(false);
  expect(all, shown(r)).not.toMatch(/Basic [A-Za-z0-9+/=]{8,}|Bearer |eyJ[A-Za-z0-9_-]{10,}/);
}

/** The YAML lines and the JWK line `keys generate` printed. */
function parseKeysOutput(stdout: string): { entries: { key: string; state: string; kid: string }[]; jwk: any } {
  const lines = stdout.trimEnd().split('\n');
  const jwk = JSON.parse(lines.at(-1)!);
  const entries = parse(lines.slice(0, -1).join('\n'));
  return { entries, jwk };
}

/** The private material of a PEM as it could leak: its JWK members and the PEM's base64 lines. */
function privateParts(pem: string): string[] {
  const jwk = createPrivateKey(pem).export({ format: 'jwk' }) as Record<string, unknown>;
  const members = PRIVATE_MEMBERS.map((m) => jwk[m]).filter((v): v is string => typeof v === 'string');
  const lines = pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
  const parts = [...members, ...lines];
  for (const p of parts) recordSecret(p);
  return parts;
}

/** Runs `keys generate --out <dir>/<name>` with `extra` and expects it to succeed; returns what it made. */
async function generate(dir: string, name: string, extra: string[] = []) {
  const path = join(dir, name);
  const r = await snapgate(['keys', 'generate', '--out', path, ...extra]);
  expect(r.code, shown(r)).toBe(0);
  const pem = readFileSync(path, 'utf8');
  return { path, pem, run: r, ...parseKeysOutput(r.stdout), secrets: privateParts(pem) };
}

describe('snapgate keys generate', () => {
  it('writes an ES256 PKCS#8 key with mode 0600 that createKeySet accepts, and prints its entry and public JWK', async () => {
    const dir = tempDir();
    const key = await generate(dir, 'es.pem');
    expect(statSync(key.path).mode & 0o777).toBe(0o600);
    expect(key.pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    // Without --kid the printed kid is the thumbprint, which is also what snapgate computes for a key without one.
    const set = createKeySet([{ secret: key.pem, state: 'active' }]);
    expect(set.active.alg).toBe('ES256');
    expect(key.entries, shown(key.run)).toEqual([{ key: `file:${key.path}`, state: 'next', kid: set.active.kid }]);
    expect(key.jwk).toEqual(publicJwks(set).keys[0]);
    expect(Object.keys(key.jwk).every((m) => (publicJwkFields as readonly string[]).includes(m))).toBe(true);
    for (const m of PRIVATE_MEMBERS) expect(key.run.stdout + key.run.stderr).not.toContain(`"${m}":`);
    expectNoSecrets(key.run, key.secrets);
    expect(key.run.stdout).toContain('# add under signing.keys');
  });

  it('makes an RS256 key (RSA 2048) published under the --kid given', async () => {
    const dir = tempDir();
    const key = await generate(dir, 'rs.pem', ['--alg', 'RS256', '--kid', 'rotation-2026-11']);
    expect(statSync(key.path).mode & 0o777).toBe(0o600);
    const set = createKeySet([{ secret: key.pem, state: 'active', kid: 'rotation-2026-11' }]);
    expect(set.active.alg).toBe('RS256');
    expect(createPrivateKey(key.pem).asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(key.entries).toEqual([{ key: `file:${key.path}`, state: 'next', kid: 'rotation-2026-11' }]);
    expect(key.jwk).toEqual(publicJwks(set).keys[0]);
    expect(key.jwk.kty).toBe('RSA');
    for (const m of PRIVATE_MEMBERS) expect(key.jwk).not.toHaveProperty(m);
    expectNoSecrets(key.run, key.secrets);
  });

  it('resolves a relative --out against the working directory in the printed reference', async () => {
    const dir = tempDir();
    const r = await snapgate(['keys', 'generate', '--out', 'relative.pem'], { cwd: dir });
    expect(r.code, shown(r)).toBe(0);
    expect(parseKeysOutput(r.stdout).entries[0]!.key).toBe(`file:${join(dir, 'relative.pem')}`);
    expect(statSync(join(dir, 'relative.pem')).mode & 0o777).toBe(0o600);
    expectNoSecrets(r, privateParts(readFileSync(join(dir, 'relative.pem'), 'utf8')));
  });

  it('refuses to overwrite an existing file, leaving it as it was and printing no entry', async () => {
    const dir = tempDir();
    const path = join(dir, 'taken.pem');
    writeFileSync(path, 'an operator file\n', { mode: 0o644 });
    const r = await snapgate(['keys', 'generate', '--out', path]);
    expect(r.code, shown(r)).toBe(1);
    expect(r.stderr).toContain(`${path} exists; refusing to overwrite it`);
    expect(r.stdout).toBe('');
    expect(readFileSync(path, 'utf8')).toBe('an operator file\n');
    expect(statSync(path).mode & 0o777).toBe(0o644);
  });

  it('prints usage: on stdout with exit 0 for --help, on stderr with exit 2 for an unknown option or no --out', async () => {
    const help = await snapgate(['keys', '--help']);
    expect(help.code, shown(help)).toBe(0);
    expect(help.stdout).toContain('usage: snapgate keys generate');
    const dir = tempDir();
    for (const args of [
      ['keys', 'generate', '--out', join(dir, 'a.pem'), '--bogus'],
      ['keys', 'generate'],
      ['keys', 'generate', '--out', join(dir, 'b.pem'), '--alg', 'HS256'],
      ['keys', 'generate', '--out', join(dir, 'c.pem'), '--kid', 'has space'],
      ['keys', 'rotate'],
    ]) {
      const r = await snapgate(args);
      expect(r.code, `${args.join(' ')}\n${shown(r)}`).toBe(2);
      expect(r.stderr).toContain('usage: snapgate keys generate');
      expect(r.stdout).toBe('');
    }
    // Nothing was created by a refused invocation.
    for (const f of ['a.pem', 'b.pem', 'c.pem']) expect(() => statSync(join(dir, f))).toThrow();
  });
});

describe('snapgate credentials check', () => {
  const env = { ...testSecrets, ...localSecrets };

  afterEach(() => {
    world.standIn.setCredential(OTHER, testSecrets.OTHER_SL_USER, testSecrets.OTHER_SL_PASSWORD);
    world.standIn.setUser(ACME, localSecrets.REPORTING_SL_USER, undefined);
    world.standIn.setJwtIssuer(ACME, undefined);
    world.standIn.setJwtOnly(ACME, false);
    world.standIn.received.splice(0);
  });

  /** Runs `credentials check` with `args` on `doc` written to a fresh config file. */
  const check = (doc: Record<string, unknown>, args: string[] = []) =>
    snapgate(['credentials', 'check', ...args], { env: { ...env, SNAPGATE_CONFIG: writeConfig(doc) } });

  /** The stand-in's list calls for `org`, as the check sends them. */
  const listCalls = (org: string) =>
    world.standIn.received.filter((r) => r.kind === 'list' && r.path === `/api/1/rest/public/runtime/${org}`);

  /** baseConfig with Acme-Prod given an identity with its own Basic set. */
  function basicDoc(): Record<string, unknown> {
    const doc = baseConfig(world.standIn, world.issuer);
    const orgs = doc.orgs as Record<string, Record<string, unknown>>;
    orgs[ACME] = {
      ...orgs[ACME],
      identities: [
        {
          name: 'reporting',
          match: { sub: 'svc-reporting' },
          username: 'env:REPORTING_SL_USER',
          password: 'env:REPORTING_SL_PASSWORD',
        },
      ],
    };
    return doc;
  }

  it('says ok for every identity of every org and exits 0, after one harmless list read each', async () => {
    world.standIn.setUser(ACME, localSecrets.REPORTING_SL_USER, localSecrets.REPORTING_SL_PASSWORD);
    const r = await check(basicDoc());
    expect(r.code, shown(r)).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines, shown(r)).toHaveLength(3);
    expect(lines[0]).toMatch(/^Acme-Prod\s+default\s+ok \(200\)$/);
    expect(lines[1]).toMatch(/^Acme-Prod\s+reporting\s+ok \(200\)$/);
    expect(lines[2]).toMatch(/^Other-Org\s+default\s+ok \(200\)$/);
    const acme = listCalls(ACME);
    expect(acme.map((c) => [c.method, c.query.limit, c.authUser]).sort()).toEqual(
      [
        ['GET', '1', testSecrets.ACME_SL_USER],
        ['GET', '1', localSecrets.REPORTING_SL_USER],
      ].sort(),
    );
    expect(listCalls(OTHER).map((c) => c.authUser)).toEqual([testSecrets.OTHER_SL_USER]);
    // Only reads: no run was started or stopped.
    expect(world.standIn.received.every((c) => c.kind === 'list')).toBe(true);
    expectNoSecrets(r);
  });

  it('prints one JSON object per line with --json', async () => {
    const r = await check(baseConfig(world.standIn, world.issuer), ['--json']);
    expect(r.code, shown(r)).toBe(0);
    const objects = jsonLines(r.stdout);
    expect(objects).toEqual([
      { org: ACME, identity: 'default', type: 'basic', result: 'ok', status: 200 },
      { org: OTHER, identity: 'default', type: 'basic', result: 'ok', status: 200 },
    ]);
    expectNoSecrets(r);
  });

  it('reports a password SnapLogic no longer takes as rejected (401) and exits 1', async () => {
    world.standIn.setCredential(OTHER, testSecrets.OTHER_SL_USER, localSecrets.OTHER_WRONG_PASSWORD);
    const r = await check(baseConfig(world.standIn, world.issuer));
    expect(r.code, shown(r)).toBe(1);
    expect(r.stdout).toMatch(/^Acme-Prod\s+default\s+ok \(200\)$/m);
    expect(r.stdout).toMatch(/^Other-Org\s+default\s+rejected \(401\)$/m);
    expectNoSecrets(r);
  });

  it('reports Basic on a JWT-only org as rejected (403) with the likely reason', async () => {
    world.standIn.setJwtOnly(ACME, true);
    const r = await check(baseConfig(world.standIn, world.issuer), [ACME]);
    expect(r.code, shown(r)).toBe(1);
    expect(r.stdout.trimEnd()).toMatch(/^Acme-Prod\s+default\s+rejected \(403: Basic is disabled for this org\?\)$/);
    expectNoSecrets(r);
  });

  it('reports a pod nobody listens on as unreachable (ECONNREFUSED) and exits 1', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    const orgs = doc.orgs as Record<string, Record<string, unknown>>;
    orgs[OTHER] = { ...orgs[OTHER], pod: `http://127.0.0.1:${await freePort()}` };
    const r = await check(doc, ['--json']);
    expect(r.code, shown(r)).toBe(1);
    const objects = jsonLines(r.stdout);
    expect(objects).toEqual([
      { org: ACME, identity: 'default', type: 'basic', result: 'ok', status: 200 },
      { org: OTHER, identity: 'default', type: 'basic', result: 'unreachable', status: null, error: 'ECONNREFUSED' },
    ]);
    const human = await check(doc, [OTHER]);
    expect(human.stdout.trimEnd(), shown(human)).toMatch(/^Other-Org\s+default\s+unreachable \(ECONNREFUSED\)$/);
    expect(human.code).toBe(1);
  });

  it('checks only the org named, and refuses an unknown one with exit 2 and the list of orgs', async () => {
    const r = await check(baseConfig(world.standIn, world.issuer), [OTHER]);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout.trimEnd()).toMatch(/^Other-Org\s+default\s+ok \(200\)$/);
    expect(listCalls(ACME)).toHaveLength(0);
    expect(listCalls(OTHER)).toHaveLength(1);

    const unknown = await check(baseConfig(world.standIn, world.issuer), ['Ghost-Org']);
    expect(unknown.code, shown(unknown)).toBe(2);
    expect(unknown.stderr).toContain('no org "Ghost-Org"');
    expect(unknown.stderr).toContain(`its orgs: ${ACME}, ${OTHER}`);
    expect(unknown.stdout).toBe('');
  });

  it('says when only the next password works (exit 0) and when neither does (exit 1)', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    const orgs = doc.orgs as Record<string, Record<string, unknown>>;
    orgs[ACME] = { ...orgs[ACME], password: 'env:ACME_OLD_PASSWORD', nextPassword: 'env:ACME_SL_PASSWORD' };
    const r = await check(doc, [ACME]);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout.trimEnd()).toMatch(
      /^Acme-Prod\s+default\s+ok with the next password \(current rejected: promote it\)$/,
    );
    expect(r.stderr).toContain('1 only with the next password');
    // The current password first, then the next one: two reads.
    expect(listCalls(ACME)).toHaveLength(2);

    orgs[ACME] = { ...orgs[ACME], password: 'env:ACME_OLD_PASSWORD', nextPassword: 'env:OTHER_SL_PASSWORD' };
    const neither = await check(doc, [ACME, '--json']);
    expect(neither.code, shown(neither)).toBe(1);
    expect(JSON.parse(neither.stdout)).toMatchObject({ result: 'rejected', status: 401 });
    expectNoSecrets(r);
    expectNoSecrets(neither);
  });

  it('exits 78 naming the problem when the config is invalid or a credential reference cannot be resolved', async () => {
    const missing = await snapgate(['credentials', 'check'], {
      env: { ...env, SNAPGATE_CONFIG: join(tempDir(), 'absent.yaml') },
    });
    expect(missing.code, shown(missing)).toBe(78);
    expect(missing.stderr).toContain('cannot read the config file');

    const unresolved = await snapgate(['credentials', 'check'], {
      env: {
        ...env,
        ACME_SL_PASSWORD: undefined,
        SNAPGATE_CONFIG: writeConfig(baseConfig(world.standIn, world.issuer)),
      },
    });
    expect(unresolved.code, shown(unresolved)).toBe(78);
    expect(unresolved.stderr).toContain('orgs.Acme-Prod.password');
    expect(unresolved.stderr).toContain('env:ACME_SL_PASSWORD');
    expect(world.standIn.received).toHaveLength(0);
    expectNoSecrets(unresolved);
  });

  it('prints usage with exit 2 for an unknown option or command, and on stdout with exit 0 for --help', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    for (const args of [['--bogus'], ['a', 'b']]) {
      const r = await check(doc, args);
      expect(r.code, shown(r)).toBe(2);
      expect(r.stderr).toContain('usage: snapgate credentials check');
    }
    const wrong = await snapgate(['credentials', 'verify'], { env });
    expect(wrong.code, shown(wrong)).toBe(2);
    const help = await snapgate(['credentials', '--help'], { env });
    expect(help.code, shown(help)).toBe(0);
    expect(help.stdout).toContain('usage: snapgate credentials check');
    expect(world.standIn.received).toHaveLength(0);
  });

  describe('a credentials: jwt org', () => {
    let jwks: Listening;
    /** What the loopback JWKS server publishes; SnapLogic (the stand-in) fetches it on each check. */
    let published: unknown = { keys: [] };
    let key: Awaited<ReturnType<typeof generate>>;

    beforeAll(async () => {
      const server = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(published));
      });
      jwks = await listenOnLoopback(server);
      key = await generate(tempDir(), 'signing.pem');
    });
    afterAll(async () => {
      await jwks.close();
    });

    const input = (): SigningKeyInput => ({ secret: key.pem, state: 'active', kid: key.entries[0]!.kid });

    /** Acme-Prod in jwt as JWT_USER, one identity as MAPPED_USER, signed with the generated key (now active). */
    function jwtDoc(): Record<string, unknown> {
      const doc = baseConfig(world.standIn, world.issuer, {
        signing: {
          issuer: SIGNING_ISSUER,
          keys: [{ ...key.entries[0]!, state: 'active' }],
        },
      });
      const orgs = doc.orgs as Record<string, unknown>;
      orgs[ACME] = {
        pod: world.standIn.url,
        credentials: 'jwt',
        user: JWT_USER,
        identities: [{ user: MAPPED_USER, match: { sub: 'svc-reporting' } }],
      };
      return doc;
    }

    const register = (users: string[]) => {
      world.standIn.setJwtIssuer(
        ACME,
        { issuerId: SIGNING_ISSUER, jwksUrl: `http://127.0.0.1:${jwks.port}/jwks` },
        users,
      );
      world.standIn.setJwtOnly(ACME, true);
    };

    it('says ok for the default and the mapped user when SnapLogic verifies the tokens with snapgate’s JWKS', async () => {
      published = publicJwks(createKeySet([input()]));
      register([JWT_USER, MAPPED_USER]);
      const r = await check(jwtDoc(), [ACME, '--json']);
      expect(r.code, shown(r)).toBe(0);
      expect(jsonLines(r.stdout)).toEqual([
        { org: ACME, identity: 'default', type: 'jwt', user: JWT_USER, result: 'ok', status: 200 },
        { org: ACME, identity: MAPPED_USER, type: 'jwt', user: MAPPED_USER, result: 'ok', status: 200 },
      ]);
      const calls = listCalls(ACME);
      expect(calls.map((c) => [c.auth, c.jwt?.verified, c.jwt?.sub, c.jwt?.kid]).sort()).toEqual(
        [
          ['jwt', true, JWT_USER, key.entries[0]!.kid],
          ['jwt', true, MAPPED_USER, key.entries[0]!.kid],
        ].sort(),
      );
      expectNoSecrets(r, key.secrets);
    });

    it('says rejected (401) for a user SnapLogic does not know, and for every user when the JWKS lacks the key', async () => {
      published = publicJwks(createKeySet([input()]));
      register([JWT_USER]);
      const r = await check(jwtDoc(), [ACME]);
      expect(r.code, shown(r)).toBe(1);
      expect(r.stdout).toMatch(/^Acme-Prod\s+default\s+ok \(200\)$/m);
      expect(r.stdout).toMatch(
        new RegExp(`^Acme-Prod\\s+${MAPPED_USER.replace('.', '\\.')}\\s+rejected \\(401\\)$`, 'm'),
      );

      // Another key published under the same kid: the tokens' signatures no longer verify.
      const stranger = await generate(tempDir(), 'stranger.pem');
      published = publicJwks(createKeySet([{ secret: stranger.pem, state: 'active', kid: key.entries[0]!.kid }]));
      register([JWT_USER, MAPPED_USER]);
      const unpublished = await check(jwtDoc(), [ACME]);
      expect(unpublished.code, shown(unpublished)).toBe(1);
      expect(unpublished.stdout.match(/rejected \(401\)/g), shown(unpublished)).toHaveLength(2);
      expectNoSecrets(r, key.secrets);
      expectNoSecrets(unpublished, [...key.secrets, ...stranger.secrets]);
    });
  });
});
