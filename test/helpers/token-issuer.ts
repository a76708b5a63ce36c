// A local identity provider for tests and the demo: real key pairs, a JWKS over HTTP, key rotation and outages.
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { recordSecret } from './leak-scan.js';
import { listenOnLoopback, type Listening } from './loopback.js';

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface MintOptions {
  /** Seconds from now; negative for an expired token. Default 300. Null leaves exp out. */
  expiresIn?: number | null;
  /** Seconds from now for nbf. */
  notBefore?: number;
  /** Overrides the issuer claim. */
  iss?: string;
  /** Signs with a key that is not published (wrong signature), keeping the published kid. */
  forgeWithUnpublishedKey?: boolean;
  /** Header overrides, e.g. a kid the JWKS does not have, or none. */
  kid?: string | null;
  /** Signs with the key the next rotate() will publish: its kid is unknown until then. */
  nextKey?: boolean;
}

async function newKey(alg: string, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export class TokenIssuer {
  private keys: SigningKey[] = [];
  private rogue: SigningKey | undefined;
  private listening!: Listening;
  private generation = 0;
  /** How the JWKS endpoint behaves: serve keys, refuse (500), or never answer. */
  mode: 'up' | 'error' | 'hang' = 'up';
  jwksFetches = 0;
  port = 0;

  private constructor(
    readonly alg: string,
    readonly audience: string,
  ) {}

  static async start(options: { alg?: string; audience?: string; port?: number } = {}): Promise<TokenIssuer> {
    const issuer = new TokenIssuer(options.alg ?? 'ES256', options.audience ?? 'snapgate');
    issuer.keys = [await newKey(issuer.alg, 'key-0')];
    const server = createServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      issuer.jwksFetches += 1;
      if (issuer.mode === 'hang') return;
      if (issuer.mode === 'error') {
        res.writeHead(500).end('down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: issuer.keys.map((k) => k.publicJwk) }));
    });
    issuer.listening = await listenOnLoopback(server, options.port);
    issuer.port = issuer.listening.port;
    return issuer;
  }

  /** The `iss` value, which is also the issuer's base URL. */
  get issuer(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** This issuer as an entry of snapgate's auth.issuers (its JWKS over HTTP, its alg and audience), plus `extra`. */
  configEntry(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { issuer: this.issuer, audience: this.audience, jwksUri: this.jwksUri, algorithms: [this.alg], ...extra };
  }

  get jwksUri(): string {
    return `${this.issuer}/.well-known/jwks.json`;
  }

  get currentKid(): string {
    return this.keys.at(-1)!.kid;
  }

  /** Publishes a new key and signs with it from now on; `dropOld` unpublishes the previous keys. */
  private next: SigningKey | undefined;

  async rotate(options: { dropOld?: boolean } = {}): Promise<string> {
    this.generation += 1;
    const key = this.next ?? (await newKey(this.alg, `key-${this.generation}`));
    this.next = undefined;
    this.keys = options.dropOld ? [key] : [...this.keys, key];
    return key.kid;
  }

  /** Signs a token with the current key. */
  async mint(claims: JWTPayload & { sub?: string }, options: MintOptions = {}): Promise<string> {
    let key = this.keys.at(-1)!;
    if (options.nextKey) {
      this.next ??= await newKey(this.alg, `key-${this.generation + 1}`);
      key = this.next;
    }
    if (options.forgeWithUnpublishedKey) {
      this.rogue ??= await newKey(this.alg, key.kid);
      key = { ...this.rogue, kid: key.kid };
    }
    const now = Math.floor(Date.now() / 1000);
    const header: { alg: string; kid?: string; typ: string } = { alg: key.alg, typ: 'JWT' };
    if (options.kid !== null) header.kid = options.kid ?? key.kid;
    const jwt = new SignJWT({ aud: this.audience, ...claims })
      .setProtectedHeader(header)
      .setIssuer(options.iss ?? this.issuer)
      .setIssuedAt(now);
    if (options.expiresIn !== null) jwt.setExpirationTime(now + (options.expiresIn ?? 300));
    if (options.notBefore !== undefined) jwt.setNotBefore(now + options.notBefore);
    const token = await jwt.sign(key.privateKey);
    recordSecret(token);
    return token;
  }

  async close(): Promise<void> {
    await this.listening.close();
  }
}
