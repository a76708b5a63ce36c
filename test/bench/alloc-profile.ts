// Where snapgate allocates per request: runs the gateway in this process under V8's sampling heap
// profiler (collected objects included), drives scenario (a) from an autocannon child, and prints
// bytes per request by allocating function. Usage: tsx test/bench/alloc-profile.ts [seconds]
import { spawn } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import { ROOT } from '../helpers/gateway.js';
import { RedisServer } from '../helpers/redis-server.js';
import { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  id: number;
  selfSize: number;
  children: ProfileNode[];
}

const seconds = Number(process.argv[2] ?? 8);
const env = { BENCH_SL_USER: 'bench@example.com', BENCH_SL_PASSWORD: 'bench-password' };
const redis = await RedisServer.start();
const issuer = await TokenIssuer.start();
// The stand-in runs in this process too; its frames are reported apart (they are not snapgate's).
const standIn = await SnapLogicStandIn.start({
  orgs: {},
  benchmark: { username: env.BENCH_SL_USER, password: env.BENCH_SL_PASSWORD },
});
const config = parseConfig(
  {
    server: { host: '127.0.0.1', port: 0 },
    auth: {
      issuers: [{ issuer: issuer.issuer, audience: 'snapgate', jwksUri: issuer.jwksUri, algorithms: ['ES256'] }],
    },
    policy: [{ match: { claims: { scope: 'snaplogic:runtime:start' } }, orgs: '*', actions: ['runtime.start'] }],
    orgs: {
      'Bench-Org': {
        pod: standIn.url,
        username: 'env:BENCH_SL_USER',
        password: 'env:BENCH_SL_PASSWORD',
        rateLimit: { limit: 1_000_000_000, window: '1h' },
      },
    },
    redis: { url: redis.url },
    audit: { sinks: [{ type: 'redis', maxLen: 200_000 }] },
  },
  'alloc-profile',
  env,
);
const gateway = await startGateway(config, {
  env,
  log: createLogger({ level: 'warn', write: () => undefined }),
  auditWrite: () => undefined,
  instance: 'alloc',
});
const token = await issuer.mint({ sub: 'svc-000', scope: 'snaplogic:runtime:start' }, { expiresIn: 3600 });
// The load runs in a child (its allocations are not snapgate's). Each resume names another run, as in the bench:
// resumes of one run from 50 connections would mostly meet its run lock (409 run_busy), not the resume path.
const driver = `
import autocannon from 'autocannon';
import { randomBytes, randomUUID } from 'node:crypto';
const [url, token, duration] = process.argv.slice(1);
const result = await autocannon({
  url, connections: 50, duration: Number(duration),
  requests: [{
    method: 'POST',
    setupRequest: (req) => ({
      ...req,
      path: '/api/1/rest/public/runtime/start/Bench-Org/' + randomBytes(12).toString('hex') + '_' + randomUUID(),
      headers: { ...req.headers, authorization: 'Bearer ' + token },
    }),
  }],
});
process.stdout.write(JSON.stringify({ total: result.requests.total, non2xx: result.non2xx }));
`;

const drive = (duration: number) =>
  new Promise<number>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', driver, `http://127.0.0.1:${gateway.port}`, token, String(duration)],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', () => {
      try {
        const { total, non2xx } = JSON.parse(out) as { total: number; non2xx: number };
        // A profile of refusals would say nothing about the resume path.
        if (non2xx > 0) throw new Error(`${non2xx} of ${total} resumes were not answered 2xx`);
        resolve(total);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });

await drive(3); // warm-up: JIT, pools, JWKS
const session = new Session();
session.connect();
await session.post('HeapProfiler.startSampling', {
  samplingInterval: 1024,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
const requests = await drive(seconds);
const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
session.disconnect();
await gateway.shutdown(1_000);
await standIn.close();
await redis.stop();
await issuer.close();

const where = (n: ProfileNode) =>
  `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url
    .replace(/^.*node_modules\//, 'nm:')
    .replace(/^.*\/work\/main\//, '')
    .replace(/^file:\/\//, '')}:${n.callFrame.lineNumber}`;
const selfBy = new Map<string, number>();
const ourBy = new Map<string, number>();
let total = 0;
let standInBytes = 0;
const walk = (n: ProfileNode, stack: ProfileNode[]) => {
  const path = [...stack, n];
  if (n.selfSize > 0) {
    if (path.some((p) => p.callFrame.url.includes('snaplogic-stand-in'))) standInBytes += n.selfSize;
    else {
      total += n.selfSize;
      selfBy.set(where(n), (selfBy.get(where(n)) ?? 0) + n.selfSize);
      // The innermost frame of snapgate's own code on the stack: which of our steps caused it.
      const ours = [...path].reverse().find((p) => p.callFrame.url.includes('/src/'));
      const key = ours !== undefined ? where(ours) : '(no snapgate frame)';
      ourBy.set(key, (ourBy.get(key) ?? 0) + n.selfSize);
    }
  }
  for (const c of n.children) walk(c, path);
};
walk(profile.head, []);
const top = (m: Map<string, number>, k: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, b]) => `${String(Math.round(b / requests)).padStart(7)} B/req  ${name}`)
    .join('\n');
process.stdout.write(
  `${requests} requests; snapgate allocated ${Math.round(total / requests)} B/request (stand-in ` +
    `${Math.round(standInBytes / requests)} B/request left out)\n\n`,
);
process.stdout.write(
  `by allocating function:\n${top(selfBy, 30)}\n\nby innermost snapgate frame:\n${top(ourBy, 30)}\n`,
);
process.exit(0);
