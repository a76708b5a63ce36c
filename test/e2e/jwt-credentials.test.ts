// Issue 13 end to end, against a real snapgate process: a credentials: jwt org gets a token snapgate signs (never the
// caller's), SnapLogic (the stand-in) verifies it through snapgate's own JWKS over HTTP, keys rotate next → active →
// retired → removed by a config rewrite and SIGHUP with no failed call, identities pick the token's sub, and a broken
// reload keeps the last good keys. No output of the process may carry private key material.
import { createPrivateKey } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSigningKey, publicJwkFields, type PublicJwk } from '../../src/credentials/signing-keys.js';
import { baseConfig, spawnGateway, tempDir, type GatewayProcess } from '../helpers/gateway.js';
import { resumeNewRun, send, type Reply } from '../helpers/http.js';
import { recordSecret } from '../helpers/leak-scan.js';
import { freePort } from '../helpers/redis-server.js';
import { tokenFingerprint, type ReceivedRequest } from '../helpers/snaplogic-stand-in.js';
import { sleep, until } from '../helpers/wait.js';
import { useStandInAndIssuer } from '../helpers/world.js';

const world = useStandInAndIssuer();

const ORG = 'Acme-Prod';
const ORG_USER = 'svc-snapgate@acme.example';
const MAPPED_USER = 'reporting@acme.example';
const SIGNING_ISSUER = 'snapgate-e2e';
const DEFAULT_JWKS_PATH = '/.well-known/jwks.json';
/** Members of a private JWK (RSA and EC) and of a symmetric one: none may appear in a JWKS or any output line. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

interface KeyFile {
  path: string;
  pem: string;
  /** The kid snapgate publishes: the configured one, else the thumbprint generateSigningKey computed. */
  kid: string;
  /** The one given in the config, if any. */
  configKid?: string;
  publicJwk: PublicJwk;
  /** Private material as it could leak: the JWK's d and the PEM's full base64 lines. */
  secrets: string[];
}

/** A fresh ES256 key written to `dir/name.pem` with mode 0600, its private material recorded for the leak scans. */
async function keyFile(dir: string, name: string, configKid?: string): Promise<KeyFile> {
  const generated = await generateSigningKey('ES256');
  const path = join(dir, `${name}.pem`);
  writeFileSync(path, generated.privatePem, { mode: 0o600 });
  const d = createPrivateKey(generated.privatePem).export({ format: 'jwk' }).d!;
  const lines = generated.privatePem.split('\n').filter((l) => l.length === 64);
  const secrets = [d, ...lines];
  for (const s of secrets) recordSecret(s);
  return {
    path,
    pem: generated.privatePem,
    kid: configKid ?? generated.kid,
    ...(configKid !== undefined ? { configKid } : {}),
    publicJwk: generated.publicJwk,
    secrets,
  };
}

type KeyState = 'next' | 'active' | 'retired';
type KeyEntry = [KeyFile, KeyState];

const keysSection = (entries: KeyEntry[]) =>
  entries.map(([k, state]) => ({
    key: `file:${k.path}`,
    state,
    ...(k.configKid !== undefined ? { kid: k.configKid } : {}),
  }));

interface DocOptions {
  keys: KeyEntry[];
  jwks: Record<string, unknown>;
  lifetime?: string;
  identities?: Record<string, unknown>[];
}

/** snapgate's config: Acme-Prod in credentials: jwt as ORG_USER, the admin listener on a free port. */
function jwtDoc(o: DocOptions): Record<string, unknown> {
  const doc = baseConfig(world.standIn, world.issuer, {
    admin: { host: '127.0.0.1', port: 0 },
    policy: [
      {
        match: { iss: world.issuer.issuer, sub: ['svc-billing', 'svc-reporting'] },
        orgs: [ORG],
        actions: ['runtime.start'],
      },
    ],
    signing: {
      issuer: SIGNING_ISSUER,
      ...(o.lifetime !== undefined ? { lifetime: o.lifetime } : {}),
      keys: keysSection(o.keys),
      jwks: o.jwks,
    },
  });
  const orgs = doc.orgs as Record<string, unknown>;
  orgs[ORG] = { pod: world.standIn.url, credentials: 'jwt', user: ORG_USER, identities: o.identities ?? [] };
  return doc;
}

/** Writes the config whole (a temporary file renamed over it), so no reload ever reads half a file. */
function rewriteConfig(path: string, doc: Record<string, unknown>): void {
  writeFileSync(`${path}.tmp`, stringify(doc));
  renameSync(`${path}.tmp`, path);
}

/** The stand-in takes only JWTs for Acme-Prod, from SIGNING_ISSUER, verified with the JWKS at `jwksUrl`. */
function registerJwks(jwksUrl: string, users: string[] = [ORG_USER]): void {
  world.standIn.setJwtIssuer(ORG, { issuerId: SIGNING_ISSUER, jwksUrl }, users);
  world.standIn.setJwtOnly(ORG, true);
}

afterEach(() => {
  world.standIn.setJwtIssuer(ORG, undefined);
  world.standIn.setJwtOnly(ORG, false);
});

/** Spawns the built snapgate on `doc` written to `dir`, and reads its admin port from the start-up line. */
async function start(doc: Record<string, unknown>, dir: string) {
  const configPath = join(dir, 'snapgate.yaml');
  rewriteConfig(configPath, doc);
  const gw = await spawnGateway(configPath, { built: true });
  expect(gw.port, gw.stderr.join('\n')).toBeGreaterThan(0);
  const listening = JSON.parse(gw.stderr.find((l) => l.includes('"snapgate listening"'))!) as { adminPort: number };
  return { gw, configPath, adminUrl: `http://127.0.0.1:${listening.adminPort}` };
}

async function withProcess(
  doc: Record<string, unknown>,
  dir: string,
  use: (p: Awaited<ReturnType<typeof start>>) => Promise<void>,
): Promise<void> {
  const p = await start(doc, dir);
  try {
    await use(p);
  } finally {
    p.gw.kill('SIGKILL');
    await p.gw.exited;
  }
}

/**
 * Sends SIGHUP and waits for the reload's log line after this point: `config reloaded` (`: unchanged` when only the
 * secrets were read again), or a failure of the config or of the credentials.
 */
async function sighup(gw: GatewayProcess, expect: 'ok' | 'failed'): Promise<string> {
  const msgs =
    expect === 'ok'
      ? // The store's own watch may log `credentials reloaded` for the old config first, and the config file watch
        // its own reload (reason `config file change`): wait for the line of the reload this signal asked for.
        ['"msg":"config reloaded']
      : [
          '"msg":"config reload failed; keeping the last good config"',
          '"msg":"credential reload failed; keeping the last good credentials"',
        ];
  const mark = gw.stderr.length;
  const matches = (l: string) =>
    msgs.some((m) => l.includes(m)) && (expect === 'failed' || l.includes('"reason":"SIGHUP"'));
  gw.kill('SIGHUP');
  await until(
    () => gw.stderr.slice(mark).some(matches),
    5_000,
    () => `${msgs.join(' or ')} after SIGHUP; stderr since: ${gw.stderr.slice(mark).join('\n')}`,
  );
  return gw.stderr.slice(mark).find(matches)!;
}

/** The minted-token counter of Acme-Prod on the admin listener's /metrics. */
async function mintedMetric(adminUrl: string): Promise<number | undefined> {
  const text = (await send(adminUrl, 'GET', '/metrics')).text;
  const m = /^snapgate_jwt_minted_total\{org="Acme-Prod"\} (\d+)$/m.exec(text);
  return m === null ? undefined : Number(m[1]);
}

const lastStart = (): ReceivedRequest => world.standIn.startCalls().at(-1)!;

/** The kids the JWKS at `url` publishes, after checking each entry carries public members only. */
async function jwksKids(url: string): Promise<string[]> {
  const reply = await send(url, 'GET', new URL(url).pathname);
  expect(reply.status, reply.text).toBe(200);
  const keys = (reply.json as { keys: Record<string, unknown>[] }).keys;
  for (const k of keys) {
    expect(Object.keys(k).every((m) => (publicJwkFields as readonly string[]).includes(m))).toBe(true);
  }
  return keys.map((k) => k.kid as string).sort();
}

/** Every property name anywhere in a JSON value. */
function memberNames(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const v of value) memberNames(v, into);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      into.add(k);
      memberNames(v, into);
    }
  }
  return into;
}

/** No line the process wrote (logs on stderr, audit on stdout) holds a private JWK member or a key's private bytes. */
function expectNoKeyMaterial(gw: GatewayProcess, keys: KeyFile[]): void {
  const lines = [...gw.stdout, ...gw.stderr];
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    const names = memberNames(parsed);
    expect(
      PRIVATE_MEMBERS.filter((m) => names.has(m)),
      // Named by its message only: the line itself may be the leak.
      `private JWK members in the line "${(parsed as { msg?: string } | undefined)?.msg ?? '(not JSON)'}"`,
    ).toEqual([]);
    for (const k of keys) {
      for (const s of k.secrets) expect(line.includes(s), 'a line holds private key bytes').toBe(false);
    }
    expect(line.includes('PRIVATE KEY'), 'a line holds a PEM private key').toBe(false);
  }
}

/** A token like snapgate's (same header and claims) but signed here with `key`, expiring in `expiresIn` seconds. */
async function signLikeSnapgate(key: KeyFile, expiresIn: number): Promise<{ token: string; exp: number }> {
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + expiresIn;
  const token = await new SignJWT({ org: ORG })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setIssuer(SIGNING_ISSUER)
    .setSubject(ORG_USER)
    .setAudience(world.standIn.jwtAudience)
    .sign(createPrivateKey(key.pem));
  recordSecret(token);
  return { token, exp };
}

/** Straight to the stand-in (not through snapgate): a resume of a fresh run with `token`. */
const directResume = (token: string): Promise<Reply> => resumeNewRun(world.standIn.url, world.standIn, token);

describe.each([
  { where: 'its own listener', own: true, path: DEFAULT_JWKS_PATH, maxAge: '42s', maxAgeSec: 42 },
  { where: 'the callers’ listener', own: false, path: '/keys/snapgate-jwks.json', maxAge: '2m', maxAgeSec: 120 },
])('a jwt org, the JWKS on $where', ({ own, path, maxAge, maxAgeSec }) => {
  it('resumes with a token snapgate signed (never the caller’s), reuses it, and serves a public-only JWKS', async () => {
    const dir = tempDir();
    const a = await keyFile(dir, 'key-a');
    const jwksPort = own ? await freePort() : undefined;
    const doc = jwtDoc({
      keys: [[a, 'active']],
      jwks: { path, maxAge, ...(own ? { port: jwksPort, host: '127.0.0.1' } : {}) },
    });
    await withProcess(doc, dir, async ({ gw, adminUrl }) => {
      const jwksUrl = own ? `http://127.0.0.1:${jwksPort}${path}` : `${gw.url}${path}`;
      registerJwks(jwksUrl);
      const caller = await world.issuer.mint({ sub: 'svc-billing' });

      const first = await resumeNewRun(gw.url, world.standIn, caller);
      expect(first.status, first.text).toBe(200);
      const seen = lastStart();
      expect(seen.auth).toBe('jwt');
      expect(seen.jwt).toMatchObject({ kid: a.kid, alg: 'ES256', sub: ORG_USER, verified: true });
      expect(seen.jwt!.fingerprint).not.toBe(tokenFingerprint(caller));
      expect(JSON.stringify(seen.headers)).not.toContain(caller);
      expect(JSON.stringify(seen.headers)).not.toContain(caller.split('.')[2]);

      const second = await resumeNewRun(gw.url, world.standIn, caller);
      expect(second.status, second.text).toBe(200);
      expect(lastStart().jwt).toMatchObject({ verified: true, fingerprint: seen.jwt!.fingerprint });
      expect(await mintedMetric(adminUrl)).toBe(1);

      // The JWKS answer: cacheable for jwks.maxAge, JSON, an ETag that answers 304, public members of key A only.
      const reply = await send(jwksUrl, 'GET', path);
      expect(reply.status).toBe(200);
      expect(reply.headers['cache-control']).toBe(`public, max-age=${maxAgeSec}`);
      expect(reply.headers['content-type']).toMatch(/^application\/json/);
      const etag = reply.headers.etag as string;
      expect(etag).toMatch(/^"[^"]+"$/);
      const body = reply.json as { keys: Record<string, unknown>[] };
      expect(body.keys).toEqual([{ ...a.publicJwk, kid: a.kid }]);
      expect(PRIVATE_MEMBERS.filter((m) => memberNames(body).has(m))).toEqual([]);
      for (const s of a.secrets) expect(reply.text).not.toContain(s);
      const again = await send(jwksUrl, 'GET', path, { headers: { 'if-none-match': etag } });
      expect(again.status).toBe(304);
      expect(again.text).toBe('');
      expect(again.headers.etag).toBe(etag);
      const stale = await send(jwksUrl, 'GET', path, { headers: { 'if-none-match': '"not-the-etag"' } });
      expect(stale.status).toBe(200);
      if (own) {
        // Its own listener serves the JWKS only, and the callers' listener does not serve it.
        expect((await send(jwksUrl, 'GET', '/api/1/rest/public/runtime/Acme-Prod')).status).toBe(404);
        expect((await send(gw.url, 'GET', path)).status).not.toBe(200);
      }

      expectNoKeyMaterial(gw, [a]);
    });
  });
});

describe('signing-key rotation while calls run', () => {
  it('adds B as next, makes it active with A retired, then removes A: no call fails; A’s tokens are refused once expired or unpublished', async () => {
    const dir = tempDir();
    const a = await keyFile(dir, 'key-a');
    const b = await keyFile(dir, 'key-b', 'snapgate-key-b');
    const jwksPort = await freePort();
    const jwks = { port: jwksPort, host: '127.0.0.1', maxAge: '1s' };
    const jwksUrl = `http://127.0.0.1:${jwksPort}${DEFAULT_JWKS_PATH}`;
    const doc = (keys: KeyEntry[]) => jwtDoc({ keys, jwks, lifetime: '5s' });
    await withProcess(doc([[a, 'active']]), dir, async ({ gw, configPath, adminUrl }) => {
      registerJwks(jwksUrl);
      const caller = await world.issuer.mint({ sub: 'svc-billing' }, { expiresIn: 600 });
      const firstEtag = (await send(jwksUrl, 'GET', DEFAULT_JWKS_PATH)).headers.etag as string;

      const startsBefore = world.standIn.startCalls().length;
      // The loop: a resume of a fresh suspended run every ~20 ms, each answer kept.
      const answers: { status: number; text: string }[] = [];
      let running = true;
      const loop = (async () => {
        while (running) {
          const r = await resumeNewRun(gw.url, world.standIn, caller);
          answers.push({ status: r.status, text: r.text });
          await sleep(20);
        }
      })();
      /** Fingerprints of the tokens this test sends to the stand-in itself. */
      const direct = new Set<string>();
      /** Waits until the stand-in verified a call through snapgate that arrived after `at`. */
      const verifiedAfter = (at: number) =>
        until(
          () => world.standIn.startCalls().some((r) => r.at > at && r.jwt?.verified === true),
          5_000,
          () => `a verified call after ${at}`,
        );
      try {
        await sleep(300);

        // (a) B published as next: the JWKS has both, tokens still come from A.
        rewriteConfig(
          configPath,
          doc([
            [a, 'active'],
            [b, 'next'],
          ]),
        );
        await sighup(gw, 'ok');
        expect(await jwksKids(jwksUrl)).toEqual([a.kid, b.kid].sort());
        const changed = await send(jwksUrl, 'GET', DEFAULT_JWKS_PATH, { headers: { 'if-none-match': firstEtag } });
        expect(changed.status).toBe(200);
        // The stand-in's cache (1 s) went stale after the reload: a call verified later was checked against a
        // JWKS fetched after it, holding B.
        const publishedAt = Date.now();
        await verifiedAfter(publishedAt + 1_200);
        expect(lastStart().jwt?.kid).toBe(a.kid);

        // (b) B active, A retired: new tokens carry kid B; A stays published.
        rewriteConfig(
          configPath,
          doc([
            [a, 'retired'],
            [b, 'active'],
          ]),
        );
        const rotateMark = gw.stderr.length;
        await sighup(gw, 'ok');
        expect(gw.stderr.slice(rotateMark).some((l) => l.includes('"msg":"signing key rotated'))).toBe(true);
        // A call sent after the reload signs with B at once (the token of A is not reused): of the calls reaching
        // the stand-in after this point, only the one already in flight may still carry A.
        const rotatedAt = Date.now();
        const after = () => world.standIn.startCalls().filter((r) => r.at > rotatedAt);
        await until(
          () => after().length >= 2,
          5_000,
          () => 'two calls after the rotation',
        );
        expect(after()[1]!.jwt?.kid).toBe(b.kid);
        expect(await jwksKids(jwksUrl)).toEqual([a.kid, b.kid].sort());

        // A's signature still verifies while A is published and the token has not expired...
        const shortA = await signLikeSnapgate(a, 2);
        const longA = await signLikeSnapgate(a, 120);
        for (const t of [shortA, longA]) direct.add(tokenFingerprint(t.token));
        expect((await directResume(shortA.token)).status).toBe(200);
        expect((await directResume(longA.token)).status).toBe(200);
        // ...and the short one is refused once expired, though A is still published (retired).
        await until(() => Date.now() >= shortA.exp * 1000 + 100, 5_000);
        const expired = await directResume(shortA.token);
        expect(expired.status).toBe(401);
        expect(expired.json).toEqual({
          response_map: { error_list: [{ message: 'Authentication required' }] },
          http_status_code: 401,
        });
        // The tokens A signed before (b) expire within the lifetime (5 s); then A can go.
        await sleep(3_200);

        // (c) A removed: the JWKS holds B only; once the stand-in refetched, A's unexpired token is refused.
        rewriteConfig(configPath, doc([[b, 'active']]));
        await sighup(gw, 'ok');
        expect(await jwksKids(jwksUrl)).toEqual([b.kid]);
        const removedAt = Date.now();
        await verifiedAfter(removedAt + 1_200);
        expect(longA.exp * 1000).toBeGreaterThan(Date.now());
        expect((await directResume(longA.token)).status).toBe(401);
        await sleep(300);
      } finally {
        running = false;
        await loop;
      }

      // Every call of the loop succeeded, through all three reloads.
      expect(answers.length).toBeGreaterThan(100);
      expect(answers.filter((r) => r.status < 200 || r.status > 299)).toEqual([]);
      // The stand-in verified each call snapgate sent; their kids went A…A then B…B, never back (one call at a time).
      const viaSnapgate = world.standIn
        .startCalls()
        .slice(startsBefore)
        .filter((r) => !direct.has(r.jwt?.fingerprint ?? ''));
      expect(viaSnapgate.length).toBe(answers.length);
      expect(viaSnapgate.filter((r) => r.auth !== 'jwt' || r.jwt?.verified !== true || r.jwt.sub !== ORG_USER)).toEqual(
        [],
      );
      const kids = viaSnapgate.map((r) => r.jwt!.kid);
      const firstB = kids.indexOf(b.kid);
      expect(firstB).toBeGreaterThan(0);
      expect(kids.slice(0, firstB).every((k) => k === a.kid)).toBe(true);
      expect(kids.slice(firstB).every((k) => k === b.kid)).toBe(true);
      // Tokens were reused: far fewer signatures than calls (5 s lifetime, refreshed at 4 s).
      const minted = (await mintedMetric(adminUrl))!;
      expect(minted).toBeGreaterThanOrEqual(2);
      expect(minted).toBeLessThan(10);

      expectNoKeyMaterial(gw, [a, b]);
    });
  });
});

describe('identities of a jwt org', () => {
  it('gives a mapped caller a token for its mapped user and an unmapped one the org’s user, as the audit records', async () => {
    const dir = tempDir();
    const a = await keyFile(dir, 'key-a');
    const doc = jwtDoc({
      keys: [[a, 'active']],
      jwks: {},
      identities: [
        { name: 'reporting', match: { iss: world.issuer.issuer, sub: 'svc-reporting' }, user: MAPPED_USER },
        // No name: the identity is named by its user.
        { match: { iss: world.issuer.issuer, claims: { groups: 'ops' } }, user: 'ops@acme.example' },
      ],
    });
    (doc.policy as Record<string, unknown>[]).push({
      match: { iss: world.issuer.issuer, sub: 'svc-ops' },
      orgs: [ORG],
      actions: ['runtime.start'],
    });
    await withProcess(doc, dir, async ({ gw, adminUrl }) => {
      registerJwks(`${gw.url}${DEFAULT_JWKS_PATH}`, [ORG_USER, MAPPED_USER, 'ops@acme.example']);
      const callers = [
        { sub: 'svc-reporting', claims: {}, user: MAPPED_USER, name: 'reporting' },
        { sub: 'svc-billing', claims: {}, user: ORG_USER, name: 'default' },
        { sub: 'svc-ops', claims: { groups: ['ops'] }, user: 'ops@acme.example', name: 'ops@acme.example' },
      ];
      const fingerprints: string[] = [];
      for (const c of callers) {
        const token = await world.issuer.mint({ sub: c.sub, ...c.claims });
        const reply = await resumeNewRun(gw.url, world.standIn, token);
        expect(reply.status, reply.text).toBe(200);
        const seen = lastStart();
        expect(seen.jwt, c.sub).toMatchObject({ kid: a.kid, sub: c.user, verified: true });
        expect(seen.jwt!.fingerprint).not.toBe(tokenFingerprint(token));
        fingerprints.push(seen.jwt!.fingerprint);
        const ruuid = seen.path.split('/').at(-1)!;

        // The audit trail (stdout, JSON lines): the outcome of this call names the identity SnapLogic saw.
        await until(() => gw.stdout.some((l) => l.includes(ruuid) && l.includes('"type":"outcome"')));
        const events = gw.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.ruuid === ruuid);
        const outcome = events.find((e) => e.type === 'outcome')!;
        expect(outcome.upstreamIdentity, c.sub).toEqual({ type: 'jwt', name: c.name, user: c.user });
        expect((outcome.caller as { sub: string }).sub).toBe(c.sub);
        // The attempt is written before the credential is chosen; where it names one, it is the same.
        for (const e of events) {
          if (e.upstreamIdentity !== undefined) expect(e.upstreamIdentity).toEqual(outcome.upstreamIdentity);
        }
      }
      // One token per SnapLogic user.
      expect(new Set(fingerprints).size).toBe(3);
      expect(await mintedMetric(adminUrl)).toBe(3);
      expectNoKeyMaterial(gw, [a]);
    });
  });
});

describe('a broken reload of the signing keys', () => {
  it('keeps the last good keys (two active keys, an emptied key file), names the path and no key material', async () => {
    const dir = tempDir();
    const a = await keyFile(dir, 'key-a');
    const b = await keyFile(dir, 'key-b', 'snapgate-key-b');
    const jwksPort = await freePort();
    const jwks = { port: jwksPort, host: '127.0.0.1' };
    const jwksUrl = `http://127.0.0.1:${jwksPort}${DEFAULT_JWKS_PATH}`;
    const doc = (keys: KeyEntry[]) => jwtDoc({ keys, jwks, lifetime: '5s' });
    await withProcess(doc([[a, 'active']]), dir, async ({ gw, configPath }) => {
      registerJwks(jwksUrl);
      const caller = await world.issuer.mint({ sub: 'svc-billing' });
      const resumesWithA = async () => {
        const reply = await resumeNewRun(gw.url, world.standIn, caller);
        expect(reply.status, reply.text).toBe(200);
        expect(lastStart().jwt).toMatchObject({ kid: a.kid, verified: true });
        expect(await jwksKids(jwksUrl)).toEqual([a.kid]);
      };
      await resumesWithA();

      // Two active keys: the config no longer loads; the reload names the config file.
      rewriteConfig(
        configPath,
        doc([
          [a, 'active'],
          [b, 'active'],
        ]),
      );
      const twoActive = await sighup(gw, 'failed');
      expect(twoActive).toContain(configPath);
      expect(twoActive).toContain('active');
      await resumesWithA();

      // A good config again, then key A's file emptied: the reload names the key file; A still signs.
      rewriteConfig(configPath, doc([[a, 'active']]));
      await sighup(gw, 'ok');
      writeFileSync(a.path, '');
      const emptied = await sighup(gw, 'failed');
      expect(emptied).toContain(a.path);
      // Past the 80% reuse point of the 5 s lifetime: a fresh signature with the key held in memory.
      await sleep(4_200);
      await resumesWithA();
      const [before, after] = world.standIn
        .startCalls()
        .slice(-2)
        .map((r) => r.jwt!.fingerprint);
      expect(after).not.toBe(before);

      expectNoKeyMaterial(gw, [a, b]);
    });
  });
});
