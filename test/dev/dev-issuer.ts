// `npm run dev:issuer`: a development identity provider on its own. Publishes its JWKS, mints tokens on
// POST /token for callers on the same host (what `npm run dev:token` asks), and with --state-dir keeps its signing
// key (0600) and writes its JWKS to a file (for snapgate's jwksFile), so a restart keeps the tokens it minted valid.
// GET /healthz for healthchecks. For trying snapgate only: anyone on this host can mint any caller's token.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { listenOnLoopback } from '../helpers/loopback.js';
import { closeOnSignal, fail, flags, intFlag, say } from './cli.js';

const usage = `usage: npm run dev:issuer -- [--port 8082] [--host 127.0.0.1] [--iss snapgate-dev-issuer] [--audience snapgate]
                           [--state-dir DIR]

  --port        where it listens (default 8082)
  --host        the address it binds (default 127.0.0.1; 0.0.0.0 in a container: POST /token still answers only
                callers on this host)
  --iss         the tokens' iss, the issuer snapgate's config names (default snapgate-dev-issuer)
  --audience    the tokens' default aud (default snapgate)
  --state-dir   keep the ES256 signing key in DIR/signing-key.jwk (0600) across restarts, and write DIR/jwks.json
                (default: a new key at every start, kept in memory)

GET /.well-known/jwks.json   the public key
POST /token                  {"sub":"svc-billing","aud":"snapgate","claims":{"scope":"..."},"ttl":3600}
                             -> {"access_token":"...","token_type":"Bearer","expires_in":3600}; callers on this host only
GET /healthz`;

const values = flags(
  {
    port: { type: 'string' },
    host: { type: 'string' },
    iss: { type: 'string' },
    audience: { type: 'string' },
    'state-dir': { type: 'string' },
  },
  usage,
);
const port = intFlag('port', values.port, 8082, 0, 65535);
const host = values.host ?? '127.0.0.1';
const iss = values.iss ?? 'snapgate-dev-issuer';
const audience = values.audience ?? 'snapgate';
const ALG = 'ES256';
/** A token request is a few claims; anything larger is refused before it is parsed. */
const MAX_BODY_BYTES = 65_536;
/** Claims the issuer sets itself; a request naming them is refused rather than silently overridden. */
const RESERVED = new Set(['iss', 'iat', 'exp']);

interface SigningKey {
  privateKey: CryptoKey | Uint8Array;
  publicJwk: JWK;
}

async function newKey(): Promise<{ key: SigningKey; privateJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
  const kid = `dev-${randomUUID().slice(0, 8)}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALG, use: 'sig' };
  return { key: { privateKey, publicJwk }, privateJwk: { ...(await exportJWK(privateKey)), kid, alg: ALG } };
}

/** The key of `dir` (made there on first use, 0600), and its JWKS rewritten to dir/jwks.json. */
async function keyIn(dir: string): Promise<SigningKey> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'signing-key.jwk');
  let key: SigningKey;
  try {
    const privateJwk = JSON.parse(readFileSync(keyFile, 'utf8')) as JWK;
    const { d: _d, ...publicPart } = privateJwk;
    key = { privateKey: await importJWK(privateJwk, ALG), publicJwk: { ...publicPart, use: 'sig' } };
    say(`dev:issuer: signing key ${privateJwk.kid ?? '?'} read from ${keyFile}`);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') fail(`dev:issuer: cannot use ${keyFile}: ${String(err)}`);
    const made = await newKey();
    // wx: two issuers starting on one state dir never overwrite each other's key.
    writeFileSync(keyFile, `${JSON.stringify(made.privateJwk)}\n`, { mode: 0o600, flag: 'wx' });
    key = made.key;
    say(`dev:issuer: new signing key ${made.key.publicJwk.kid} written to ${keyFile} (mode 0600)`);
  }
  // Written whole then renamed, so a reader (snapgate's jwksFile) never sees half a file.
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(`${jwksFile}.tmp`, `${JSON.stringify({ keys: [key.publicJwk] })}\n`, { mode: 0o644 });
  renameSync(`${jwksFile}.tmp`, jwksFile);
  say(`dev:issuer: JWKS written to ${jwksFile}`);
  return key;
}

const key = values['state-dir'] !== undefined ? await keyIn(values['state-dir']) : (await newKey()).key;
const jwks = JSON.stringify({ keys: [key.publicJwk] });

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}

function fromThisHost(req: IncomingMessage): boolean {
  const peer = req.socket.remoteAddress ?? '';
  return peer === '127.0.0.1' || peer === '::1' || peer === '::ffff:127.0.0.1';
}

/** What POST /token asked for, or the reason it cannot be minted. */
function tokenRequest(text: string): { sub: string; aud: string | string[]; claims: object; ttl: number } | string {
  let body: { sub?: unknown; aud?: unknown; claims?: unknown; ttl?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    return 'the body must be JSON: {"sub":"svc-billing"}';
  }
  if (body === null || typeof body !== 'object') return 'the body must be a JSON object';
  const { sub, aud = audience, claims = {}, ttl = 3600 } = body;
  if (typeof sub !== 'string' || sub === '') return 'sub must be a non-empty string';
  const audOk =
    (typeof aud === 'string' && aud !== '') || (Array.isArray(aud) && aud.every((a) => typeof a === 'string'));
  if (!audOk) return 'aud must be a string or a list of strings';
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return 'claims must be a JSON object';
  const reserved = Object.keys(claims).filter((k) => RESERVED.has(k));
  if (reserved.length > 0) return `claims may not set ${reserved.join(', ')}: the issuer sets them (ttl sets exp)`;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) {
    return 'ttl must be whole seconds from 1 to 86400';
  }
  return { sub, aud: aud, claims, ttl };
}

async function mint(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!fromThisHost(req)) {
    send(res, 403, { error: 'tokens are minted for callers on this host only (run dev:token where the issuer runs)' });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      send(res, 413, { error: `the body must be at most ${MAX_BODY_BYTES} bytes` });
      return;
    }
    chunks.push(chunk as Buffer);
  }
  const asked = tokenRequest(Buffer.concat(chunks).toString('utf8'));
  if (typeof asked === 'string') {
    send(res, 400, { error: asked });
    return;
  }
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ ...asked.claims, sub: asked.sub, aud: asked.aud })
    .setProtectedHeader({ alg: ALG, kid: key.publicJwk.kid!, typ: 'JWT' })
    .setIssuer(iss)
    .setIssuedAt(now)
    .setExpirationTime(now + asked.ttl)
    .setJti(randomUUID())
    .sign(key.privateKey);
  // The token itself is never said: it is a credential.
  say(`dev:issuer: minted a token for sub ${asked.sub} (aud ${String(asked.aud)}, valid ${asked.ttl} s)`);
  send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: asked.ttl });
}

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://dev-issuer').pathname;
  if (req.method === 'GET' && path === '/.well-known/jwks.json') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
    res.end(jwks);
  } else if (req.method === 'GET' && path === '/healthz') {
    send(res, 200, { status: 'ok', iss, kid: key.publicJwk.kid });
  } else if (req.method === 'POST' && path === '/token') {
    mint(req, res).catch((err: unknown) => send(res, 500, { error: `cannot mint: ${String(err)}` }));
  } else {
    send(res, 404, { error: 'GET /.well-known/jwks.json, POST /token or GET /healthz' });
  }
});
const listening = await listenOnLoopback(server, port, host).catch((err: unknown) =>
  fail(`dev:issuer: cannot listen on ${host}:${port}: ${String(err)}`),
);
closeOnSignal('dev:issuer', () => listening.close());
const base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${listening.port}`;
say(`dev:issuer: development token issuer listening on http://${host}:${listening.port}`);
say(`  iss ${iss}, aud ${audience}, ${ALG}, kid ${key.publicJwk.kid}`);
say(`  JWKS ${base}/.well-known/jwks.json; tokens: npm run -s dev:token -- --sub svc-billing`);
