// `npm run -s dev:token -- --sub SUB`: asks the running dev issuer (npm run dev:issuer) for a token and prints it on
// stdout, alone, so `TOKEN=$(npm run -s dev:token -- --sub svc-billing)` works; anything else goes to stderr.
import { fail, flags, intFlag } from './cli.js';

const usage = `usage: npm run -s dev:token -- --sub SUB [--aud AUD]... [--claims NAME=VALUE]... [--ttl 3600] [--issuer URL]

  --sub      the caller (the token's sub), e.g. svc-billing
  --aud      the token's aud (repeatable; default: the issuer's audience, snapgate)
  --claims   one more claim (repeatable; --claim too): scope=snaplogic:runtime:operate, groups='["data-eng-oncall"]'
             (a value starting with [ or { is read as JSON, anything else is a string)
  --ttl      seconds the token is valid (default 3600)
  --issuer   the dev issuer's URL (default $SNAPGATE_DEV_ISSUER_URL, else http://127.0.0.1:8082)

  TOKEN=$(npm run -s dev:token -- --sub svc-billing)`;

const values = flags(
  {
    sub: { type: 'string' },
    aud: { type: 'string', multiple: true },
    claims: { type: 'string', multiple: true },
    claim: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    issuer: { type: 'string' },
  },
  usage,
);
if (values.sub === undefined || values.sub === '') fail(`--sub is required\n${usage}`, 64);
const ttl = intFlag('ttl', values.ttl, 3600, 1, 86_400);
const issuer = values.issuer ?? process.env.SNAPGATE_DEV_ISSUER_URL ?? 'http://127.0.0.1:8082';

const claims: Record<string, unknown> = {};
for (const pair of [...(values.claims ?? []), ...(values.claim ?? [])]) {
  const i = pair.indexOf('=');
  if (i <= 0) fail(`--claims takes NAME=VALUE, got "${pair}"`, 64);
  const [name, text] = [pair.slice(0, i), pair.slice(i + 1)];
  try {
    claims[name] = /^[[{]/.test(text) ? JSON.parse(text) : text;
  } catch {
    fail(`--claims ${name}: the value starts like JSON but is not JSON`, 64);
  }
}
const aud = values.aud === undefined ? undefined : values.aud.length === 1 ? values.aud[0] : values.aud;

let res: Response;
try {
  res = await fetch(new URL('/token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub: values.sub, ...(aud !== undefined ? { aud } : {}), claims, ttl }),
    signal: AbortSignal.timeout(5_000),
  });
} catch (err) {
  fail(`dev:token: cannot reach the dev issuer at ${issuer} (${String(err)}); is npm run dev:issuer running?`);
}
const body = (await res.json().catch(() => ({}))) as { access_token?: string; error?: string };
if (!res.ok || typeof body.access_token !== 'string') {
  fail(`dev:token: the dev issuer at ${issuer} answered ${res.status}: ${body.error ?? 'no token'}`);
}
process.stdout.write(`${body.access_token}\n`);
