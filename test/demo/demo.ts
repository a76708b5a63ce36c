// `npm run demo`: snapgate against a local SnapLogic stand-in and a local token issuer, with nothing outside to set up.
// Starts all three, mints a token, resumes a suspended run through snapgate, prints the curl and the answer, and keeps
// serving.
// `npm run demo -- --once` exits after the first call (used by the tests).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

const once = process.argv.includes('--once');
const ORG = 'Demo-Org';
const SL_USER = 'svc-demo@example.com';
const SL_PASSWORD = `demo-${Math.random().toString(36).slice(2)}`;

const standIn = await SnapLogicStandIn.start({
  orgs: { [ORG]: { username: SL_USER, password: SL_PASSWORD } },
  transitionMs: 2_000,
});
const issuer = await TokenIssuer.start({ audience: 'snapgate' });

// The SnapLogic password lives in a file, the user name in an environment variable: the two kinds
// of secret reference snapgate accepts. Neither value ever appears in snapgate's config.
const secrets = mkdtempSync(join(tmpdir(), 'snapgate-demo-'));
const passwordFile = join(secrets, 'demo-org-password');
writeFileSync(passwordFile, `${SL_PASSWORD}\n`, { mode: 0o600 });
const env = { ...process.env, DEMO_SL_USER: SL_USER };

const config = parseConfig(
  {
    server: { host: '127.0.0.1', port: 8080, shutdownTimeout: '5s' },
    auth: {
      issuers: [{ issuer: issuer.issuer, audience: 'snapgate', jwksUri: issuer.jwksUri, algorithms: ['ES256'] }],
    },
    policy: [{ match: { sub: 'svc-demo' }, orgs: [ORG], actions: ['runtime.start'] }],
    orgs: {
      [ORG]: {
        pod: standIn.url,
        username: 'env:DEMO_SL_USER',
        password: `file:${passwordFile}`,
        rateLimit: { limit: 10, window: '60s', burst: 5 },
      },
    },
  },
  'demo',
  process.env,
);

const gateway = await startGateway(config, {
  env,
  log: createLogger({ level: once ? 'warn' : 'info', write: (l) => process.stderr.write(l) }),
  auditWrite: (text) => {
    process.stdout.write(
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => `[audit] ${l}\n`)
        .join(''),
    );
  },
  instance: 'demo',
  watchSecretFiles: true,
}).catch((err: unknown) => {
  const code = (err as { code?: string }).code;
  process.stderr.write(
    code === 'EADDRINUSE'
      ? `Port ${config.server.port} is in use. Run with another port: SNAPGATE_PORT=8081 npm run demo\n`
      : `demo failed to start: ${String(err)}\n`,
  );
  process.exit(1);
});

const base = `http://127.0.0.1:${gateway.port}`;
const token = await issuer.mint({ sub: 'svc-demo' }, { expiresIn: 3600 });
const first = standIn.addRun(ORG);
const spare = [standIn.addRun(ORG), standIn.addRun(ORG)];
const path = (ruuid: string) => `/api/1/rest/public/runtime/start/${ORG}/${ruuid}`;

const say = (text = '') => process.stdout.write(`${text}\n`);
say('snapgate demo');
say(`  snapgate           ${base}`);
say(`  SnapLogic stand-in ${standIn.url}   (org ${ORG}, Basic credentials only snapgate knows)`);
say(`  token issuer       ${issuer.issuer}   (JWKS ${issuer.jwksUri})`);
say();
say(`Resuming suspended run ${first} through snapgate:`);
say(`  curl -si -X POST -H "Authorization: Bearer $TOKEN" ${base}${path(first)}`);
const res = await fetch(`${base}${path(first)}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
say(`  → HTTP ${res.status} ${await res.text()}`);
say(
  `  (the stand-in received Basic auth as ${standIn.startCalls().at(-1)?.authUser ?? '?'}; the run is now ` +
    `${standIn.run(ORG, first)?.state})`,
);

if (once) {
  await gateway.shutdown(1_000);
  await standIn.close();
  await issuer.close();
  process.exit(res.status === 200 ? 0 : 1);
}

say();
say('Try it yourself (the token is valid for one hour):');
say(`  export TOKEN=${token}`);
say(`  curl -si -X POST -H "Authorization: Bearer $TOKEN" ${base}${path(spare[0]!)}`);
say(
  `  curl -si -X POST -H "Authorization: Bearer $TOKEN" ${base}${path(spare[0]!)}     # again: SnapLogic says 409, ` +
    `not Suspended`,
);
say(`  curl -si -X POST ${base}${path(spare[1]!)}                                      # no token: 401 problem+json`);
say(
  `  curl -si -X POST -H "Authorization: Bearer $TOKEN" ` +
    `${base}/api/1/rest/public/runtime/start/Other-Org/${spare[1]!}   # 403`,
);
say(`  curl -s ${base}/readyz`);
say(
  `  (every resume answer carries RateLimit-Policy / RateLimit: ${ORG} allows 10 per minute plus a burst of 5, per ` +
    `process in the demo)`,
);
say();
say('Audit events appear below as [audit] lines. Ctrl-C to stop.');

const stop = () => {
  void gateway
    .shutdown(2_000)
    .then(() => Promise.all([standIn.close(), issuer.close()]))
    .then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
