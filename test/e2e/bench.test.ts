// `npm run bench` end to end, shortened: every scenario (resumes (a)-(d), the status read (e)) runs against the built
// gateway and the bare proxy, the table and the budget are printed, and the JSON holds every figure. The figures
// themselves are not judged here (the test runs beside the rest of the suite on two cores).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import type { BenchReport } from '../bench/bench.js';
import { ROOT, tempDir } from '../helpers/gateway.js';

it('runs every scenario against snapgate, the bare proxy and the floors, prints the table and writes the JSON', async () => {
  const out = join(tempDir('snapgate-bench-test-'), 'bench.json');
  const env = {
    ...process.env,
    BENCH_DURATION: '1',
    BENCH_ROUNDS: '1',
    BENCH_ORGS: '20',
    BENCH_FIXED_RATE: '100',
    BENCH_OUT: out,
  };
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test/bench/bench.ts')],
      { cwd: ROOT, env, maxBuffer: 1 << 20 },
      (err, text, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(text)),
    );
  });

  for (const line of ['a steady ', 'b spread ', 'c hostile ', 'd over limit ', 'e status read ', 'a @ 100/s ']) {
    expect(stdout).toContain(line);
  }
  expect(stdout).toContain('÷ floor');
  expect(stdout).toMatch(/peak RSS: snapgate \d+ MB, bare proxy \d+ MB/);
  expect(stdout).toMatch(/workers \(a\): 1 → \d+ req\/s, 2 → \d+ req\/s/);
  expect(stdout).toMatch(/(PASS|FAIL) {2}\(a\) req\/s ≥ 0\.85 × the floor's: ×[\d.]+/);
  expect(stdout).toMatch(/(PASS|FAIL) {2}\(a\) CPU µs per call ≤ 1\.3 × the floor's: ×[\d.]+/);
  expect(stdout).toMatch(/(PASS|FAIL) {2}\(a\) ≤ 25 KB allocated per allowed call: [\d.]+ KB/);
  expect(stdout).toMatch(
    /at 100 req\/s, p50\/p99\/p99\.9 ms: bare [\d.]+\/[\d.]+\/[\d.]+, floor [\d.]+\/[\d.]+\/[\d.]+/,
  );

  const report = JSON.parse(readFileSync(out, 'utf8')) as BenchReport;
  expect(report.machine.node).toBe(process.version);
  expect(Object.keys(report.results)).toEqual([
    'a steady',
    'b spread',
    'c hostile',
    'd over limit',
    'e status read',
    'a @ 100/s',
  ]);
  for (const [name, r] of Object.entries(report.results)) {
    for (const run of [r.bare, r.snapgate]) {
      expect(run.rps, name).toBeGreaterThan(0);
      expect(run.p99, name).toBeGreaterThanOrEqual(run.p50);
      expect(run.cpuUs, name).toBeGreaterThan(0);
      expect(run.shares.machine, name).toBeGreaterThan(0);
    }
    // The bare proxy checks nothing: every call reaches the stand-in.
    expect(Object.keys(r.bare.statuses), name).toEqual(['200']);
    // The floors (one wait, two waits) run beside snapgate where every call is allowed: (a), (e) and the fixed rate.
    const floors = Object.keys(r).filter((k) => k.startsWith('floor'));
    expect(floors.sort(), name).toEqual(
      ['a steady', 'e status read', 'a @ 100/s'].includes(name) ? ['floor', 'floor-2w'] : [],
    );
    for (const f of floors) expect(Object.keys(r[f as 'floor']!.statuses), `${name} ${f}`).toEqual(['200']);
  }
  // What each scenario is for shows in snapgate's statuses. Every resume names another run, so none meets the run
  // lock of another still in flight (409 run_busy); the status read is granted (runtime.status) and answered.
  expect(Object.keys(report.results['a steady']!.snapgate.statuses)).toEqual(['200']);
  expect(Object.keys(report.results['a @ 100/s']!.snapgate.statuses)).toEqual(['200']);
  expect(Object.keys(report.results['e status read']!.snapgate.statuses)).toEqual(['200']);
  expect(report.results['c hostile']!.snapgate.statuses['401']).toBeGreaterThan(0);
  expect(report.results['d over limit']!.snapgate.statuses['429']).toBeGreaterThan(0);
  expect(report.results['d over limit']!.snapgate.statuses['200'] ?? 0).toBeLessThanOrEqual(10);
  // A resume: the rate-limit script, the run lock taken and released, audit appends batched: between 3 and 4.
  expect(report.roundTrips).toBeGreaterThanOrEqual(3);
  expect(report.roundTrips).toBeLessThanOrEqual(4);
  // A status read: the reads' rate-limit script and batched audit appends, no run lock: between 1 and 2.
  expect(report.statusRoundTrips).toBeGreaterThanOrEqual(1);
  expect(report.statusRoundTrips).toBeLessThanOrEqual(2);
  expect(stdout).toMatch(
    /Redis round trips \(commands\) per allowed call \(a\): .*snapgate [\d.]+ .*; \(e\) status read: .*snapgate [\d.]+/,
  );
  expect(report.rss.snapgate).toBeGreaterThan(0);
  expect(report.workers?.two.rps).toBeGreaterThan(0);
  expect(report.workers?.rssTwo).toBeGreaterThan(report.rss.snapgate);
  // The floors send the rate limit, the lock and its release, and two XADDs straight: five commands per resume.
  expect(report.commands['a steady']?.floor).toBeGreaterThanOrEqual(4.5);
  // What (a) allocates per call, measured on each target: the bare proxy least, snapgate most.
  expect(report.alloc?.bare?.perCall).toBeGreaterThan(0);
  expect(report.alloc?.floor?.perCall).toBeGreaterThan(report.alloc?.bare?.perCall ?? Infinity);
  expect(report.alloc?.snapgate?.byOwnFrame.length).toBeGreaterThan(0);
  expect(Object.keys(report.budget)).toHaveLength(8);
}, 180_000);
