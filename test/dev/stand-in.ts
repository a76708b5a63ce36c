// `npm run dev:snaplogic`: the SnapLogic stand-in on its own, for trying snapgate with a config of your own.
// Serves SnapLogic's runtime API for the orgs named (Basic user and password from SNAPGATE_DEV_SL_USER and
// SNAPGATE_DEV_SL_PASSWORD, the values snapgate's config/snapgate.local.yaml references), seeds suspended runs and
// names them on stderr, and adds more on POST /dev/runs. GET /healthz for healthchecks. Never a real SnapLogic.
import { SnapLogicStandIn, type StandInOrg } from '../helpers/snaplogic-stand-in.js';
import { closeOnSignal, fail, flags, intFlag, say } from './cli.js';

/** The stand-in's own credential when the environment names none: a fake SnapLogic's password guards nothing. */
const DEFAULT_USER = 'snapgate-dev@example.com';
const DEFAULT_PASSWORD = 'snapgate-dev-password';

const usage = `usage: npm run dev:snaplogic -- [--port 8081] [--host 127.0.0.1] [--org Acme-Prod]... [--runs 3] [--step-ms 2000]

  --port      where it listens (default 8081)
  --host      the address it binds (default 127.0.0.1; 0.0.0.0 in a container)
  --org       an org it serves (repeatable; default Acme-Prod); names are case-sensitive, as in SnapLogic
  --runs      suspended runs seeded per org at start, their ruuids printed on stderr (default 3)
  --step-ms   ms between a run's state steps after a resume: Resuming -> Started -> Completed (default 2000)

Every org accepts Basic $SNAPGATE_DEV_SL_USER / $SNAPGATE_DEV_SL_PASSWORD (unset: ${DEFAULT_USER} /
${DEFAULT_PASSWORD}); give snapgate the same two variables (config/snapgate.local.yaml references them).
More runs: curl -X POST http://127.0.0.1:8081/dev/runs -d '{"org":"Acme-Prod","count":1}'
Every run and its state: curl http://127.0.0.1:8081/dev/runs`;

const values = flags(
  {
    port: { type: 'string' },
    host: { type: 'string' },
    org: { type: 'string', multiple: true },
    runs: { type: 'string' },
    'step-ms': { type: 'string' },
  },
  usage,
);
const port = intFlag('port', values.port, 8081, 0, 65535);
const runs = intFlag('runs', values.runs, 3, 0, 100);
const stepMs = intFlag('step-ms', values['step-ms'], 2_000, 0, 600_000);
const orgNames = values.org ?? ['Acme-Prod'];
const username = process.env.SNAPGATE_DEV_SL_USER || DEFAULT_USER;
const password = process.env.SNAPGATE_DEV_SL_PASSWORD || DEFAULT_PASSWORD;
const orgs: Record<string, StandInOrg> = Object.fromEntries(orgNames.map((name) => [name, { username, password }]));

const standIn = await SnapLogicStandIn.start({
  orgs,
  port,
  host: values.host ?? '127.0.0.1',
  transitionMs: stepMs,
  operatorRoutes: true,
}).catch((err: unknown) =>
  fail(`dev:snaplogic: cannot listen on ${values.host ?? '127.0.0.1'}:${port}: ${String(err)}`),
);
closeOnSignal('dev:snaplogic', () => standIn.close());

const origin = `http://${values.host ?? '127.0.0.1'}:${standIn.port}`;
say(`dev:snaplogic: SnapLogic stand-in listening on ${origin} (pod URL for snapgate's config: ${standIn.url})`);
say(`  runtime API under /api/1/rest/public/runtime; GET /healthz; GET and POST /dev/runs`);
const passwordFrom = process.env.SNAPGATE_DEV_SL_PASSWORD
  ? 'the password in $SNAPGATE_DEV_SL_PASSWORD'
  : 'the default dev password (see --help)';
for (const name of orgNames) {
  say(`  org ${name}: Basic user ${username}, ${passwordFrom}`);
  for (let i = 0; i < runs; i += 1) {
    say(`  suspended run: ${name} ${standIn.addRun(name, 'Suspended', undefined, { label: `dev-pipeline-${i + 1}` })}`);
  }
}
