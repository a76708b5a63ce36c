// Whole-config reload on a real gateway: the config file read again (gateway.reload(), a change of the file, SIGHUP on
// the built process with workers), what applies at once, what waits for a restart, what a bad config leaves alone.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { configHash } from '../../src/config/reload-plan.js';
import {
  acmeOnlyConfig,
  spawnGateway,
  startReloadableGateway,
  tempDir,
  testPolicy,
  testSecrets,
  type TestGateway,
} from '../helpers/gateway.js';
import { resume, resumeNewRun } from '../helpers/http.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();
const open: TestGateway[] = [];
afterEach(async () => {
  world.standIn.setFault(undefined);
  world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, testSecrets.ACME_SL_PASSWORD);
  for (const gw of open.splice(0)) await gw.close();
});

type Doc = Record<string, any>;

const acmeOnly = (extra: Doc = {}): Doc => acmeOnlyConfig(world.standIn, world.issuer, extra);

async function reloadable(doc: Doc, options: { watchConfig?: boolean; env?: Record<string, string> } = {}) {
  const started = await startReloadableGateway(doc, { ...options, prefix: 'snapgate-reload-' });
  open.push(started.gw);
  return started;
}

const logsNamed = (gw: TestGateway, msg: string) => gw.logs.filter((l) => l.msg === msg);

async function metricsText(gw: TestGateway): Promise<string> {
  return gw.gateway.metrics.registry.metrics();
}

describe('gateway.reload(): what a changed config applies', () => {
  it('applies policy, orgs and limits to the calls after it', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    expect((await resumeNewRun(gw.url, world.standIn, jwt, { org: 'Other-Org' })).status).toBe(403);

    // Other-Org is added and svc-billing may start runs there only; Acme-Prod gets a limit of 1 per minute.
    const next = acmeOnly();
    next.orgs['Other-Org'] = {
      pod: world.standIn.url,
      username: 'env:OTHER_SL_USER',
      password: 'env:OTHER_SL_PASSWORD',
    };
    next.orgs['Acme-Prod'].rateLimit = { writes: { limit: 1, window: '1m' } };
    next.policy = [
      { match: { sub: 'svc-billing' }, orgs: ['Other-Org'], actions: ['runtime.start'] },
      { match: { sub: 'svc-ops' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
    ];
    write(next);
    const result = await gw.gateway.reload('test');
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, needRestart: [], problems: [] });
    expect(result.applied).toEqual(expect.arrayContaining(['orgs.Acme-Prod.rateLimit', 'orgs.Other-Org', 'policy']));

    const other = await resumeNewRun(gw.url, world.standIn, jwt, { org: 'Other-Org' });
    expect(other.status, other.text).toBe(200);
    const denied = await resumeNewRun(gw.url, world.standIn, jwt);
    expect(denied.status).toBe(403);
    expect(denied.json.code).toBe('forbidden');
    const ops = await world.issuer.mint({ sub: 'svc-ops' });
    expect((await resumeNewRun(gw.url, world.standIn, ops)).status).toBe(200);
    const limited = await resumeNewRun(gw.url, world.standIn, ops);
    expect(limited.status, limited.text).toBe(429);
    expect(limited.headers['content-type']).toContain('application/problem+json');
  });

  it('lets a call in flight finish under the config it began on', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    world.standIn.setFault({ kind: 'latency', ms: 800, on: 'start', count: 1 });
    const ruuid = world.standIn.addRun('Acme-Prod');
    const inFlight = resume(gw.url, 'Acme-Prod', ruuid, jwt);
    await until(() => world.standIn.startCalls().some((r) => r.path.includes(ruuid)), 5_000);

    // The org svc-billing is calling is gone from the new config.
    const next = acmeOnly();
    next.orgs = {
      'Other-Org': { pod: world.standIn.url, username: 'env:OTHER_SL_USER', password: 'env:OTHER_SL_PASSWORD' },
    };
    next.policy = [{ match: { sub: 'svc-billing' }, orgs: ['Other-Org'], actions: ['runtime.start'] }];
    write(next);
    expect((await gw.gateway.reload('test')).ok).toBe(true);

    const finished = await inFlight;
    expect(finished.status, finished.text).toBe(200);
    const outcome = gw.audit.find((e) => e.type === 'outcome' && e.ruuid === ruuid);
    expect(outcome).toMatchObject({ org: 'Acme-Prod', decision: 'allowed', status: 200 });
    const after = await resumeNewRun(gw.url, world.standIn, jwt);
    expect(after.status).toBe(403);
  });

  it('accepts a new issuer’s tokens once it is added', async () => {
    const second = await TokenIssuer.start();
    try {
      const { gw, write } = await reloadable(acmeOnly());
      const token = await second.mint({ sub: 'svc-two' });
      expect((await resumeNewRun(gw.url, world.standIn, token)).status).toBe(401);
      const next = acmeOnly();
      next.auth.issuers.push({
        issuer: second.issuer,
        audience: 'snapgate',
        jwksUri: second.jwksUri,
        algorithms: ['ES256'],
      });
      next.policy = [
        { match: { iss: world.issuer.issuer, sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
        { match: { iss: second.issuer, sub: 'svc-two' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
      ];
      write(next);
      expect((await gw.gateway.reload('test')).ok).toBe(true);
      const ok = await resumeNewRun(gw.url, world.standIn, token);
      expect(ok.status, ok.text).toBe(200);
      const billing = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }));
      expect(billing.status, billing.text).toBe(200);
    } finally {
      await second.close();
    }
  });

  it('names the fields that need a restart and leaves them as they run, applying the rest', async () => {
    const { gw, write, path } = await reloadable(acmeOnly());
    const port = gw.gateway.port;
    const next = acmeOnly();
    next.server = { ...next.server, port: port + 1, requestTimeout: '20s' };
    next.upstream = { ...next.upstream, connectTimeout: '3s' };
    next.redis = { url: 'redis://127.0.0.1:1' };
    next.audit = { reads: 'denied', ackTimeout: '2s' };
    next.policy = [];
    write(next);
    const result = await gw.gateway.reload('test');
    expect(result.ok).toBe(true);
    expect([...result.needRestart].sort()).toEqual(
      ['audit.ackTimeout', 'redis', 'server.port', 'server.requestTimeout', 'upstream.connectTimeout'].sort(),
    );
    expect(result.applied).toEqual(expect.arrayContaining(['audit.reads', 'policy']));
    const warned = logsNamed(gw, 'config reload: these fields need a restart and were left as they run');
    expect(warned).toHaveLength(1);
    expect(warned[0]!.fields).toEqual(result.needRestart);
    // Still on its port, without Redis; the policy change applied (nobody is admitted now).
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const refused = await resumeNewRun(gw.url, world.standIn, jwt);
    expect(refused.status).toBe(403);
    expect(gw.gateway.port).toBe(port);
    // The hash shown is the running config's, not the file's: they differ until a restart applies the rest.
    const fileHash = configHash(await loadConfig(path, testSecrets));
    expect(result.hash).not.toBe(fileHash);
    const text = await metricsText(gw);
    expect(text).toContain(`snapgate_config_info{hash="${result.hash}"} 1`);
    expect(logsNamed(gw, 'config reloaded')[0]).toMatchObject({ hash: result.hash, fileHash });
    expect((await gw.gateway.readiness()).checks.redis).toBeUndefined();
  });
});

describe('log.level', () => {
  it('debug adds a line per call (no header, token or body); a reload to info drops them', async () => {
    const { gw, write } = await reloadable(acmeOnly({ log: { level: 'debug' } }));
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const ruuid = world.standIn.addRun('Acme-Prod');
    expect((await resume(gw.url, 'Acme-Prod', ruuid, jwt)).status).toBe(200);
    const calls = () => logsNamed(gw, 'call');
    expect(calls()).toHaveLength(1);
    expect(calls()[0]).toMatchObject({
      level: 'debug',
      method: 'POST',
      action: 'runtime.start',
      org: 'Acme-Prod',
      ruuid,
      caller: 'svc-billing',
      decision: 'allowed',
      status: 200,
      upstreamStatus: 200,
    });
    expect(JSON.stringify(calls()[0])).not.toContain(jwt);
    write(acmeOnly({ log: { level: 'info' } }));
    expect(await gw.gateway.reload('test')).toMatchObject({ ok: true, applied: ['log.level'] });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    expect(calls()).toHaveLength(1);
  });
});

describe('a config that cannot be used changes nothing', () => {
  it('keeps the last good config and logs every bad field in one line', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    const before = gw.gateway.configHash();
    const bad = acmeOnly();
    delete bad.auth.issuers[0].audience;
    bad.orgs['Acme-Prod'].pod = 'not a url';
    bad.policy = [{ match: { sub: 'svc-billing' }, orgs: ['Nope-Org'], actions: ['runtime.start'] }];
    bad.server.maxBodyBytes = -1;
    write(bad);
    const result = await gw.gateway.reload('test');
    expect(result.ok).toBe(false);
    const lines = logsNamed(gw, 'config reload failed; keeping the last good config');
    expect(lines).toHaveLength(1);
    const problems = lines[0]!.problems as string[];
    expect(problems).toEqual(result.problems);
    for (const path of ['auth.issuers.0.audience', 'orgs.Acme-Prod.pod', 'policy.0.orgs.0', 'server.maxBodyBytes']) {
      expect(
        problems.some((p) => p.startsWith(`${path}:`)),
        `${path} in ${problems.join(' | ')}`,
      ).toBe(true);
    }
    expect(gw.gateway.configHash()).toBe(before);
    const ok = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }));
    expect(ok.status, ok.text).toBe(200);
    const text = await metricsText(gw);
    expect(text).toContain('snapgate_config_reloads_total{result="failure"} 1');
    expect(text).toContain(`snapgate_config_info{hash="${before}"} 1`);
  });

  it('fails on a secret that cannot be resolved, naming it and never a value', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    const next = acmeOnly();
    next.orgs['Other-Org'] = {
      pod: world.standIn.url,
      username: 'env:NOT_SET_ANYWHERE',
      password: 'env:OTHER_SL_PASSWORD',
    };
    next.policy.push({ match: { sub: 'svc-billing' }, orgs: ['Other-Org'], actions: ['runtime.start'] });
    write(next);
    const result = await gw.gateway.reload('test');
    expect(result.ok).toBe(false);
    expect(result.problems.join('\n')).toContain('NOT_SET_ANYWHERE');
    const refused = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }), {
      org: 'Other-Org',
    });
    expect(refused.status).toBe(403);
    expect(gw.logLines.join('\n')).not.toContain(testSecrets.OTHER_SL_PASSWORD);
  });

  it('fails on a file that is not YAML and on a missing file, and recovers once it is fixed', async () => {
    const { gw, path, write } = await reloadable(acmeOnly());
    writeFileSync(path, 'orgs: [unclosed\n');
    expect((await gw.gateway.reload('test')).ok).toBe(false);
    write(acmeOnly({ log: { level: 'info' } }));
    const fixed = await gw.gateway.reload('test');
    expect(fixed).toMatchObject({ ok: true, applied: ['log.level'] });
    const text = await metricsText(gw);
    expect(text).toContain('snapgate_config_reloads_total{result="failure"} 1');
    expect(text).toContain('snapgate_config_reloads_total{result="success"} 1');
    expect(text).toContain(`snapgate_config_info{hash="${fixed.hash}"} 1`);
    // One info series: the previous hash is gone.
    expect(text.match(/^snapgate_config_info\{/gm)).toHaveLength(1);
  });
});

describe('the reload series at start-up', () => {
  it('are there at 0, so that an alert on increase() sees the first failure', async () => {
    const { gw } = await reloadable(acmeOnly());
    const text = await metricsText(gw);
    for (const name of ['snapgate_config_reloads_total', 'snapgate_credential_reloads_total']) {
      for (const result of ['success', 'failure']) expect(text).toContain(`${name}{result="${result}"} 0`);
    }
    expect(text).toContain(`snapgate_jwks_fetches_total{issuer="${world.issuer.issuer}",result="error"} 0`);
    expect(text).toContain(`snapgate_config_info{hash="${gw.gateway.configHash()}"} 1`);
  });
});

describe('what triggers a reload', () => {
  it('a change of the config file, once it settles', async () => {
    const { gw, write, dir } = await reloadable(acmeOnly(), { watchConfig: true });
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    // A busy neighbour in the same directory (an audit file, say) does not keep postponing the check.
    const busy = setInterval(() => writeFileSync(join(dir, 'audit.jsonl'), String(Date.now())), 50);
    const next = acmeOnly();
    next.policy = [];
    try {
      write(next);
      await until(
        () => logsNamed(gw, 'config reloaded').length === 1,
        5_000,
        () => 'config reloaded after the write',
      );
    } finally {
      clearInterval(busy);
    }
    expect(logsNamed(gw, 'config reloaded')[0]).toMatchObject({ reason: 'config file change', applied: ['policy'] });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(403);
  });

  it('an unchanged config re-reads the secrets it references', async () => {
    const dir = tempDir('snapgate-reload-secret-');
    const pwFile = join(dir, 'password');
    writeFileSync(pwFile, testSecrets.ACME_SL_PASSWORD);
    const doc = acmeOnly();
    doc.orgs['Acme-Prod'].password = `file:${pwFile}`;
    const { gw } = await reloadable(doc);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    world.standIn.setCredential('Acme-Prod', testSecrets.ACME_SL_USER, 'rotated-Pa55word!');
    writeFileSync(pwFile, 'rotated-Pa55word!');
    const result = await gw.gateway.reload('SIGHUP');
    expect(result).toMatchObject({ ok: true, applied: [] });
    expect(logsNamed(gw, 'config reloaded: unchanged')).toHaveLength(1);
    expect(logsNamed(gw, 'credentials reloaded')).toHaveLength(1);
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    expect(await metricsText(gw)).toContain('snapgate_credential_reloads_total{result="success"} 1');

    // The same file with its secret gone: a failed reload (counted), the last good credentials serve.
    rmSync(pwFile);
    const gone = await gw.gateway.reload('SIGHUP');
    expect(gone.ok).toBe(false);
    expect(gone.problems.join('\n')).toContain(pwFile);
    expect(logsNamed(gw, 'config reload failed; keeping the last good config')).toHaveLength(1);
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    const text = await metricsText(gw);
    expect(text).toContain('snapgate_config_reloads_total{result="failure"} 1');
    expect(text).toContain('snapgate_credential_reloads_total{result="failure"} 1');
  });

  it('reloads asked for at once run one after the other, each completing', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    const next = acmeOnly();
    next.policy = [];
    write(next);
    const results = await Promise.all([gw.gateway.reload('a'), gw.gateway.reload('b'), gw.gateway.reload('c')]);
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    expect(results.map((r) => r.applied.length > 0)).toEqual([true, false, false]);
    expect(new Set(results.map((r) => r.hash)).size).toBe(1);
  });
});

describe('the built process', () => {
  it('reloads every worker on SIGHUP; a bad file is refused by each and the last good config serves', async () => {
    const dir = tempDir('snapgate-reload-proc-');
    const path = join(dir, 'snapgate.yaml');
    const doc = acmeOnly({ server: { host: '127.0.0.1', port: 0, workers: 2, shutdownTimeout: '2s' } });
    doc.log = { level: 'info' };
    // Workers share a port: pick one the primary can bind for both.
    const probe = await spawnFreePort();
    doc.server.port = probe;
    writeFileSync(path, stringify(doc));
    const gw = await spawnGateway(path, { built: true });
    try {
      await until(
        () => gw.listeners() === 2,
        20_000,
        () => `two workers listening; stderr: ${gw.stderr.join('\n')}`,
      );
      const jwt = await world.issuer.mint({ sub: 'svc-billing' });
      expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);

      const next = { ...doc, policy: testPolicy().slice(1) };
      writeFileSync(path, stringify(next));
      const mark = gw.stderr.length;
      gw.kill('SIGHUP');
      const reloaded = () => gw.stderr.slice(mark).filter((l) => l.includes('"msg":"config reloaded"'));
      await until(
        () => reloaded().length >= 2,
        10_000,
        () => `both workers reloaded; ${gw.stderr.slice(mark).join('\n')}`,
      );
      const workers = new Set(reloaded().map((l) => (JSON.parse(l) as { worker?: number }).worker));
      expect(workers).toEqual(new Set([1, 2]));
      for (const l of gw.stderr) expect(JSON.parse(l)).toHaveProperty('pid');
      // stdout carries the audit trail and nothing else (no banner, no log line), relayed from both workers.
      expect(gw.stdout.length).toBeGreaterThan(0);
      for (const l of gw.stdout) expect(JSON.parse(l), l).toMatchObject({ v: 3, chain: expect.any(Object) });
      for (let i = 0; i < 4; i++) expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(403);

      writeFileSync(path, 'auth: 7\n');
      const mark2 = gw.stderr.length;
      gw.kill('SIGHUP');
      const failed = () =>
        gw.stderr.slice(mark2).filter((l) => l.includes('"msg":"config reload failed; keeping the last good config"'));
      await until(
        () => failed().length >= 2,
        10_000,
        () => `both workers refused; ${gw.stderr.slice(mark2).join('\n')}`,
      );
      expect(failed()[0]).toContain('auth');
      const scoped = await world.issuer.mint({ sub: 'x', scope: 'snaplogic:runtime:start', groups: 'data-eng' });
      const served = await resumeNewRun(gw.url, world.standIn, scoped);
      expect(served.status, served.text).toBe(200);
    } finally {
      gw.kill('SIGKILL');
      await gw.exited;
    }
  }, 60_000);
});

/** A port free right now on loopback. */
async function spawnFreePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('a reload during shutdown', () => {
  it('is refused: nothing new is made for a process that is leaving', async () => {
    const { gw, write } = await reloadable(acmeOnly());
    write(acmeOnly({ policy: [] }));
    const stopping = gw.gateway.shutdown(500);
    const result = await gw.gateway.reload('SIGHUP');
    expect(result.ok).toBe(false);
    expect(result.problems.join()).toContain('shutting down');
    await stopping;
    open.splice(open.indexOf(gw), 1);
  });
});
