// Signing keys for the JWTs snapgate will mint for SnapLogic (issue 13): parsed from resolved secret text, one
// active key in a set, and the public JWKS built from an allow-list. Groundwork: not yet read by config or the
// request path.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';

export type SigningAlg = 'RS256' | 'ES256';
export const signingAlgs: readonly SigningAlg[] = ['RS256', 'ES256'];

/** next: published, not used; active: signs; retired: published until the tokens it signed have expired. */
export type KeyState = 'next' | 'active' | 'retired';
const keyStates: readonly KeyState[] = ['next', 'active', 'retired'];

/** The public members a JWKS entry may carry; nothing else is ever copied into one. */
export interface PublicJwk {
  readonly kty: 'RSA' | 'EC';
  readonly crv?: 'P-256';
  readonly x?: string;
  readonly y?: string;
  readonly n?: string;
  readonly e?: string;
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly use: 'sig';
}
export const publicJwkFields = ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use'] as const;

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly state: KeyState;
  /** RFC 7638 thumbprint of the public key: tells two keys apart even when an operator reuses a kid. */
  readonly thumbprint: string;
  /** Never log it (a KeyObject serialises to `{}`, but its export does not). */
  readonly privateKey: KeyObject;
  readonly publicJwk: PublicJwk;
}

/** A validated set: `active` is the one key in `keys` whose state is active. */
export interface KeySet {
  readonly keys: readonly SigningKey[];
  readonly active: SigningKey;
}

/** One key as the config will describe it, its secret already resolved (see config/secret-ref.ts). */
export interface SigningKeyInput {
  /** PEM PKCS#8 private key or a private JWK as JSON. */
  readonly secret: string;
  readonly state: KeyState;
  readonly kid?: string;
}

/** Each problem names the key's index and what to do; never any key material. */
export class SigningKeyError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid signing keys:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SigningKeyError';
  }
}

/** Thrown inside parsing and turned into one problem line per key. */
class KeyProblem extends Error {}

const b64url = (bytes: Buffer): string => bytes.toString('base64url');

/** RFC 7638: SHA-256 over the required members, in lexicographic order, without whitespace. */
export function jwkThumbprint(jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y' | 'n' | 'e'>): string {
  const members =
    jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return b64url(createHash('sha256').update(JSON.stringify(members)).digest());
}

function importPrivate(secret: string): { key: KeyObject; jwk?: Record<string, unknown> } {
  const text = secret.trim();
  if (text.startsWith('-----BEGIN')) {
    const label = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
    if (label === 'ENCRYPTED PRIVATE KEY') {
      throw new KeyProblem('is an encrypted PKCS#8 key; store it unencrypted (openssl pkcs8 -topk8 -nocrypt)');
    }
    if (label === 'RSA PRIVATE KEY' || label === 'EC PRIVATE KEY') {
      throw new KeyProblem(`is a "${label}" PEM; convert it to PKCS#8 with: openssl pkcs8 -topk8 -nocrypt -in <file>`);
    }
    if (label !== 'PRIVATE KEY') {
      throw new KeyProblem(`is a "${label ?? '?'}" PEM; a PKCS#8 private key ("BEGIN PRIVATE KEY") is needed`);
    }
    try {
      return { key: createPrivateKey({ key: text, format: 'pem' }) };
    } catch (err) {
      throw new KeyProblem(`cannot be read as a PKCS#8 private key (${codeOf(err)})`, { cause: err });
    }
  }
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch (err) {
    throw new KeyProblem('is neither a PEM private key nor JSON (a private JWK)', { cause: err });
  }
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new KeyProblem('is JSON but not a JWK');
  const obj = jwk as Record<string, unknown>;
  if (obj.kty === 'oct') throw new KeyProblem('is a symmetric (oct, HS256) key; SnapLogic accepts RS256 or ES256 only');
  if (obj.kty !== 'RSA' && obj.kty !== 'EC') throw new KeyProblem('is a JWK whose kty is not RSA or EC');
  if (obj.d === undefined) throw new KeyProblem('is a public JWK; the private key (with "d") is needed to sign');
  if (obj.use !== undefined && obj.use !== 'sig') throw new KeyProblem('is a JWK whose "use" is not "sig"');
  try {
    return { key: createPrivateKey({ key: obj as JsonWebKey, format: 'jwk' }), jwk: obj };
  } catch (err) {
    throw new KeyProblem(`cannot be read as a private JWK (${codeOf(err)})`, { cause: err });
  }
}

function codeOf(err: unknown): string {
  return (err as { code?: string }).code ?? 'invalid key';
}

/** The algorithm the key can sign with, or a problem saying why it cannot. */
function algOf(key: KeyObject): SigningAlg {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < 2048) {
      throw new KeyProblem(`is an RSA key of ${bits} bits; RS256 needs at least 2048 (generate a new key)`);
    }
    return 'RS256';
  }
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve !== 'prime256v1') {
      throw new KeyProblem(`is an EC key on ${details.namedCurve ?? 'an unknown curve'}; ES256 needs P-256`);
    }
    return 'ES256';
  }
  throw new KeyProblem(`is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; only RSA (RS256) and EC P-256 (ES256)`);
}

/** Copies the allow-listed public members; the private ones are never read. */
function publicMembers(key: KeyObject): Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y' | 'n' | 'e'> {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (jwk.kty === 'RSA') return { kty: 'RSA', n: jwk.n, e: jwk.e };
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
}

function parseOne(input: SigningKeyInput): SigningKey {
  if (!keyStates.includes(input.state)) throw new KeyProblem(`state must be one of ${keyStates.join(', ')}`);
  const { key, jwk } = importPrivate(input.secret);
  const alg = algOf(key);
  if (jwk?.alg !== undefined && jwk.alg !== alg) {
    throw new KeyProblem(`is a JWK with "alg": ${JSON.stringify(jwk.alg)}, but the key can only sign ${alg}`);
  }
  const members = publicMembers(key);
  const thumbprint = jwkThumbprint(members);
  const jwkKid = typeof jwk?.kid === 'string' ? jwk.kid : undefined;
  if (input.kid !== undefined && jwkKid !== undefined && input.kid !== jwkKid) {
    throw new KeyProblem(`kid "${input.kid}" differs from the JWK's own kid "${jwkKid}"; drop one or make them equal`);
  }
  const kid = input.kid ?? jwkKid ?? thumbprint;
  if (kid.length === 0) throw new KeyProblem('kid is empty; give one or leave it out to use the key thumbprint');
  const publicJwk: PublicJwk = Object.freeze({ ...members, kid, alg, use: 'sig' });
  return Object.freeze({ kid, alg, state: input.state, thumbprint, privateKey: key, publicJwk });
}

/**
 * Parses and validates a key set. Throws SigningKeyError listing every problem: a key that cannot be read or is
 * not RS256 (RSA ≥ 2048 bits) / ES256 (P-256), a kid used twice, and anything but exactly one active key.
 * `label` names the list in messages (default `signingKeys`), so `signingKeys[1]` points at the second key.
 */
export function createKeySet(inputs: readonly SigningKeyInput[], label = 'signingKeys'): KeySet {
  const problems: string[] = [];
  const parsed: { index: number; key: SigningKey }[] = [];
  inputs.forEach((input, index) => {
    try {
      parsed.push({ index, key: parseOne(input) });
    } catch (err) {
      if (!(err instanceof KeyProblem)) throw err;
      problems.push(`${label}[${index}]${input.kid === undefined ? '' : ` (kid "${input.kid}")`}: ${err.message}`);
    }
  });
  const seen = new Map<string, number>();
  for (const { index, key } of parsed) {
    const first = seen.get(key.kid);
    if (first === undefined) seen.set(key.kid, index);
    else {
      problems.push(
        `${label}[${index}]: kid "${key.kid}" is already used by ${label}[${first}]; give each key its own kid`,
      );
    }
  }
  // Counted only over the keys that parsed: a broken key must not also read as "no active key".
  const active = parsed.filter(({ key }) => key.state === 'active');
  if (active.length > 1) {
    const where = active.map(({ index }) => `${label}[${index}]`).join(', ');
    problems.push(
      `${where} are all active; exactly one key signs: keep one active, make the newer next or the older retired`,
    );
  } else if (active.length === 0 && problems.length === 0) {
    problems.push(`${label}: no key is active; set exactly one key's state to active (the one that signs)`);
  }
  if (problems.length > 0) throw new SigningKeyError(problems);
  const keys = parsed.map(({ key }) => key);
  return Object.freeze({ keys: Object.freeze(keys), active: active[0]!.key });
}

/**
 * The JWKS SnapLogic fetches: the next, active and retired keys' public members only. Each entry is built by
 * copying `publicJwkFields`, so a private member can never ride along.
 */
export function publicJwks(set: KeySet): { keys: PublicJwk[] } {
  // All three states are published: next so SnapLogic has it before it signs, retired until its tokens expire.
  const keys = set.keys.map((k) => {
    const entry: Record<string, unknown> = {};
    for (const field of publicJwkFields) {
      const value = k.publicJwk[field];
      if (value !== undefined) entry[field] = value;
    }
    return entry as unknown as PublicJwk;
  });
  return { keys };
}

const generatePair = promisify(generateKeyPair);

/**
 * A new key pair for `snapgate keys generate`: RS256 as RSA 2048 bits, ES256 on P-256. `privatePem` is PKCS#8
 * (the caller writes it with mode 0600); `kid` is the public key's RFC 7638 thumbprint.
 */
export async function generateSigningKey(
  alg: SigningAlg,
): Promise<{ privatePem: string; publicJwk: PublicJwk; kid: string }> {
  if (!signingAlgs.includes(alg)) throw new RangeError(`alg must be one of ${signingAlgs.join(', ')}`);
  const { privateKey } =
    alg === 'RS256'
      ? await generatePair('rsa', { modulusLength: 2048 })
      : await generatePair('ec', { namedCurve: 'prime256v1' });
  const members = publicMembers(privateKey);
  const kid = jwkThumbprint(members);
  const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { privatePem, publicJwk: Object.freeze({ ...members, kid, alg, use: 'sig' }), kid };
}
