// The local stack as an operator runs it: `npm run dev:snaplogic` and `npm run dev:issuer` as processes of their own,
// `npm run -s dev:token` printing the token alone on stdout, and the built snapgate on config/snapgate.local.yaml
// (its own ports and Redis here); a seeded run is resumed through snapgate with the minted token. The dev commands say
// everything on stderr, answer /healthz, exit 0 on SIGTERM, and the issuer keeps its key in --state-dir.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { track } from '../helpers/children.js';
import { ROOT, spawnGateway, tempDir, type GatewayProcess } from '../helpers/gateway.js';
import { recordOutput, recordSecret } from '../helpers/leak-scan.js';
import { RedisServer } from '../helpers/redis-server.js';
import { until } from '../helpers/wait.js';

const RUNTIME = '/api/1/rest/public/runtime';
const RUUID = /[0-9a-f]{24}_[0-9a-f-]{36}/;
const credentials = {
  SNAPGATE_DEV_SL_USER: 'local-stack@example.com',
  SNAPGATE_DEV_SL_PASSWORD: `local-stack-${Math.random().toString(36).slice(2)}`,
};
recordSecret(credentials.SNAPGATE_DEV_SL_PASSWORD);

interface DevProcess {
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** The first stderr line matching `pattern`, waited for. */
  line(pattern: RegExp): Promise<RegExpExecArray>;
}

/** Runs one of test/dev/*.ts as its own process (as npm run dev:* does: tsx), collecting its output by line. */
function dev(script: string, args: string[], env: Record<string, string> = {}): DevProcess {
  const proc = track(
    spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/dev', script), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const stdout: string[] = [];
  const stderr: string[] = [];
  for (const [stream, into] of [
    [proc.stdout, stdout],
    [proc.stderr, stderr],
  ] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        into.push(buf.slice(0, i));
        recordOutput(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  return {
    proc,
    stdout,
    stderr,
    exited,
    async line(pattern) {
      let found: RegExpExecArray | undefined;
      await until(
        () => {
          found = stderr.map((l) => pattern.exec(l)).find((m) => m !== null) ?? undefined;
          return found !== undefined || gone;
        },
        20_000,
        () => `${script} to say ${pattern}; it said:\n${stderr.join('\n')}`,
      );
      if (found === undefined) throw new Error(`${script} exited:\n${stderr.join('\n')}`);
      return found;
    },
  };
}

/** `npm run -s dev:token -- ARGS`: exactly what an operator types, stdout and stderr apart. */
async function devToken(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const { stdout, stderr } = await promisify(execFile)('npm', ['run', '-s', 'dev:token', '--', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    timeout: 20_000,
  });
  recordOutput(stderr);
  return { stdout, stderr };
}

/** An IPv4 address of this host that is not loopback, if it has one. */
function lanAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;
}

async function stop(p: DevProcess): Promise<number | null> {
  p.proc.kill('SIGTERM');
  return p.exited;
}

describe('the local stack: dev:snaplogic, dev:issuer, dev:token and snapgate on config/snapgate.local.yaml', () => {
  let redis: RedisServer;
  let standIn: DevProcess;
  let issuer: DevProcess;
  let standInUrl: string;
  let issuerUrl: string;
  let seeded: string[];
  let gateway: GatewayProcess;
  let adminUrl: string;
  const stateDir = tempDir('snapgate-dev-issuer-');

  beforeAll(async () => {
    redis = await RedisServer.start();
    standIn = dev('stand-in.ts', ['--port', '0', '--org', 'Acme-Prod', '--runs', '2', '--step-ms', '300'], credentials);
    issuer = dev('dev-issuer.ts', ['--port', '0', '--state-dir', stateDir]);
    standInUrl = `http://127.0.0.1:${(await standIn.line(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]}`;
    issuerUrl = `http://127.0.0.1:${(await issuer.line(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]}`;
    await standIn.line(/suspended run: Acme-Prod \S+$/);
    seeded = standIn.stderr.flatMap((l) => /^ {2}suspended run: Acme-Prod (\S+)$/.exec(l)?.[1] ?? []);

    // config/snapgate.local.yaml as shipped, with only the addresses moved to this test's own.
    const doc = parse(readFileSync(join(ROOT, 'config/snapgate.local.yaml'), 'utf8')) as {
      orgs: Record<string, { pod: string }>;
      auth: { issuers: { jwksUri: string }[] };
      admin: { port: number };
    };
    expect(doc.orgs['Acme-Prod']!.pod, 'the config points at dev:snaplogic default port').toBe('http://127.0.0.1:8081');
    expect(doc.auth.issuers[0]!.jwksUri).toBe('http://127.0.0.1:8082/.well-known/jwks.json');
    doc.orgs['Acme-Prod']!.pod = standInUrl;
    doc.auth.issuers[0]!.jwksUri = `${issuerUrl}/.well-known/jwks.json`;
    doc.admin.port = 0;
    const configPath = join(tempDir(), 'snapgate.local.yaml');
    writeFileSync(configPath, stringify(doc));
    gateway = await spawnGateway(configPath, {
      built: true,
      env: { ...credentials, SNAPGATE_PORT: '0', SNAPGATE_REDIS_URL: redis.url },
    });
    expect(gateway.port, gateway.stderr.join('\n')).toBeGreaterThan(0);
    const listening = gateway.stderr.find((l) => l.includes('"snapgate listening"'))!;
    adminUrl = `http://127.0.0.1:${(JSON.parse(listening) as { adminPort: number }).adminPort}`;
  });

  afterAll(async () => {
    gateway?.kill('SIGKILL');
    await gateway?.exited;
    for (const p of [standIn, issuer]) if (p?.proc.exitCode === null) p.proc.kill('SIGKILL');
    await redis?.stop();
  });

  it('seeds suspended runs at the stand-in and names them on stderr, nothing on stdout', async () => {
    expect(seeded).toHaveLength(2);
    for (const ruuid of seeded) expect(ruuid).toMatch(RUUID);
    const health = await fetch(`${standInUrl}/healthz`);
    expect(health.status).toBe(200);
    const runs = (await (await fetch(`${standInUrl}/dev/runs`)).json()) as { runs: { ruuid: string; state: string }[] };
    expect(runs.runs.map((r) => [r.ruuid, r.state]).sort()).toEqual(seeded.map((r) => [r, 'Suspended']).sort());
    expect(standIn.stdout).toEqual([]);
    expect(standIn.stderr.join('\n')).not.toContain(credentials.SNAPGATE_DEV_SL_PASSWORD);
  });

  it('mints a token with dev:token: the token alone on stdout, signed by the issuer snapgate trusts', async () => {
    const { stdout, stderr } = await devToken(['--sub', 'svc-billing', '--issuer', issuerUrl]);
    expect(stdout, stderr).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    recordSecret(stdout.trim());
    const claims = JSON.parse(Buffer.from(stdout.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'svc-billing', aud: 'snapgate', iss: 'snapgate-dev-issuer' });
    expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);
    // The issuer says it minted one, never the token itself.
    await issuer.line(/minted a token for sub svc-billing/);
    expect(issuer.stderr.join('\n')).not.toContain(stdout.trim());
    expect(issuer.stdout).toEqual([]);
  });

  it('resumes a seeded run through snapgate with the minted token', async () => {
    const token = (await devToken(['--sub', 'svc-billing', '--issuer', issuerUrl])).stdout.trim();
    recordSecret(token);
    const ruuid = seeded[0]!;
    const res = await fetch(`${gateway.url}${RUNTIME}/start/Acme-Prod/${ruuid}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    const body = await res.text();
    expect(res.status, body).toBe(200);
    const runs = (await (await fetch(`${standInUrl}/dev/runs`)).json()) as {
      runs: { ruuid: string; state: string; resumes: number }[];
    };
    const run = runs.runs.find((r) => r.ruuid === ruuid)!;
    expect(run.resumes).toBe(1);
    expect(run.state).not.toBe('Suspended');
    // Its status through snapgate, then it completes (the stand-in steps every 300 ms).
    await until(
      async () => {
        const status = await fetch(`${gateway.url}${RUNTIME}/Acme-Prod/${ruuid}?level=summary`, {
          headers: { authorization: `Bearer ${token}` },
        });
        return ((await status.json()) as { response_map?: { state?: string } }).response_map?.state === 'Completed';
      },
      10_000,
      () => 'the resumed run to complete',
    );
    // Readiness on the admin listener: Redis and the issuer's keys are usable.
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
  });

  it('seeds one more run over HTTP, which a token with claims (not the sub) may stop', async () => {
    const added = await fetch(`${standInUrl}/dev/runs`, { method: 'POST', body: JSON.stringify({ count: 1 }) });
    expect(added.status).toBe(201);
    const ruuid = ((await added.json()) as { runs: { ruuid: string }[] }).runs[0]!.ruuid;
    const oncall = (
      await devToken(['--sub', 'alice', '--claims', 'groups=["data-eng-oncall"]', '--issuer', issuerUrl])
    ).stdout.trim();
    const other = (await devToken(['--sub', 'svc-unknown', '--issuer', issuerUrl])).stdout.trim();
    recordSecret(oncall);
    recordSecret(other);
    const call = (token: string) =>
      fetch(`${gateway.url}${RUNTIME}/stop/Acme-Prod/${ruuid}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
    const refused = await call(other);
    expect(refused.status, await refused.text()).toBe(403);
    const stopped = await call(oncall);
    expect(stopped.status, await stopped.text()).toBe(200);
  });

  it('refuses a bad dev:token command line on stderr, with nothing on stdout', async () => {
    const failed = await devToken(['--issuer', issuerUrl]).then(
      () => undefined,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(failed?.code).toBe(64);
    expect(failed?.stdout).toBe('');
    expect(failed?.stderr).toContain('--sub is required');
  });

  it('refuses token requests it cannot honour, naming why, and never mints one', async () => {
    const post = async (body: string) => {
      const res = await fetch(`${issuerUrl}/token`, { method: 'POST', body });
      return { status: res.status, body: (await res.json()) as { error?: string; access_token?: string } };
    };
    for (const [body, message] of [
      ['sub=svc-billing', /the body must be JSON/],
      ['{}', /sub must be a non-empty string/],
      ['{"sub":"a","claims":{"exp":1}}', /claims may not set exp/],
      ['{"sub":"a","claims":{"iss":"https://idp.example"}}', /claims may not set iss/],
      ['{"sub":"a","ttl":0}', /ttl must be whole seconds from 1 to 86400/],
      ['{"sub":"a","aud":[1]}', /aud must be a string or a list of strings/],
      [JSON.stringify({ sub: 'a', claims: { pad: 'x'.repeat(70_000) } }), /at most 65536 bytes/],
    ] as const) {
      const answer = await post(body);
      expect(answer.status, body.slice(0, 60)).toBeGreaterThanOrEqual(400);
      expect(answer.body.error, body.slice(0, 60)).toMatch(message);
      expect(answer.body.access_token).toBeUndefined();
    }
  });

  it.skipIf(lanAddress() === undefined)(
    'mints only for callers on its own host, even when it listens on every interface',
    async () => {
      const open = dev('dev-issuer.ts', ['--host', '0.0.0.0', '--port', '0']);
      try {
        const port = (await open.line(/listening on http:\/\/0\.0\.0\.0:(\d+)/))[1];
        const lan = `http://${lanAddress()}:${port}`;
        expect((await fetch(`${lan}/healthz`)).status).toBe(200);
        expect((await fetch(`${lan}/.well-known/jwks.json`)).status).toBe(200);
        const remote = await fetch(`${lan}/token`, { method: 'POST', body: '{"sub":"svc-billing"}' });
        expect(remote.status).toBe(403);
        expect(await remote.text()).not.toMatch(/access_token/);
        const local = await devToken(['--sub', 'svc-billing', '--issuer', `http://127.0.0.1:${port}`]);
        recordSecret(local.stdout.trim());
        expect(local.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
      } finally {
        expect(await stop(open)).toBe(0);
      }
    },
  );

  it('keeps the issuer key in --state-dir (0600) across restarts, and the JWKS file it writes', async () => {
    const kid = ((await (await fetch(`${issuerUrl}/healthz`)).json()) as { kid: string }).kid;
    const keyFile = join(stateDir, 'signing-key.jwk');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const jwks = JSON.parse(readFileSync(join(stateDir, 'jwks.json'), 'utf8')) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual([kid]);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    expect(await stop(issuer)).toBe(0);

    const again = dev('dev-issuer.ts', ['--port', '0', '--state-dir', stateDir]);
    try {
      const port = (await again.line(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1];
      expect(((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { kid: string }).kid).toBe(kid);
      await again.line(/signing key \S+ read from/);
    } finally {
      expect(await stop(again)).toBe(0);
    }
  });

  it('stops the stand-in cleanly on SIGTERM', async () => {
    expect(await stop(standIn)).toBe(0);
    expect(standIn.stderr.at(-1)).toContain('SIGTERM');
  });
});
