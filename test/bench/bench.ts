// `npm run bench`: snapgate (built, JWT + Redis rate limits + Redis audit + the run lock on resumes) against a bare
// Node proxy, same stand-in, same load, in one run: resumes (a)-(d) and a status read (e).
// Prints a table of ratios to the bare proxy and writes reports/bench.json.
import { generateKeyPairSync } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import ts from 'typescript';
import { stringify } from 'yaml';
import { ROOT, tempDir } from '../helpers/gateway.js';
import { RedisServer } from '../helpers/redis-server.js';
import { track } from '../helpers/children.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// Latency is compared at a fixed offered load both targets sustain: at saturation, a closed loop of
// N connections has latency = N / throughput (Little's law), which only restates the req/s ratio.
const FIXED_RATE = Number(process.env.BENCH_FIXED_RATE ?? 1_000);
const ORGS = Number(process.env.BENCH_ORGS ?? 1_000);
const CALLERS = 100;
// The run whose status (e) reads. Resumes each name another run: snapgate lets one resume of a run be in flight at a
// time (the run lock), and keeps a resumed run closed to resumes for a while after (runLock.holdAfterResume), so
// resumes of one run from 50 connections would measure 409 run_busy, not the resume path.
const RUUID = '52e99318640a9a03d8681d0d_e74cbd53-806e-464a-8190-52226c49bff5';
let resumed = 0;
/** A run never resumed before in this bench: a counter in the id's first part. */
const nextRun = () => `${(resumed++).toString(16).padStart(24, '0')}${RUUID.slice(24)}`;
const env = { PATH: process.env.PATH, BENCH_SL_USER: 'bench@example.com', BENCH_SL_PASSWORD: 'bench-password' };

interface Proc {
  proc: ChildProcess;
  port: number;
}

/** Starts a child and waits for a line that yields its port. */
function start(
  args: string[],
  extraEnv: Record<string, string>,
  portOf: (line: string) => number | undefined,
  logTo?: string,
): Promise<Proc> {
  const proc = track(
    spawn(process.execPath, args, { cwd: ROOT, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString();
      for (const line of buf.split('\n')) {
        const port = portOf(line);
        if (port !== undefined) {
          proc.stdout.off('data', onData);
          proc.stderr.off('data', onData);
          if (logTo !== undefined) {
            const file = createWriteStream(logTo);
            proc.stdout.pipe(file);
            proc.stderr.pipe(file);
          } else {
            proc.stdout.resume();
            proc.stderr.resume();
          }
          resolve({ proc, port });
          return;
        }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${buf}`)));
  });
}

/** SIGTERMs a child and waits (up to 15 s) for it to exit, so a CPU profile it writes on exit is complete. */
function stop(p: Proc): Promise<void> {
  if (p.proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 15_000);
    p.proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    p.proc.kill('SIGTERM');
  });
}

const readyLine = (line: string) => (line.startsWith('ready ') ? Number(line.slice(6)) : undefined);
const listeningLine = (line: string) => {
  if (!line.includes('"snapgate listening"')) return undefined;
  return (JSON.parse(line) as { port: number }).port;
};

/** A memory field of /proc/<pid>/status, MB: VmHWM is the peak resident size, VmRSS the current one. */
function statusMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024);
}
const peakRssMb = (pid: number) => statusMb(pid, 'VmHWM');
const rssMb = (pid: number) => statusMb(pid, 'VmRSS');

/** Peak RSS over a process and its children (workers), MB. */
function peakRssTreeMb(pid: number): number {
  let total = peakRssMb(pid);
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    for (const c of children) total += peakRssMb(Number(c));
  } catch {
    // no children file: single process
  }
  return total;
}

/** One target's figures for one case (the JSON report holds these; test/e2e/bench.test.ts reads them). */
export interface Run {
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  non2xx: number;
  statuses: Record<string, number>;
  /** CPU time (user + system, all threads) the target spent per answered request, µs. */
  cpuUs: number;
  /**
   * The same per answered request for the whole machine and for the other parts (Redis, stand-in, load generator), µs.
   */
  shares: Record<string, number>;
}

/** What `reports/bench.json` holds. */
export interface BenchReport {
  date: string;
  machine: { cores: number; model: string | undefined; node: string };
  connections: number;
  durationSec: number;
  rounds: number;
  fixedRate: number;
  /** Per case, per target: bare, snapgate, and the floors (floor, floor-2w) in the cases they serve. */
  results: Record<string, { bare: Run; snapgate: Run; floor?: Run; 'floor-2w'?: Run }>;
  rss: { bare: number; snapgate: number };
  rssAtStart: { bare: number; snapgate: number };
  /** Top-level Redis commands per allowed call: (a)'s resumes, and (e)'s status reads when (e) ran. */
  roundTrips: number;
  statusRoundTrips: number | undefined;
  /** The same per target, for (a) and (e). */
  commands: Record<string, Record<string, number>>;
  /** Bytes allocated per allowed call of (a), per target (BENCH_ALLOC=0 skips it). */
  alloc: Record<string, Allocation> | undefined;
  workers: { one: Run; two: Run; rssTwo: number } | undefined;
  budget: Record<string, boolean>;
}

/** Processes whose CPU time is shared out per request besides the target's: filled in by main. */
const others: Record<string, number> = {};

/** CPU time (user + system, all threads) a process has used so far, µs. */
function cpuTimeUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Busy CPU time of the whole machine so far (all cores, everything but idle and iowait), µs. */
function machineTimeUs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle (3) and iowait (4).
  return f.slice(0, 8).reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0) * 10_000;
}

/** Snapshots the machine's and the other parts' CPU time; the returned function gives µs per request since. */
function sharesSince(): (requests: number) => Record<string, number> {
  const before = {
    machine: machineTimeUs(),
    ...Object.fromEntries(Object.entries(others).map(([k, pid]) => [k, cpuTimeUs(pid)])),
  };
  return (requests) => {
    const now: Record<string, number> = {
      machine: machineTimeUs(),
      ...Object.fromEntries(Object.entries(others).map(([k, pid]) => [k, cpuTimeUs(pid)])),
    };
    return Object.fromEntries(
      Object.entries(before).map(([k, v]) => [k, Math.round((now[k]! - v) / Math.max(1, requests))]),
    );
  };
}

/** One request of a scenario: a resume (POST, the default) or a read (GET). */
interface Pick {
  path: string;
  token: string;
  method?: 'GET' | 'POST';
}

async function load(port: number, pick: () => Pick, pid?: number): Promise<Run> {
  const cpuBefore = pid !== undefined ? cpuTimeUs(pid) : 0;
  const shares = sharesSince();
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration: DURATION,
    requests: [
      {
        setupRequest: (req) => {
          const { path, token, method = 'POST' } = pick();
          return { ...req, method, path, headers: { ...req.headers, authorization: `Bearer ${token}` } };
        },
      },
    ],
  });
  const statuses: Record<string, number> = {};
  for (const [k, v] of Object.entries(result.statusCodeStats ?? {})) statuses[k] = (v as { count: number }).count;
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    p999: (result.latency as unknown as Record<string, number>).p99_9 ?? result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    statuses,
    cpuUs: pid !== undefined ? (cpuTimeUs(pid) - cpuBefore) / Math.max(1, result.requests.total) : 0,
    shares: shares(result.requests.total),
  };
}

/**
 * Open-loop load for the latency comparison: requests leave on a fixed schedule (`rate` per second)
 * whatever the answers do, and latency counts from the scheduled time, so a stall is not hidden
 * by requests that were never sent (coordinated omission). autocannon's overallRate sends each
 * second's quota in a burst, which measures its own queueing.
 */
async function loadAtRate(port: number, pick: () => Pick, rate: number, pid: number): Promise<Run> {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: CONNECTIONS });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const cpuBefore = cpuTimeUs(pid);
  const shares = sharesSince();
  const total = Math.round(rate * DURATION);
  const answered: Promise<void>[] = [];
  const start = performance.now();
  let sent = 0;
  const send = (scheduled: number) =>
    new Promise<void>((done) => {
      const { path, token, method = 'POST' } = pick();
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          method,
          agent,
          headers: { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'content-length': '0' } : {}) },
        },
        (res) => {
          res.resume();
          res.once('end', () => {
            latencies.push(performance.now() - scheduled);
            statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
            done();
          });
        },
      );
      req.once('error', () => {
        errors += 1;
        done();
      });
      req.end();
    });
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; sent < due; sent++) answered.push(send(start + (sent / rate) * 1000));
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(answered);
  agent.destroy();
  latencies.sort((x, y) => x - y);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const elapsed = (performance.now() - start) / 1000;
  return {
    rps: Math.round(latencies.length / elapsed),
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    errors,
    non2xx: Object.entries(statuses).reduce((n, [k, v]) => (k.startsWith('2') ? n : n + v), 0),
    statuses,
    cpuUs: (cpuTimeUs(pid) - cpuBefore) / Math.max(1, latencies.length),
    shares: shares(latencies.length),
  };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The middle value (the mean of the middle two for an even count): one round hit by a stall does not move it. */
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : mean([s[mid - 1]!, s[mid]!]);
};
function combine(runs: Run[]): Run {
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    rps: Math.round(median(runs.map((r) => r.rps))),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    p999: median(runs.map((r) => r.p999)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    statuses,
    cpuUs: Math.round(median(runs.map((r) => r.cpuUs))),
    shares: Object.fromEntries(
      Object.keys(runs[0]?.shares ?? {}).map((k) => [k, Math.round(median(runs.map((r) => r.shares[k] ?? 0)))]),
    ),
  };
}

/** Top-level Redis commands (what a client sends), from INFO commandstats; commands run inside scripts are left out. */
async function clientCommands(redis: Redis, withXadd = false): Promise<number> {
  const info = await redis.info('commandstats');
  const topLevel = [
    'evalsha',
    'eval',
    'evalsha_ro',
    'eval_ro',
    'fcall',
    'zrem',
    'ping',
    'script',
    'xadd',
    'get',
    'set',
    'multi',
    'exec',
  ];
  // get/set/xadd also run inside scripts; the bench's own client issues none, and snapgate issues them only from
  // scripts. The floors send XADD straight (withXadd counts it).
  const inScripts = new Set(withXadd ? ['get', 'set'] : ['get', 'set', 'xadd']);
  let n = 0;
  for (const cmd of topLevel) {
    if (inScripts.has(cmd)) continue;
    n += Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  }
  return n;
}

/** What a target allocated per answered call of one scenario, and where (see test/bench/alloc-self.ts). */
export interface Allocation {
  perCall: number;
  calls: number;
  byFunction: { name: string; bytes: number }[];
  byOwnFrame: { name: string; bytes: number }[];
}

/** Signals the target to start its heap sampling, runs the scenario for DURATION s, signals it to stop, reads what it wrote. */
async function measureAllocation(t: Proc, file: string, pick: () => Pick): Promise<Allocation> {
  const appeared = async (path: string) => {
    for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 25));
    if (!existsSync(path)) throw new Error(`${path} was not written: is test/bench/alloc-self.ts loaded?`);
  };
  rmSync(file, { force: true });
  rmSync(`${file}.started`, { force: true });
  t.proc.kill('SIGUSR2');
  await appeared(`${file}.started`);
  const run = await load(t.port, pick);
  t.proc.kill('SIGUSR2');
  await appeared(file);
  // Written in one call; a read racing the write sees a short file, so wait until it parses.
  let got: { total: number; byFunction: Allocation['byFunction']; byOwnFrame: Allocation['byOwnFrame'] } | undefined;
  for (let i = 0; i < 40 && got === undefined; i++) {
    try {
      got = JSON.parse(readFileSync(file, 'utf8')) as typeof got;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  // Every answered call of the sampled run (the statuses count them all).
  const calls = Math.max(
    1,
    Object.values(run.statuses).reduce((n, v) => n + v, 0),
  );
  const per = (xs: { name: string; bytes: number }[]) =>
    xs.map((x) => ({ name: x.name, bytes: Math.round(x.bytes / calls) }));
  return {
    perCall: Math.round((got?.total ?? 0) / calls),
    calls,
    byFunction: per(got?.byFunction ?? []),
    byOwnFrame: per(got?.byOwnFrame ?? []),
  };
}

async function main(): Promise<void> {
  const redis = await RedisServer.start();
  const redisClient = new Redis(redis.port, '127.0.0.1');
  const issuer = await TokenIssuer.start();
  const standIn = await start(['--import', 'tsx', join(ROOT, 'test/bench/stand-in-process.ts')], {}, readyLine);
  const upstream = `http://127.0.0.1:${standIn.port}`;
  Object.assign(others, { redis: redis.pid!, 'stand-in': standIn.proc.pid!, 'load generator': process.pid });

  const orgNames = Array.from({ length: ORGS }, (_, i) => `Org-${String(i).padStart(4, '0')}`);
  const credentials = { username: 'env:BENCH_SL_USER', password: 'env:BENCH_SL_PASSWORD' };
  const high = { limit: 1_000_000_000, window: '1h' };
  // Reads are limited only with `reads:`; the bench sets it, so (e) measures the read path with its limit check.
  const highWithReads = { ...high, reads: high };
  const orgs: Record<string, unknown> = {
    'Bench-Org': {
      pod: upstream,
      ...credentials,
      ...(process.env.BENCH_RL === 'none' ? {} : { rateLimit: highWithReads }),
    },
    'Limited-Org': { pod: upstream, ...credentials, rateLimit: { limit: 10, window: '1h' } },
  };
  for (const o of orgNames) orgs[o] = { pod: upstream, ...credentials, rateLimit: high };
  const dir = tempDir('snapgate-bench-');
  const checkpointKey = join(dir, 'checkpoint.pem');
  writeFileSync(
    checkpointKey,
    generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    { mode: 0o600 },
  );
  const configFor = (workers: number) => {
    const path = join(dir, `snapgate-${workers}.yaml`);
    writeFileSync(
      path,
      stringify(
        {
          server: { host: '127.0.0.1', port: 0, workers },
          log: { level: 'info' },
          auth: {
            issuers: [{ issuer: issuer.issuer, audience: 'snapgate', jwksUri: issuer.jwksUri, algorithms: ['ES256'] }],
          },
          policy: [
            {
              match: { claims: { scope: 'snaplogic:runtime:start' } },
              orgs: '*',
              actions: ['runtime.start', 'runtime.status'],
            },
          ],
          orgs,
          redis: { url: redis.url },
          // BENCH_AUDIT=stdout|none, to measure what the Redis audit sink costs; signed: the Redis sink with
          // checkpoints (every second, so the run includes signing and trimming behind markers).
          audit:
            process.env.BENCH_AUDIT === 'none'
              ? { stdout: false, allowUnaudited: true }
              : process.env.BENCH_AUDIT === 'stdout'
                ? { stdout: true }
                : {
                    sinks: [{ type: 'redis', maxLen: Number(process.env.BENCH_AUDIT_MAXLEN ?? 200_000) }],
                    ...(process.env.BENCH_AUDIT === 'signed'
                      ? { checkpoints: { key: `file:${checkpointKey}`, interval: '1s' } }
                      : {}),
                  },
        },
        { aliasDuplicateObjects: false },
      ),
    );
    return path;
  };

  const tokens = await Promise.all(
    Array.from({ length: CALLERS }, (_, i) =>
      issuer.mint({ sub: `svc-${String(i).padStart(3, '0')}`, scope: 'snaplogic:runtime:start' }, { expiresIn: 3600 }),
    ),
  );
  const forged = await issuer.mint(
    { sub: 'svc-evil', scope: 'snaplogic:runtime:start' },
    { expiresIn: 3600, forgeWithUnpublishedKey: true },
  );
  const pathFor = (org: string) => `/api/1/rest/public/runtime/start/${org}/${nextRun()}`;
  const statusPath = `/api/1/rest/public/runtime/Bench-Org/${RUUID}?level=summary`;
  const rand = (n: number) => Math.floor(Math.random() * n);

  const only = process.env.BENCH_SCENARIOS?.split(',');
  const allScenarios: Record<string, () => Pick> = {
    'a steady': () => ({ path: pathFor('Bench-Org'), token: tokens[0]! }),
    'b spread': () => ({ path: pathFor(orgNames[rand(ORGS)]!), token: tokens[rand(CALLERS)]! }),
    'c hostile': () => {
      const r = Math.random();
      if (r < 0.05) return { path: pathFor('Bench-Org'), token: 'not.a.jwt' };
      if (r < 0.1) return { path: pathFor('Bench-Org'), token: forged };
      return { path: pathFor('Bench-Org'), token: tokens[rand(CALLERS)]! };
    },
    'd over limit': () => ({ path: pathFor('Limited-Org'), token: tokens[0]! }),
    // (a)'s caller reading one run's status: reads have their own rate-limit bucket, an audit event pair
    // (audit.reads: all, the default) and no run lock.
    'e status read': () => ({ method: 'GET', path: statusPath, token: tokens[0]! }),
  };
  const scenarios = Object.fromEntries(
    Object.entries(allScenarios).filter(([k]) => !only || only.some((o) => k.startsWith(o))),
  );

  // Every target loads test/bench/alloc-self.ts (as JavaScript: snapgate runs without tsx), idle until the
  // allocation step signals it (SIGUSR2).
  const allocSelfJs = join(dir, 'alloc-self.mjs');
  writeFileSync(
    allocSelfJs,
    ts.transpileModule(readFileSync(join(ROOT, 'test/bench/alloc-self.ts'), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText,
  );
  const allocSelf = ['--import', pathToFileURL(allocSelfJs).href];
  const allocOut = (who: string) => ({ ALLOC_OUT: join(dir, `alloc-${who}.json`) });
  const bare = await start(
    [...allocSelf, '--import', 'tsx', join(ROOT, 'test/bench/bare-proxy.ts')],
    { BARE_UPSTREAM: upstream, ...allocOut('bare') },
    readyLine,
  );
  // BENCH_PROFILE=1 writes a V8 CPU profile of snapgate to reports/profile/ (open it in Chrome DevTools or speedscope).
  const profile =
    process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'reports/profile')}`] : [];
  // BENCH_NODE_ARGS adds node flags to snapgate, e.g. --perf-basic-prof for `perf record`.
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  // BENCH_FLOOR=1 puts test/bench/hono-floor.ts (Hono on @hono/node-server, no checks) in snapgate's place:
  // what the framework alone costs against the bare proxy. BENCH_FLOOR=redis adds the Redis work
  // snapgate's design requires (rate limit + write-ahead audit) through snapgate's own limiter and
  // trail; BENCH_FLOOR=redis-raw sends the same commands straight through ioredis.
  const floor = process.env.BENCH_FLOOR;
  const floorEnv: Record<string, string> =
    floor === 'redis' || floor === 'redis-raw'
      ? { FLOOR_REDIS: redis.url, FLOOR_REDIS_MODE: floor === 'redis-raw' ? 'raw' : 'ours' }
      : {};
  const gateway =
    floor !== undefined && floor !== '' && floor !== '0'
      ? await start(
          [...profile, ...allocSelf, '--import', 'tsx', join(ROOT, 'test/bench/hono-floor.ts')],
          { BARE_UPSTREAM: upstream, ...floorEnv, ...allocOut('snapgate') },
          readyLine,
        )
      : await start(
          [...profile, ...nodeArgs, ...allocSelf, join(ROOT, 'dist/src/main.js')],
          { SNAPGATE_CONFIG: configFor(1), ...allocOut('snapgate') },
          listeningLine,
          process.env.BENCH_GATEWAY_LOG,
        );

  // The floors (test/bench/hono-floor.ts with the Redis work snapgate's design requires, straight through ioredis):
  // `floor` waits on Redis once before forwarding (the rate limit, the run lock and the attempt in one write: the
  // design snapgate follows), `floor-2w` twice (the run lock, then the rate limit and the attempt: the design before
  // issue 16). They run beside snapgate in the scenarios they serve (BENCH_FLOORS=none leaves them out).
  const floorNames = (process.env.BENCH_FLOORS ?? 'floor,floor-2w').split(',').filter((f) => f !== '' && f !== 'none');
  // Started together: they are independent, and each takes a few seconds under tsx.
  const floors: Record<string, Proc> = Object.fromEntries(
    await Promise.all(
      floorNames.map(
        async (name) =>
          [
            name,
            await start(
              [...allocSelf, '--import', 'tsx', join(ROOT, 'test/bench/hono-floor.ts')],
              {
                BARE_UPSTREAM: upstream,
                FLOOR_REDIS: redis.url,
                FLOOR_REDIS_MODE: name === 'floor' ? 'raw-one' : 'raw',
                ...allocOut(name),
              },
              readyLine,
            ),
          ] as const,
      ),
    ),
  );
  // BENCH_BEFORE=<a built dist/src/main.js> runs that build too, as `before`, in every case: a change's before and
  // after in one run (git worktree add /tmp/before <rev> && (cd /tmp/before && npm run build), node_modules linked).
  const before: Record<string, Proc> =
    process.env.BENCH_BEFORE !== undefined
      ? {
          before: await start(
            [...allocSelf, process.env.BENCH_BEFORE],
            { SNAPGATE_CONFIG: configFor(1), ...allocOut('before') },
            listeningLine,
          ),
        }
      : {};
  const targets: Record<string, Proc> = { bare, ...floors, ...before, snapgate: gateway };

  const rssAtStart = { bare: rssMb(bare.proc.pid!), snapgate: rssMb(gateway.proc.pid!) };
  // Warm every target up (JIT, pools, JWKS fetch, script load).
  for (const t of Object.values(targets)) await load(t.port, allScenarios['a steady']!).catch(() => undefined);

  const results: Record<string, Partial<Record<string, Run>> & { bare: Run; snapgate: Run }> = {};
  // Top-level Redis commands per allowed call, per target: (a)'s resumes and (e)'s status reads.
  const commands: Record<string, Record<string, number>> = {};
  // Every case (each scenario, then (a) at a fixed rate) runs once per round on every target, back to back, the
  // order turned by one each round, so drift on a noisy machine hits every case and target alike; rounds are
  // combined by their median.
  const fixedName = `a @ ${FIXED_RATE}/s`;
  const cases: [string, (port: number, pid: number) => Promise<Run>][] = Object.entries(scenarios).map(
    ([name, pick]) => [name, (port, pid) => load(port, pick, pid)],
  );
  const steady = scenarios['a steady'];
  if (steady !== undefined && FIXED_RATE > 0) {
    cases.push([fixedName, (port, pid) => loadAtRate(port, steady, FIXED_RATE, pid)]);
  }
  // The floors forward every call: they serve the cases whose calls are all allowed resumes or reads.
  const floorCases = new Set(['a steady', 'e status read', fixedName]);
  const targetsOf = (name: string) => Object.keys(targets).filter((t) => !(t in floors) || floorCases.has(name));
  const runs = new Map<string, Record<string, Run[]>>(cases.map(([name]) => [name, {}]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of cases) {
      const names = targetsOf(name);
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      for (const who of order) {
        const t = targets[who]!;
        const before = await clientCommands(redisClient, who in floors);
        const r = await run(t.port, t.proc.pid!);
        const after = await clientCommands(redisClient, who in floors);
        const perCall = (after - before) / Math.max(1, r.statuses['200'] ?? 0);
        if (who !== 'bare' && (name === 'a steady' || name === 'e status read')) {
          (commands[name] ??= {})[who] = Math.max(commands[name]?.[who] ?? 0, perCall);
        }
        (runs.get(name)![who] ??= []).push(r);
      }
    }
    const got = [...runs].map(
      ([name, r]) =>
        `${name} ${Object.entries(r)
          .map(([who, rs]) => `${who} ${rs[round]?.rps ?? '-'}`)
          .join('/')}`,
    );
    process.stderr.write(`round ${round + 1} of ${ROUNDS} (req/s): ${got.join(', ')}\n`);
  }
  for (const [name, r] of runs) {
    results[name] = Object.fromEntries(
      Object.entries(r).map(([who, rs]) => [who, combine(rs)]),
    ) as (typeof results)[string];
  }
  const roundTrips = commands['a steady']?.snapgate ?? 0;
  const statusRoundTrips = commands['e status read']?.snapgate;
  const rss = { bare: peakRssMb(bare.proc.pid!), snapgate: peakRssMb(gateway.proc.pid!) };

  // Bytes allocated per allowed call, scenario (a) on each running target (test/bench/alloc-self.ts), after the rounds.
  let alloc: Record<string, Allocation> | undefined;
  if (process.env.BENCH_ALLOC !== '0' && steady !== undefined) {
    alloc = {};
    for (const who of ['snapgate', 'before', 'floor', 'bare']) {
      const t = targets[who];
      if (t === undefined) continue;
      alloc[who] = await measureAllocation(t, join(dir, `alloc-${who}.json`), steady);
    }
    process.stderr.write('allocation: done\n');
  }

  // Scale out: scenario (a) on one process and on two workers, alternating round by round like the
  // rest (one process is the gateway measured above, still running).
  let workers: { one: Run; two: Run; rssTwo: number } | undefined;
  if (process.env.BENCH_WORKERS !== '0' && steady !== undefined) {
    const two = await start([join(ROOT, 'dist/src/main.js')], { SNAPGATE_CONFIG: configFor(2) }, listeningLine);
    await load(two.port, steady).catch(() => undefined);
    const oneRuns: Run[] = [];
    const twoRuns: Run[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [1, 2] : [2, 1];
      for (const n of order) {
        if (n === 1) oneRuns.push(await load(gateway.port, steady, gateway.proc.pid));
        else twoRuns.push(await load(two.port, steady));
      }
    }
    workers = { one: combine(oneRuns), two: combine(twoRuns), rssTwo: peakRssTreeMb(two.proc.pid!) };
    await stop(two);
    process.stderr.write(`workers: done\n`);
  }
  await stop(gateway);
  await stop(bare);
  for (const f of [...Object.values(floors), ...Object.values(before)]) await stop(f);
  await stop(standIn);
  redisClient.disconnect();
  await redis.stop();
  await issuer.close();

  // Report.
  const a =
    results['a steady'] ??
    ({ bare: { rps: 1, p99: 0, cpuUs: 1 }, snapgate: { rps: 0, p99: 0, cpuUs: 0 } } as (typeof results)[string]);
  const fmt = (n: number, d = 1) => n.toFixed(d);
  const lines: string[] = [];
  lines.push(
    `snapgate benchmark — ${new Date().toISOString()} — ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  );
  lines.push(`${CONNECTIONS} connections, ${DURATION}s × ${ROUNDS} rounds per target, order turned each round`);
  if (floor !== undefined && floor !== '' && floor !== '0') {
    lines.push(`BENCH_FLOOR=${floor}: the rows named snapgate are test/bench/hono-floor.ts, not snapgate`);
  }
  lines.push(
    'targets: bare = node:http proxy, no checks; floor = Hono + the required Redis work through ioredis, one wait ' +
      'before forwarding; floor-2w = the same, two waits (the design before); snapgate',
  );
  lines.push('');
  lines.push(
    'scenario       target     req/s   p50 ms  p99 ms  p99.9 ms  errors  statuses              ÷ bare  ÷ floor  ' +
      'p99 Δ floor  CPU µs/req  ÷ floor',
  );
  for (const [name, r] of Object.entries(results)) {
    for (const [who, x] of Object.entries(r) as [string, Run][]) {
      const f = r.floor;
      const statuses = Object.entries(x.statuses)
        .map(([k, v]) => `${k}:${v}`)
        .join(' ');
      const vsFloor = f !== undefined && who !== 'bare' && who !== 'floor';
      lines.push(
        `${name.padEnd(14)} ${who.padEnd(9)} ${String(x.rps).padStart(6)}  ${fmt(x.p50).padStart(6)}  ` +
          `${fmt(x.p99).padStart(6)}  ${fmt(x.p999).padStart(8)}  ${String(x.errors).padStart(6)}  ` +
          `${statuses.padEnd(20)}  ${fmt(x.rps / r.bare.rps, 2).padStart(6)}  ` +
          `${(vsFloor ? fmt(x.rps / f.rps, 2) : '').padStart(7)}  ${(vsFloor ? fmt(x.p99 - f.p99, 1) : '').padStart(11)}  ` +
          `${String(x.cpuUs).padStart(10)}  ${(vsFloor ? fmt(x.cpuUs / f.cpuUs, 2) : '').padStart(7)}`,
      );
    }
  }
  lines.push('');
  // Every part shares the same two cores, so what snapgate makes Redis and the others do counts too.
  lines.push('CPU µs per request, whole machine and by part (target, Redis, stand-in, load generator):');
  for (const [name, r] of Object.entries(results)) {
    for (const [who, x] of Object.entries(r) as [string, Run][]) {
      const parts = [
        `target ${x.cpuUs}`,
        ...Object.entries(x.shares)
          .filter(([k]) => k !== 'machine')
          .map(([k, v]) => `${k} ${v}`),
      ];
      lines.push(
        `  ${name.padEnd(14)} ${who.padEnd(9)} machine ${String(x.shares.machine ?? 0).padStart(4)} = ` +
          `${parts.join(', ')}`,
      );
    }
  }
  lines.push('');
  lines.push(
    `peak RSS: snapgate ${rss.snapgate} MB, bare proxy ${rss.bare} MB (ratio ${fmt(rss.snapgate / rss.bare, 2)}); ` +
      `after start, before load: snapgate ${rssAtStart.snapgate} MB, bare ${rssAtStart.bare} MB`,
  );
  const perTarget = (name: string) =>
    Object.entries(commands[name] ?? {})
      .map(([who, n]) => `${who} ${fmt(n, 2)}`)
      .join(', ');
  lines.push(
    `Redis round trips (commands) per allowed call (a): ${perTarget('a steady')} (snapgate: the rate limit, the run ` +
      'lock taken and released, audit appends batched; one wait before forwarding)' +
      (statusRoundTrips !== undefined ? `; (e) status read: ${perTarget('e status read')} (no run lock)` : ''),
  );
  const fixed = results[fixedName];
  if (fixed !== undefined) {
    const pct = (x: Run | undefined) => (x === undefined ? '-' : `${fmt(x.p50)}/${fmt(x.p99)}/${fmt(x.p999)}`);
    lines.push(
      `at ${FIXED_RATE} req/s, p50/p99/p99.9 ms: ` +
        Object.entries(fixed)
          .map(([who, x]) => `${who} ${pct(x)}`)
          .join(', '),
    );
  }
  if (alloc !== undefined) {
    lines.push(
      `allocated per allowed call (a), KB: ` +
        Object.entries(alloc)
          .map(([who, x]) => `${who} ${fmt(x.perCall / 1024)}`)
          .join(', ') +
        ' (V8 sampling heap profiler, collected objects included)',
    );
    // Where snapgate's bytes go: its top allocating functions and its own steps that caused them.
    const top = (xs: Allocation['byFunction']) =>
      xs
        .slice(0, 12)
        .map((x) => `    ${String(x.bytes).padStart(6)} B  ${x.name}`)
        .join('\n');
    if (alloc.snapgate !== undefined) {
      lines.push(`  snapgate by allocating function:\n${top(alloc.snapgate.byFunction)}`);
      lines.push(`  snapgate by innermost snapgate frame:\n${top(alloc.snapgate.byOwnFrame)}`);
    }
  }
  lines.push(
    `(a) at saturation: p99 ${fmt(a.snapgate.p99 - a.bare.p99)} ms over bare (there, latency = ${CONNECTIONS} ` +
      `connections / throughput)`,
  );
  if (workers) {
    lines.push(
      `workers (a): 1 → ${workers.one.rps} req/s, 2 → ${workers.two.rps} req/s ` +
        `(×${fmt(workers.two.rps / workers.one.rps, 2)}), p99 ${fmt(workers.one.p99)} → ${fmt(workers.two.p99)} ms, ` +
        `peak RSS of 2 workers + primary ${workers.rssTwo} MB`,
    );
  }
  // Scenarios run one after another, so machine drift between them would read as a difference;
  // each is compared through its ratio to the bare proxy measured beside it.
  const relativeToA = (name: string) => {
    const r = results[name];
    return r === undefined ? 0 : r.snapgate.rps / r.bare.rps / (a.snapgate.rps / a.bare.rps);
  };
  const f = a.floor;
  const fixedDelta = (fixed?.snapgate.p99 ?? Infinity) - (fixed?.floor?.p99 ?? 0);
  const budget = [
    [
      `(a) req/s ≥ 0.85 × the floor's: ×${fmt(f !== undefined ? a.snapgate.rps / f.rps : 0, 2)}`,
      f !== undefined && a.snapgate.rps >= 0.85 * f.rps,
    ],
    [
      `(a) CPU µs per call ≤ 1.3 × the floor's: ×${fmt(f !== undefined ? a.snapgate.cpuUs / f.cpuUs : 0, 2)}`,
      f !== undefined && a.snapgate.cpuUs <= 1.3 * f.cpuUs,
    ],
    [
      `(a) ≤ 25 KB allocated per allowed call: ${alloc?.snapgate !== undefined ? fmt(alloc.snapgate.perCall / 1024) : '-'} KB`,
      alloc?.snapgate !== undefined && alloc.snapgate.perCall <= 25 * 1024,
    ],
    [`at ${FIXED_RATE} req/s: p99 within 3 ms of the floor's: ${fmt(fixedDelta)} ms`, fixedDelta <= 3],
    [`(b) req/s within 10% of (a): ×${fmt(relativeToA('b spread'), 2)}`, Math.abs(relativeToA('b spread') - 1) <= 0.1],
    [`(d) 429 path ≥ 1.5× (a) req/s: ×${fmt(relativeToA('d over limit'), 2)}`, relativeToA('d over limit') >= 1.5],
    [`(e) status read ≥ 1.3× (a) req/s: ×${fmt(relativeToA('e status read'), 2)}`, relativeToA('e status read') >= 1.3],
    ['peak RSS < 150 MB', rss.snapgate < 150],
  ] as const;
  lines.push('');
  lines.push('budget:');
  for (const [what, ok] of budget) lines.push(`  ${ok ? 'PASS' : 'FAIL'}  ${what}`);
  process.stdout.write(`${lines.join('\n')}\n`);

  // BENCH_OUT: where the JSON goes (the smoke test writes elsewhere, so a real run's report stays).
  const out = process.env.BENCH_OUT ?? join(ROOT, 'reports/bench.json');
  mkdirSync(dirname(out), { recursive: true });
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: { cores: cpus().length, model: cpus()[0]?.model, node: process.version },
    connections: CONNECTIONS,
    durationSec: DURATION,
    rounds: ROUNDS,
    fixedRate: FIXED_RATE,
    results,
    rss,
    rssAtStart,
    roundTrips,
    statusRoundTrips,
    commands,
    alloc,
    workers,
    budget: Object.fromEntries(budget),
  };
  writeFileSync(out, JSON.stringify(report, null, 2));
  process.stdout.write(`results written to ${out}\n`);
}

try {
  await main();
} finally {
  // Children still running after a failure are killed by the exit hook of helpers/children.ts.
  process.exitCode ??= 0;
}
process.exit();
