// snapgate as a real process: bad config stops start-up, SIGHUP and file changes rotate credentials, SIGTERM drains.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  baseConfig,
  spawnGateway,
  tempDir,
  testSecrets,
  withGatewayProcess,
  writeConfig,
  type GatewayProcess,
} from '../helpers/gateway.js';
import { basic, resume, resumeNewRun, send } from '../helpers/http.js';
import { freePort } from '../helpers/redis-server.js';
import { until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();

/** Spawns snapgate, waits for `workers` listeners, expects `calls` resumes to answer 200, then SIGTERM and exit 0. */
async function servesThenStops(
  doc: Record<string, unknown>,
  options: { built?: boolean },
  workers: number,
  calls: number,
): Promise<void> {
  await withGatewayProcess(doc, options, async (gw) => {
    await until(() => gw.listeners() === workers);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const replies = await Promise.all(Array.from({ length: calls }, () => resumeNewRun(gw.url, world.standIn, jwt)));
    expect(replies.map((r) => r.status)).toEqual(Array(calls).fill(200));
    expect(await gw.stop()).toBe(0);
  });
}

describe('start-up with a bad config', () => {
  it('stops with a non-zero exit and names every bad field by its path', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    const bad = {
      ...doc,
      server: { port: 'eighty' },
      auth: { issuers: [{ issuer: 'x', audience: 'a', algorithms: ['none'], jwksUri: world.issuer.jwksUri }] },
      policy: [{ match: {}, orgs: ['Ghost-Org'], actions: ['runtime.start'] }],
      orgs: {
        'Acme-Prod': { pod: 'ftp://elastic.snaplogic.com', username: 'svc@example.com', password: 'hunter2-inline' },
      },
    };
    const gw = await spawnGateway(bad);
    expect(gw.port).toBe(-1);
    const code = await gw.exited;
    expect(code).toBe(78);
    const err = gw.stderr.join('\n');
    for (const path of [
      'server.port',
      'auth.issuers.0.algorithms.0',
      'policy.0.match',
      'orgs.Acme-Prod.pod',
      'orgs.Acme-Prod.username',
      'orgs.Acme-Prod.password',
    ]) {
      expect(err, err).toContain(path);
    }
    expect(err).not.toContain('hunter2-inline');
  });

  it(
    'stops when a credential reference cannot be resolved, ' + 'naming the org and the reference but no value',
    async () => {
      const gw = await spawnGateway(baseConfig(world.standIn, world.issuer), {
        env: {
          ...testSecrets,
          ACME_SL_PASSWORD: undefined,
        },
      });
      expect(await gw.exited).toBe(78);
      const err = gw.stderr.join('\n');
      expect(err).toContain('orgs.Acme-Prod.password');
      expect(err).toContain('env:ACME_SL_PASSWORD');
      expect(err).not.toContain(testSecrets.OTHER_SL_PASSWORD);
    },
  );

  it('stops on a YAML syntax error with its line', async () => {
    const dir = tempDir();
    const path = join(dir, 'snapgate.yaml');
    writeFileSync(path, 'server:\n  port: [8080\n');
    const gw = await spawnGateway(path);
    expect(await gw.exited).toBe(78);
    expect(gw.stderr.join('\n')).toMatch(/line \d/);
  });
});

/**
 * Runs `use` with snapgate spawned on Acme-Prod's password in a file (initially `password`), which SnapLogic also
 * accepts. Afterwards the gateway is killed and SnapLogic takes the test password again, whatever happened.
 */
async function withPasswordFile(
  password: string,
  use: (gw: GatewayProcess, pwFile: string) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  const pwFile = join(dir, 'acme-password');
  writeFileSync(pwFile, `${password}\n`);
  world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, password);
  const doc = baseConfig(world.standIn, world.issuer);
  (doc.orgs as Record<string, Record<string, unknown>>)['Acme-Prod']!.password = `file:${pwFile}`;
  try {
    await withGatewayProcess(writeConfig(doc, dir), {}, (gw) => use(gw, pwFile));
  } finally {
    world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
  }
}

describe('credential rotation', () => {
  it('picks up a changed secret file on SIGHUP, and keeps the last good set when the reload fails', async () => {
    await withPasswordFile('old-password', async (gw, pwFile) => {
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
      expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(
        basic(testSecrets.ACME_SL_USER, 'old-password'),
      );

      // SnapLogic's password is rotated: the old stored one is now rejected → 502.
      world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, 'new-password');
      const rejected = await resumeNewRun(gw.url, world.standIn, jwt);
      expect(rejected.status).toBe(502);
      expect(rejected.json.code).toBe('upstream_credentials_rejected');

      // Operators write the new secret and send SIGHUP.
      writeFileSync(pwFile, 'new-password\n');
      gw.kill('SIGHUP');
      await until(() => gw.stderr.some((l) => l.includes('"credentials reloaded"')));
      const ok = await resumeNewRun(gw.url, world.standIn, jwt);
      expect(ok.status, ok.text).toBe(200);
      expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(
        basic(testSecrets.ACME_SL_USER, 'new-password'),
      );

      // A broken reload (empty file) keeps the last good credentials and says why.
      writeFileSync(pwFile, '');
      gw.kill('SIGHUP');
      await until(() =>
        gw.stderr.some((l) => l.includes('"credential reload failed; keeping the last good credentials"')),
      );
      const still = await resumeNewRun(gw.url, world.standIn, jwt);
      expect(still.status, still.text).toBe(200);
      expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(
        basic(testSecrets.ACME_SL_USER, 'new-password'),
      );
      const all = [...gw.stderr, ...gw.stdout].join('\n');
      expect(all).not.toContain('new-password');
      expect(all).not.toContain('old-password');
    });
  });

  it('picks up a changed secret file without a signal', async () => {
    await withPasswordFile('first-password', async (gw, pwFile) => {
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
      world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, 'second-password');
      writeFileSync(pwFile, 'second-password');
      await until(() => gw.stderr.some((l) => l.includes('"credentials reloaded"')));
      const res = await resumeNewRun(gw.url, world.standIn, jwt);
      expect(res.status, res.text).toBe(200);
      expect(world.standIn.startCalls().at(-1)?.headers.authorization).toBe(
        basic(testSecrets.ACME_SL_USER, 'second-password'),
      );
    });
  });
});

describe('the built gateway (node dist/src/main.js, as deployed)', () => {
  // Built, snapgate parses its config in a worker thread (src/config/load-isolated.ts); from source
  // it parses in process. test/global-setup.ts builds dist/ before the run, so these tests run what the image runs.

  it('stops with exit 78 naming every bad field when the config is bad', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    const gw = await spawnGateway(
      {
        ...doc,
        server: { port: 'eighty' },
        policy: [{ match: {}, orgs: ['Ghost-Org'], actions: ['runtime.start'] }],
      },
      { built: true },
    );
    expect(gw.port).toBe(-1);
    expect(await gw.exited).toBe(78);
    const err = gw.stderr.join('\n');
    expect(err).toContain('server.port');
    expect(err).toContain('policy.0.match');
  });

  it('serves a resume with a good config, on one and on two workers, and exits 0 on SIGTERM', async () => {
    for (const workers of [1, 2]) {
      const doc = baseConfig(world.standIn, world.issuer);
      (doc.server as Record<string, unknown>).workers = workers;
      await servesThenStops(doc, { built: true }, workers, 1);
    }
  });
});

describe('worker processes', () => {
  it('serves from several workers on one port with server.workers, and stops them all on SIGTERM', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    (doc.server as Record<string, unknown>).workers = 2;
    await servesThenStops(doc, {}, 2, 10);
  });

  it('serves /metrics summed over every worker and /readyz for all of them from the primary', async () => {
    const adminPort = await freePort();
    const doc: Record<string, unknown> = {
      ...baseConfig(world.standIn, world.issuer),
      admin: { host: '127.0.0.1', port: adminPort },
    };
    (doc.server as Record<string, unknown>).workers = 2;
    const admin = `http://127.0.0.1:${adminPort}`;
    await withGatewayProcess(doc, {}, async (gw) => {
      await until(() => gw.listeners() === 2);
      await until(async () => (await send(admin, 'GET', '/readyz')).status === 200);
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      // Sequential calls on fresh connections: the primary hands connections to the workers in turn.
      for (let i = 0; i < 6; i++) expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);

      const allowed = (text: string) =>
        text
          .split('\n')
          .filter((l) => l.startsWith('snapgate_requests_total{') && l.includes('decision="allowed"'))
          .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
      const metrics = await send(admin, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(allowed(metrics.text)).toBe(6);

      const ready = await send(admin, 'GET', '/readyz');
      expect(ready.status).toBe(200);
      const workerChecks = Object.entries(ready.json.checks as Record<string, string>).filter(([k]) =>
        k.startsWith('worker '),
      );
      expect(workerChecks).toHaveLength(2);
      expect(workerChecks.every(([, v]) => v === 'ok')).toBe(true);
      expect(ready.json.checks.workers).toBe('ok');

      // A worker that dies makes the gateway not ready until its replacement serves.
      process.kill(Number(workerChecks[0]![0].slice('worker '.length)), 'SIGKILL');
      // Not ready while one is missing ("1 of 2 running") or its replacement has not answered yet.
      await until(async () => (await send(admin, 'GET', '/readyz')).status === 503);
      await until(async () => (await send(admin, 'GET', '/readyz')).status === 200, 10_000);

      expect(await gw.stop()).toBe(0);
    });
  });

  it('exits 78 instead of restarting workers forever when they cannot resolve a credential', async () => {
    const doc = baseConfig(world.standIn, world.issuer);
    (doc.server as Record<string, unknown>).workers = 2;
    const gw = await spawnGateway(doc, { env: { ...testSecrets, ACME_SL_PASSWORD: undefined } });
    expect(await gw.exited).toBe(78);
    expect(gw.port).toBe(-1);
    const err = gw.stderr.join('\n');
    expect(err).toContain('ACME_SL_PASSWORD');
    expect(err).toContain('a worker cannot start with this config');
    expect(err).not.toContain('starting another');
  });
});

describe('graceful shutdown', () => {
  it('lets an in-flight call finish on SIGTERM, refuses new work, and exits 0', async () => {
    const gw = await spawnGateway(baseConfig(world.standIn, world.issuer));
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    world.standIn.setFault({ kind: 'latency', ms: 1_000, count: 1 });
    const ruuid = world.standIn.addRun('Acme-Prod');
    const inFlight = resume(gw.url, 'Acme-Prod', ruuid, jwt);
    await until(() => world.standIn.startCalls().some((c) => c.path.endsWith(ruuid)));
    gw.kill('SIGTERM');
    await until(() => gw.stderr.some((l) => l.includes('"draining"')));

    // Still listening while the call is in flight: not ready, and new work is refused.
    const ready = await send(gw.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    // The callers' port says not ready; the checks (shutdown: draining) are on the admin listener.
    expect(ready.json).toEqual({ status: 'not_ready' });
    const before = world.standIn.received.length;
    const late = await resumeNewRun(gw.url, world.standIn, jwt);
    expect(late.status).toBe(503);
    expect(late.json.code).toBe('shutting_down');
    expect(late.headers['retry-after']).toBe('1');
    expect(world.standIn.received.length).toBe(before);

    const res = await inFlight;
    expect(res.status, res.text).toBe(200);
    expect(await gw.exited).toBe(0);
    expect(gw.stdout.some((l) => l.includes(ruuid) && l.includes('"decision":"allowed"'))).toBe(true);
  });
});
