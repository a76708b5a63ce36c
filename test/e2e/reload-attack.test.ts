// Whole-config reload under attack: SIGHUP at awkward moments (start-up, a worker being replaced), reload storms
// while calls run (no failed call, no leaked watcher or timer), and a reload while an issuer's IdP is down.
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  acmeOnlyConfig,
  ROOT,
  startReloadableGateway,
  startTestGateway,
  tempDir,
  testSecrets,
  type TestGateway,
} from '../helpers/gateway.js';
import { resumeNewRun } from '../helpers/http.js';
import { TokenIssuer } from '../helpers/token-issuer.js';
import { track } from '../helpers/children.js';
import { recordOutput } from '../helpers/leak-scan.js';
import { freePort } from '../helpers/redis-server.js';
import { sleep, until } from '../helpers/wait.js';
import { useRedis, useStandInAndIssuer } from '../helpers/world.js';
import { resume } from '../helpers/http.js';

const world = useStandInAndIssuer();
const redis = useRedis();
const open: TestGateway[] = [];
afterEach(async () => {
  world.standIn.setFault(undefined);
  world.issuer.mode = 'up';
  for (const gw of open.splice(0)) await gw.close();
});

type Doc = Record<string, any>;

const acmeOnly = (extra: Doc = {}): Doc => acmeOnlyConfig(world.standIn, world.issuer, extra);

async function reloadable(doc: Doc, options: { watchConfig?: boolean; env?: Record<string, string> } = {}) {
  const started = await startReloadableGateway(doc, { ...options, prefix: 'snapgate-reload-attack-' });
  open.push(started.gw);
  return started;
}

/** Runs the built gateway on `doc` (dist/src/main.js), its stderr lines collected; `track`ed so it never outlives us. */
function spawnBuilt(doc: Doc) {
  const path = join(tempDir('snapgate-reload-attack-proc-'), 'snapgate.yaml');
  writeFileSync(path, stringify(doc));
  const proc = track(
    spawn(process.execPath, [join(ROOT, 'dist/src/main.js')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, SNAPGATE_CONFIG: path, ...testSecrets },
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  const stderr: string[] = [];
  let buf = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      recordOutput(buf.slice(0, i));
      stderr.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  return { proc, path, stderr, exited, gone: () => gone };
}

/** A TCP server that accepts connections and never answers: a Redis that hangs. Counts its connections. */
async function silentServer(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
  });
  let count = 0;
  server.on('connection', () => (count += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('SIGHUP before the gateway serves', () => {
  it('does not kill a process still starting; the reload happens once it serves', async () => {
    // A Redis that accepts and never answers holds start-up for connectTimeout: the SIGHUP lands in that window.
    const redis = await silentServer();
    const doc = acmeOnly({ redis: { url: `redis://127.0.0.1:${redis.port}`, connectTimeout: '3s' } });
    doc.log = { level: 'info' };
    const gw = spawnBuilt(doc);
    try {
      await until(
        () => redis.connections() > 0 || gw.gone(),
        10_000,
        () => `connecting to Redis; stderr: ${gw.stderr.join('\n')}`,
      );
      expect(gw.stderr.some((l) => l.includes('"snapgate listening"'))).toBe(false);
      gw.proc.kill('SIGHUP');
      await until(
        () => gw.stderr.some((l) => l.includes('"snapgate listening"')) || gw.gone(),
        15_000,
        () => `listening or exited; stderr: ${gw.stderr.join('\n')}`,
      );
      expect(gw.gone(), `killed by SIGHUP while starting; stderr: ${gw.stderr.join('\n')}`).toBe(false);
      // The file may have changed after start-up read it: the SIGHUP is not lost, it reloads once serving.
      await until(
        () => gw.stderr.some((l) => l.includes('"msg":"config reloaded')),
        5_000,
        () => `the SIGHUP's reload; stderr: ${gw.stderr.join('\n')}`,
      );
    } finally {
      gw.proc.kill('SIGKILL');
      await gw.exited;
      await redis.close();
    }
  }, 30_000);

  it('with workers, a SIGHUP forwarded to workers still starting kills none; each reloads once it serves', async () => {
    const redis = await silentServer();
    const doc = acmeOnly({
      server: { host: '127.0.0.1', port: await freePort(), workers: 2, shutdownTimeout: '2s' },
      redis: { url: `redis://127.0.0.1:${redis.port}`, connectTimeout: '3s' },
    });
    doc.log = { level: 'info' };
    const gw = spawnBuilt(doc);
    try {
      await until(
        () => redis.connections() >= 2 || gw.gone(),
        15_000,
        () => `both workers connecting to Redis; stderr: ${gw.stderr.join('\n')}`,
      );
      gw.proc.kill('SIGHUP');
      await until(
        () => gw.stderr.filter((l) => l.includes('"msg":"config reloaded')).length >= 2 || gw.gone(),
        20_000,
        () => `both workers reloaded; stderr: ${gw.stderr.join('\n')}`,
      );
      expect(gw.stderr.filter((l) => l.includes('worker died'))).toEqual([]);
      expect(gw.stderr.filter((l) => l.includes('"snapgate listening"'))).toHaveLength(2);
    } finally {
      gw.proc.kill('SIGKILL');
      await gw.exited;
      await redis.close();
    }
  }, 40_000);
});

describe('a reload that changes auth while an IdP is down', () => {
  it('keeps the keys of the issuers it did not change: their callers are still served', async () => {
    const second = await TokenIssuer.start();
    try {
      const { gw, write } = await reloadable(acmeOnly());
      const before = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }));
      expect(before.status, before.text).toBe(200);
      // The first issuer's IdP goes down; the keys snapgate fetched keep serving (stale-if-error, maxStale).
      world.issuer.mode = 'error';
      const next = acmeOnly();
      next.auth.issuers.push(second.configEntry());
      next.policy = [
        { match: { iss: world.issuer.issuer, sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
        { match: { iss: second.issuer, sub: 'svc-two' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
      ];
      write(next);
      const result = await gw.gateway.reload('test');
      expect(result.ok, JSON.stringify(result)).toBe(true);
      expect(result.applied).toEqual(expect.arrayContaining(['auth.issuers']));
      const after = await resumeNewRun(gw.url, world.standIn, await world.issuer.mint({ sub: 'svc-billing' }));
      expect(after.status, after.text).toBe(200);
      const added = await resumeNewRun(gw.url, world.standIn, await second.mint({ sub: 'svc-two' }));
      expect(added.status, added.text).toBe(200);
      expect((await gw.gateway.readiness()).checks.jwks).toBe('ok');
    } finally {
      await second.close();
    }
  }, 20_000);
});

describe('a reload storm while calls run', () => {
  it('serves every call (each under one whole config) through 30 reloads that swap orgs, limits and policy', async () => {
    const dir = tempDir('snapgate-storm-secret-');
    const pwFile = join(dir, 'password');
    writeFileSync(pwFile, testSecrets.ACME_SL_PASSWORD);
    const variant = (i: number): Doc => {
      const doc = acmeOnly();
      doc.orgs['Acme-Prod'].password = `file:${pwFile}`;
      // Every other variant has a second org (a new credential store) and a limit; the policy order flips.
      if (i % 2 === 1) {
        doc.orgs['Other-Org'] = {
          pod: world.standIn.url,
          username: 'env:OTHER_SL_USER',
          password: 'env:OTHER_SL_PASSWORD',
        };
        doc.orgs['Acme-Prod'].rateLimit = { writes: { limit: 100_000, window: '1m' } };
        doc.policy.unshift({ match: { sub: 'svc-ops' }, orgs: ['Other-Org'], actions: ['runtime.start'] });
      }
      doc.log = { level: i % 3 === 0 ? 'debug' : 'info' };
      return doc;
    };
    const { gw, write } = await reloadable(variant(0));
    const jwt = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
    let stop = false;
    const statuses: number[] = [];
    const caller = async () => {
      while (!stop) {
        const r = await resumeNewRun(gw.url, world.standIn, jwt);
        statuses.push(r.status);
        if (r.status !== 200) throw new Error(`call refused during the storm: ${r.status} ${r.text}`);
      }
    };
    const callers = [caller(), caller(), caller(), caller()];
    const results = [];
    for (let i = 1; i <= 30; i++) {
      write(variant(i));
      results.push(await gw.gateway.reload(`storm ${i}`));
    }
    stop = true;
    await Promise.all(callers);
    expect(
      results.every((r) => r.ok),
      JSON.stringify(results.filter((r) => !r.ok)),
    ).toBe(true);
    expect(statuses.length).toBeGreaterThan(30);
    const text = await gw.gateway.metrics.registry.metrics();
    expect(text.match(/^snapgate_config_info\{/gm)).toHaveLength(1);
    expect(text).toContain(`snapgate_config_info{hash="${gw.gateway.configHash()}"} 1`);
    expect(text).toContain('snapgate_config_reloads_total{result="success"} 30');
    // Every audited outcome of the storm is whole: an allowed call has its attempt and one outcome.
    const outcomes = gw.audit.filter((e) => e.type === 'outcome');
    expect(outcomes).toHaveLength(statuses.length);
    expect(new Set(outcomes.map((e) => e.attemptId)).size).toBe(outcomes.length);
    // No secret in any line the storm wrote: the password (read from its file 30 times), its Basic header.
    const basic = Buffer.from(`${testSecrets.ACME_SL_USER}:${testSecrets.ACME_SL_PASSWORD}`).toString('base64');
    for (const line of [...gw.logLines, ...gw.auditLines]) {
      for (const secret of [testSecrets.ACME_SL_PASSWORD, testSecrets.OTHER_SL_PASSWORD, basic, jwt]) {
        expect(line.includes(secret), line).toBe(false);
      }
    }
  }, 60_000);
});

describe('the config file watch', () => {
  it('fires once for a ConfigMap-style swap of the ..data link, and the new config serves', async () => {
    const dir = tempDir('snapgate-configmap-');
    const publish = (version: string, doc: Doc) => {
      mkdirSync(join(dir, version));
      writeFileSync(join(dir, version, 'snapgate.yaml'), stringify(doc));
      // What the kubelet does: a new timestamped directory, a temporary link to it renamed over ..data.
      symlinkSync(version, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    publish('..2026_12_02_1', acmeOnly());
    symlinkSync('..data/snapgate.yaml', join(dir, 'snapgate.yaml'));
    const path = join(dir, 'snapgate.yaml');
    const gw = await startTestGateway(acmeOnly(), testSecrets, { configPath: path, watchConfig: true });
    open.push(gw);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);

    publish('..2026_12_02_2', acmeOnly({ policy: [] }));
    rmSync(join(dir, '..2026_12_02_1'), { recursive: true });
    const reloaded = () => gw.logs.filter((l) => String(l.msg).startsWith('config reload'));
    await until(
      () => reloaded().length > 0,
      5_000,
      () => 'a reload after the swap',
    );
    await sleep(1_000);
    expect(reloaded().map((l) => l.msg)).toEqual(['config reloaded']);
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(403);
  });

  it('a file truncated mid-write and completed within the settle time is read once, whole', async () => {
    const { gw, path } = await reloadable(acmeOnly(), { watchConfig: true });
    const next = stringify(acmeOnly({ policy: [] }));
    writeFileSync(path, next.slice(0, Math.floor(next.length / 2)));
    await sleep(50);
    writeFileSync(path, next);
    const reloaded = () => gw.logs.filter((l) => String(l.msg).startsWith('config reload'));
    await until(
      () => reloaded().length > 0,
      5_000,
      () => 'a reload after the write',
    );
    await sleep(800);
    expect(reloaded().map((l) => l.msg)).toEqual(['config reloaded']);
  });
});

describe('a reload with Redis', () => {
  it('removing the org of a resume in flight with an Idempotency-Key: the call ends, its record and lock settle, one outcome', async () => {
    const doc = acmeOnly({ redis: { url: redis.server.url } });
    const { gw, write } = await reloadable(doc);
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    const ruuid = world.standIn.addRun('Acme-Prod');
    world.standIn.setFault({ kind: 'latency', ms: 800, on: 'start', count: 1 });
    const key = `attack-${ruuid.slice(0, 12)}`;
    const inFlight = resume(gw.url, 'Acme-Prod', ruuid, jwt, { 'idempotency-key': key });
    await until(
      () => world.standIn.startCalls().some((r) => r.path.includes(ruuid)),
      5_000,
      () => 'the resume at SnapLogic',
    );
    const next = acmeOnly({ redis: { url: redis.server.url } });
    next.orgs = {
      'Other-Org': { pod: world.standIn.url, username: 'env:OTHER_SL_USER', password: 'env:OTHER_SL_PASSWORD' },
    };
    next.policy = [{ match: { sub: 'svc-billing' }, orgs: ['Other-Org'], actions: ['runtime.start'] }];
    write(next);
    expect((await gw.gateway.reload('test')).ok).toBe(true);
    const finished = await inFlight;
    expect(finished.status, finished.text).toBe(200);
    const outcomes = gw.audit.filter((e) => e.type === 'outcome' && e.ruuid === ruuid);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ org: 'Acme-Prod', decision: 'allowed', status: 200 });
    // The record was completed (not left pending) and the lock goes once its hold after the resume ends.
    const records = await redis.client.keys('idem:v1:*');
    expect(records).toHaveLength(1);
    // 'd': done, its answer stored for a replay ('f' would be a record still in flight).
    expect(await redis.client.hget(records[0]!, 'st')).toBe('d');
    await until(
      async () => (await redis.client.keys('run:{org:Acme-Prod}:*')).length === 0,
      5_000,
      () => 'the run lock released',
    );
    expect(world.standIn.startCalls().filter((r) => r.path.includes(ruuid))).toHaveLength(1);
  }, 20_000);

  it('reloads while Redis is stalled (SIGSTOP) without waiting on it; calls keep their fallback', async () => {
    const { gw, write } = await reloadable(acmeOnly({ redis: { url: redis.server.url } }));
    redis.server.pause();
    try {
      write(acmeOnly({ redis: { url: redis.server.url }, log: { level: 'info' } }));
      const started = Date.now();
      const result = await gw.gateway.reload('test');
      expect(result, JSON.stringify(result)).toMatchObject({ ok: true, applied: ['log.level'] });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      redis.server.resume();
    }
  });
});

describe('two workers behind the primary’s admin port', () => {
  it('after a SIGHUP each worker reloads and /metrics shows one config hash, one build, sinks up, none in flight', async () => {
    const adminPort = await freePort();
    const doc = acmeOnly({
      server: { host: '127.0.0.1', port: await freePort(), workers: 2, shutdownTimeout: '2s' },
      admin: { host: '127.0.0.1', port: adminPort },
    });
    doc.log = { level: 'info' };
    const gw = spawnBuilt(doc);
    const scrape = async () => (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const series = (text: string, name: string) =>
      text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
    try {
      await until(
        () => gw.stderr.filter((l) => l.includes('"snapgate listening"')).length === 2 || gw.gone(),
        20_000,
        () => `two workers listening; stderr: ${gw.stderr.join('\n')}`,
      );
      const next = { ...doc, policy: [] };
      writeFileSync(gw.path, stringify(next));
      gw.proc.kill('SIGHUP');
      await until(
        () => gw.stderr.filter((l) => l.includes('"msg":"config reloaded"')).length >= 2,
        10_000,
        () => `both reloaded; stderr: ${gw.stderr.join('\n')}`,
      );
      const text = await scrape();
      const hashes = gw.stderr
        .filter((l) => l.includes('"msg":"config reloaded"'))
        .map((l) => (JSON.parse(l) as { hash: string }).hash);
      expect(new Set(hashes).size).toBe(1);
      expect(series(text, 'snapgate_config_info')).toEqual([`snapgate_config_info{hash="${hashes[0]}"} 1`]);
      expect(series(text, 'snapgate_build_info')).toHaveLength(1);
      expect(series(text, 'snapgate_build_info')[0]).toMatch(/ 1$/);
      expect(series(text, 'snapgate_in_flight_calls')).toEqual(['snapgate_in_flight_calls 0']);
      const up = series(text, 'snapgate_audit_sink_up');
      expect(up.length).toBeGreaterThan(0);
      for (const l of up) expect(l).toMatch(/ 1$/);
      // Each worker reloads on the SIGHUP and on the file change it watches (the later of the two finds it unchanged).
      const reloads = series(text, 'snapgate_config_reloads_total');
      // The failure series is there from start-up, at 0 (an alert on increase() sees the first one).
      expect(reloads.filter((l) => l.includes('failure'))).toEqual([
        'snapgate_config_reloads_total{result="failure"} 0',
      ]);
      expect(Number(reloads.find((l) => l.includes('success'))?.split(' ')[1])).toBeGreaterThanOrEqual(2);
    } finally {
      gw.proc.kill('SIGKILL');
      await gw.exited;
    }
  }, 40_000);
});

describe('a reload that shutdown overtakes', () => {
  it('is not applied once shutdown has begun: nothing swapped in or logged as reloaded after the stop', async () => {
    const slow = await TokenIssuer.start();
    slow.mode = 'hang';
    try {
      const { gw, write } = await reloadable(acmeOnly());
      const next = acmeOnly();
      next.auth.issuers.push(slow.configEntry({ jwks: { timeout: '3s' } }));
      next.policy = [
        { match: { iss: world.issuer.issuer, sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
      ];
      next.orgs['Other-Org'] = {
        pod: world.standIn.url,
        username: 'env:OTHER_SL_USER',
        password: 'env:OTHER_SL_PASSWORD',
      };
      write(next);
      // The new issuer's keys are waited for (up to 5 s) before the swap; shutdown begins meanwhile.
      const reloading = gw.gateway.reload('test');
      await until(
        () => slow.jwksFetches > 0,
        5_000,
        () => 'the new issuer asked for its keys',
      );
      const before = gw.gateway.configHash();
      await gw.gateway.shutdown(500);
      open.splice(open.indexOf(gw), 1);
      const result = await reloading;
      expect(result.ok, JSON.stringify(result)).toBe(false);
      expect(result.problems.join()).toContain('shutting down');
      expect(gw.gateway.configHash()).toBe(before);
      const stopped = gw.logs.findIndex((l) => l.msg === 'stopped');
      expect(gw.logs.slice(stopped).filter((l) => String(l.msg).startsWith('config reloaded'))).toEqual([]);
    } finally {
      await slow.close();
    }
  }, 20_000);
});

/** The same admission as acmeOnly's policy, written differently (a config that changes, serving the same callers). */
const testPolicyFor = () => [
  { match: { sub: 'svc-billing' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
  { match: { sub: 'svc-nobody' }, orgs: ['Acme-Prod'], actions: ['runtime.start'] },
];

describe('a watched file rewritten in a loop while calls run', () => {
  it('fails no call and ends on the last content written', async () => {
    const { gw, write } = await reloadable(acmeOnly(), { watchConfig: true });
    const jwt = await world.issuer.mint({ sub: 'svc-billing' });
    let stop = false;
    const failures: string[] = [];
    const caller = async () => {
      while (!stop) {
        const r = await resumeNewRun(gw.url, world.standIn, jwt);
        if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
      }
    };
    const callers = [caller(), caller()];
    // Writes closer together than the settle time, then some further apart: one reload per quiet spell.
    for (let i = 0; i < 40; i++) {
      const doc = acmeOnly({ log: { level: i % 2 === 0 ? 'info' : 'debug' } });
      if (i % 3 === 0) doc.policy = testPolicyFor();
      write(doc);
      await sleep(i < 30 ? 25 : 250);
    }
    const last = acmeOnly({ log: { level: 'info' } });
    write(last);
    await until(
      () => gw.logs.some((l) => l.msg === 'config reloaded' && (l.applied as string[]).includes('log.level')),
      5_000,
      () => 'a reload',
    );
    await sleep(1_000);
    stop = true;
    await Promise.all(callers);
    expect(failures).toEqual([]);
    expect(gw.logs.filter((l) => l.msg === 'config reload failed; keeping the last good config')).toEqual([]);
    const text = await gw.gateway.metrics.registry.metrics();
    expect(text.match(/^snapgate_config_info\{/gm)).toHaveLength(1);
    const reloadedTo = gw.logs.filter((l) => l.msg === 'config reloaded').at(-1)!.hash;
    expect(gw.gateway.configHash()).toBe(reloadedTo);
    // Written last, the info level is what runs: a debug line would show here.
    const mark = gw.logs.length;
    expect((await resumeNewRun(gw.url, world.standIn, jwt)).status).toBe(200);
    expect(gw.logs.slice(mark).filter((l) => l.msg === 'call')).toEqual([]);
  }, 30_000);
});
