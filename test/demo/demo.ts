// `npm run demo`: snapgate against a local SnapLogic stand-in and a local token issuer, with nothing outside to set up.
// Starts all three, mints a token, then through snapgate: lists the suspended runs, resumes one (with an
// Idempotency-Key, then once more as a retry would) and reads its status; then resumes a run of a second org in
// credentials: jwt, where snapgate signs its own token for SnapLogic (an ES256 key generated at start, its JWKS served
// on snapgate's listener); prints each curl and its answer, and keeps serving.
// `npm run demo -- --once` exits after those calls (used by the tests).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import { generateSigningKey } from '../../src/credentials/signing-keys.js';
import { SnapLogicStandIn } from '../helpers/snaplogic-stand-in.js';
import { TokenIssuer } from '../helpers/token-issuer.js';

const once = process.argv.includes('--once');
const ORG = 'Demo-Org';
const SL_USER = 'svc-demo@example.com';
const SL_PASSWORD = `demo-${Math.random().toString(36).slice(2)}`;
/** The org snapgate reaches with JWTs it signs itself (credentials: jwt); SnapLogic refuses Basic for it. */
const JWT_ORG = 'Demo-JWT';
/** The SnapLogic user the tokens act as (their sub). */
const JWT_USER = 'svc-demo-jwt@example.com';
/** The issuer id registered for JWT_ORG in SnapLogic, and the tokens' iss. */
const SIGNING_ISSUER = 'snapgate-demo';
const STEP_MS = 2_000;

const standIn = await SnapLogicStandIn.start({
  orgs: {
    [ORG]: { username: SL_USER, password: SL_PASSWORD },
    // Basic is off for this org (403); its JWT issuer (snapgate) is registered once snapgate listens.
    [JWT_ORG]: { username: 'nobody@example.com', password: randomUUID(), jwtOnly: true },
  },
  transitionMs: STEP_MS,
});
const issuer = await TokenIssuer.start({ audience: 'snapgate' });

// The SnapLogic password lives in a file, the user name in an environment variable: the two kinds
// of secret reference snapgate accepts. Neither value ever appears in snapgate's config.
const secrets = mkdtempSync(join(tmpdir(), 'snapgate-demo-'));
const passwordFile = join(secrets, 'demo-org-password');
writeFileSync(passwordFile, `${SL_PASSWORD}\n`, { mode: 0o600 });
// The key snapgate signs JWT_ORG's tokens with: generated here, PKCS#8 in a 0600 file, referenced like the password.
// Only its kid and path are printed; the JWKS snapgate serves carries the public half alone.
const signingKey = await generateSigningKey('ES256');
const signingKeyFile = join(secrets, 'signing-key.pem');
writeFileSync(signingKeyFile, signingKey.privatePem, { mode: 0o600 });
const env = { ...process.env, DEMO_SL_USER: SL_USER };

const config = parseConfig(
  {
    server: { host: '127.0.0.1', port: 8080, shutdownTimeout: '5s' },
    auth: {
      issuers: [{ issuer: issuer.issuer, audience: 'snapgate', jwksUri: issuer.jwksUri, algorithms: ['ES256'] }],
    },
    // The caller may find runs, resume or stop them and watch them; nothing else (api-stats: runtime.stats).
    policy: [
      {
        match: { sub: 'svc-demo' },
        orgs: [ORG],
        actions: ['runtime.list', 'runtime.status', 'runtime.start', 'runtime.stop'],
      },
      // On the jwt org: resume runs and watch them.
      { match: { sub: 'svc-demo' }, orgs: [JWT_ORG], actions: ['runtime.start', 'runtime.status'] },
    ],
    // The tokens snapgate signs for credentials: jwt orgs; no jwks.port, so the JWKS is served on server.port.
    signing: {
      issuer: SIGNING_ISSUER,
      keys: [{ key: `file:${signingKeyFile}`, state: 'active' }],
    },
    orgs: {
      [ORG]: {
        pod: standIn.url,
        username: 'env:DEMO_SL_USER',
        password: `file:${passwordFile}`,
        // Writes (resume, stop) at the top level; reads (list, status) counted apart, so they never eat the resumes.
        rateLimit: { limit: 10, window: '60s', burst: 5, reads: { limit: 60, window: '60s' } },
      },
      // No password stored: each call carries a short-lived JWT (sub JWT_USER) signed with signing.keys.
      [JWT_ORG]: { pod: standIn.url, credentials: 'jwt', user: JWT_USER },
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
// As an org admin does in SnapLogic: snapgate registered as JWT_ORG's issuer, with the JWKS URL SnapLogic fetches.
const jwksUrl = `${base}${config.signing!.jwks.path}`;
standIn.setJwtIssuer(JWT_ORG, { issuerId: SIGNING_ISSUER, jwksUrl }, [JWT_USER]);
const token = await issuer.mint({ sub: 'svc-demo' }, { expiresIn: 3600 });
// Three suspended runs, a minute apart, the oldest first (the list shows the newest first).
const created = Date.now() - 3 * 60_000;
const runs = [0, 1, 2].map((i) =>
  standIn.addRun(ORG, 'Suspended', undefined, {
    label: ['nightly-invoices', 'ledger-sync', 'refund-batch'][i]!,
    pathId: `/${ORG}/projects/finance`,
    createTime: created + i * 60_000,
  }),
);
const jwtRuns = [0, 1].map((i) =>
  standIn.addRun(JWT_ORG, 'Suspended', undefined, {
    label: ['payroll-export', 'tax-filing'][i]!,
    pathId: `/${JWT_ORG}/projects/hr`,
    createTime: created + i * 60_000,
  }),
);
const RUNTIME = '/api/1/rest/public/runtime';
const paths = {
  list: `${RUNTIME}/${ORG}?state=Suspended`,
  start: (ruuid: string, org = ORG) => `${RUNTIME}/start/${org}/${ruuid}`,
  stop: (ruuid: string) => `${RUNTIME}/stop/${ORG}/${ruuid}`,
  status: (ruuid: string, org = ORG) => `${RUNTIME}/${org}/${ruuid}?level=summary`,
};

const say = (text = '') => process.stdout.write(`${text}\n`);
const auth = '-H "Authorization: Bearer $TOKEN"';
/** The curl line for a call: the URL quoted when it has a query (a shell would read `?` and `&`). */
const curl = (method: 'GET' | 'POST', path: string, extra = '') => {
  const url = path.includes('?') ? `"${base}${path}"` : `${base}${path}`;
  return `curl -si${method === 'POST' ? ' -X POST' : ''} ${auth}${extra} ${url}`;
};

interface Answer {
  status: number;
  text: string;
  headers: Headers;
}
async function call(method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...headers } });
  return { status: res.status, text: await res.text(), headers: res.headers };
}
/** SnapLogic's response_map from an answer's body, when it has one. */
function responseMap(a: Answer): Record<string, unknown> | undefined {
  try {
    return (JSON.parse(a.text) as { response_map?: Record<string, unknown> }).response_map;
  } catch {
    return undefined;
  }
}

say('snapgate demo');
say(`  snapgate           ${base}`);
say(`  SnapLogic stand-in ${standIn.url}   (org ${ORG}, Basic credentials only snapgate knows)`);
say(`  token issuer       ${issuer.issuer}   (JWKS ${issuer.jwksUri})`);
say(`  org ${JWT_ORG}       credentials: jwt, JWT only at SnapLogic (Basic: 403), tokens for ${JWT_USER}`);
say(`  signing key        ES256, kid ${signingKey.kid}, in ${signingKeyFile} (mode 0600)`);
say(`  snapgate's JWKS    ${jwksUrl}   (registered at the stand-in for issuer ${SIGNING_ISSUER})`);
say();

// 1. Find the suspended runs.
say(`1. List ${ORG}'s suspended runs (action runtime.list):`);
say(`  ${curl('GET', paths.list)}`);
const list = await call('GET', paths.list);
const entries = (responseMap(list)?.entries ?? []) as { id: string; state: string; label: string }[];
if (list.status === 200) {
  say(`  → HTTP 200, ${entries.length} suspended runs (SnapLogic's JSON, shown as one line per run):`);
  for (const e of entries) say(`      ${e.id}  ${e.state}  ${e.label}`);
} else {
  say(`  → HTTP ${list.status} ${list.text}`);
}
say();

// 2. Resume the newest one, with a key: a client retrying after a timeout sends the same key, and gets the same answer.
const ruuid = entries[0]?.id ?? runs.at(-1)!;
const label = entries[0]?.label ?? 'the newest';
const key = randomUUID();
const keyHeader = ` -H 'Idempotency-Key: "${key}"'`;
say(`2. Resume the newest, ${label} (action runtime.start), with an Idempotency-Key:`);
say(`  ${curl('POST', paths.start(ruuid), keyHeader)}`);
const resume = await call('POST', paths.start(ruuid), { 'idempotency-key': `"${key}"` });
say(`  → HTTP ${resume.status} ${resume.text}`);
say(
  `  (the stand-in received Basic auth as ${standIn.startCalls().at(-1)?.authUser ?? '?'}; the run is now ` +
    `${standIn.run(ORG, ruuid)?.state})`,
);
say('  The same call again, as a client retrying after a timeout would:');
const replay = await call('POST', paths.start(ruuid), { 'idempotency-key': `"${key}"` });
say(
  `  → HTTP ${replay.status} ${replay.text}, Idempotent-Replayed: ${replay.headers.get('idempotent-replayed')} ` +
    `(the stand-in received ${standIn.calls('start', ruuid).length} resume of this run in all)`,
);
say();

// 3. Watch it: one step later the stand-in has moved it from Resuming to Started.
await new Promise((r) => setTimeout(r, STEP_MS + 200));
say(`3. Its status a moment later (action runtime.status):`);
say(`  ${curl('GET', paths.status(ruuid))}`);
const status = await call('GET', paths.status(ruuid));
const summary = responseMap(status) as { state?: string; state_log?: { new_state: string }[] } | undefined;
if (status.status === 200 && summary?.state !== undefined) {
  const log = (summary.state_log ?? []).map((s) => s.new_state).join(' → ');
  say(`  → HTTP 200, state ${summary.state} (state_log: ${log}; SnapLogic's JSON, shown in short)`);
} else {
  say(`  → HTTP ${status.status} ${status.text}`);
}
say();

// 4. The same caller resumes a run of the jwt org: snapgate signs a JWT for JWT_USER, the stand-in verifies it
// with snapgate's JWKS. What SnapLogic saw comes from the stand-in's record of the call, which never keeps the token.
const jwtRun = jwtRuns.at(-1)!;
say(
  `4. Resume ${standIn.run(JWT_ORG, jwtRun)?.label} in ${JWT_ORG}, an org in credentials: jwt (action runtime.start):`,
);
say(`  ${curl('POST', paths.start(jwtRun, JWT_ORG))}`);
const jwtResume = await call('POST', paths.start(jwtRun, JWT_ORG));
say(`  → HTTP ${jwtResume.status} ${jwtResume.text}`);
const seen = standIn.calls('start', jwtRun).at(-1);
say(
  `  (the stand-in received ${seen?.authScheme ?? 'no'} auth, a JWT snapgate signed: kid ${seen?.jwt?.kid ?? '?'}, ` +
    `sub ${seen?.jwt?.sub ?? '?'}, ${seen?.jwt?.verified ? 'verified' : 'NOT verified'} with snapgate's JWKS; ` +
    `the run is now ${standIn.run(JWT_ORG, jwtRun)?.state})`,
);

if (once) {
  await gateway.shutdown(1_000);
  await standIn.close();
  await issuer.close();
  const jwtSeen = seen?.auth === 'jwt' && seen.jwt?.verified === true && seen.jwt.kid === signingKey.kid;
  process.exit([list, resume, replay, status, jwtResume].every((a) => a.status === 200) && jwtSeen ? 0 : 1);
}

const [next, other] = runs.filter((r) => r !== ruuid) as [string, string];
const nextKey = randomUUID();
say();
say('Try it yourself (the token is valid for one hour):');
say(`  export TOKEN=${token}`);
say(`  ${curl('GET', paths.list)}   # ${entries.length - 1} left`);
say(`  ${curl('POST', paths.start(next), ` -H 'Idempotency-Key: "${nextKey}"'`)}`);
say(`    # the same line again: the stored answer, with Idempotent-Replayed: true; SnapLogic is called once`);
say(`  ${curl('GET', paths.status(next))}`);
say(`    # Resuming → Started → Completed, a step every ${STEP_MS / 1000} s`);
say(`  ${curl('POST', paths.stop(other))}   # runtime.stop: Stopping → Stopped`);
say(`  ${curl('POST', paths.start(jwtRuns[0]!, JWT_ORG))}   # ${JWT_ORG}: snapgate signs a JWT for ${JWT_USER}`);
say(`  curl -s ${jwksUrl}   # the public key SnapLogic verifies those with (no private member)`);
say(`  curl -si -X POST ${base}${paths.start(other)}   # no token: 401 problem+json`);
say(`  curl -si ${auth} ${base}${RUNTIME}/Other-Org   # an org the policy does not grant: 403`);
say(`  curl -s ${base}/readyz`);
say(
  `  (every answer carries RateLimit-Policy / RateLimit: ${ORG} allows 10 resumes and stops per minute plus a ` +
    'burst of 5, and 60 reads per minute counted apart, per process in the demo)',
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
