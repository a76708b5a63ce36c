// Signing keys from their resolved secret text: PEM PKCS#8 and private JWKs for RS256 and ES256 are read, every
// other kind is refused with a message naming the key; a set has exactly one active key; the public JWKS carries
// the next, active and retired keys and only the allow-listed public members.
import { generateKeyPairSync } from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  generateSecret,
  SignJWT,
  jwtVerify,
  createLocalJWKSet,
} from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createKeySet,
  generateSigningKey,
  publicJwkFields,
  publicJwks,
  SigningKeyError,
  type KeyState,
  type SigningKeyInput,
} from '../../src/credentials/signing-keys.js';
import { recordOutput, recordSecret } from '../helpers/leak-scan.js';

const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth', 'r', 't'];

interface Material {
  pem: string;
  jwk: Record<string, unknown>;
}

async function material(alg: 'RS256' | 'ES256' | 'ES384'): Promise<Material> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const pem = await exportPKCS8(privateKey);
  const jwk = (await exportJWK(privateKey)) as Record<string, unknown>;
  recordSecret(pem);
  for (const m of privateMembers) if (typeof jwk[m] === 'string') recordSecret(jwk[m]);
  return { pem, jwk };
}

/** Expects createKeySet to throw SigningKeyError and returns its problems (also recorded for the leak scan). */
function problemsOf(inputs: SigningKeyInput[]): readonly string[] {
  try {
    createKeySet(inputs);
  } catch (err) {
    expect(err).toBeInstanceOf(SigningKeyError);
    recordOutput((err as Error).message);
    return (err as SigningKeyError).problems;
  }
  throw new Error('createKeySet accepted the keys');
}

let rsa: Material;
let ec: Material;
let ec2: Material;
beforeAll(async () => {
  [rsa, ec, ec2] = await Promise.all([material('RS256'), material('ES256'), material('ES256')]);
});

describe('parsing', () => {
  it.each([
    ['RS256', 'PEM'],
    ['RS256', 'JWK'],
    ['ES256', 'PEM'],
    ['ES256', 'JWK'],
  ] as const)('reads a %s key from a %s and signs with it', async (alg, form) => {
    const m = alg === 'RS256' ? rsa : ec;
    const secret = form === 'PEM' ? m.pem : JSON.stringify(m.jwk);
    const set = createKeySet([{ secret, state: 'active', kid: 'k1' }]);
    expect(set.active).toMatchObject({ kid: 'k1', alg, state: 'active' });
    const token = await new SignJWT({}).setProtectedHeader({ alg, kid: 'k1' }).sign(set.active.privateKey);
    const { protectedHeader } = await jwtVerify(token, createLocalJWKSet(publicJwks(set)));
    expect(protectedHeader.kid).toBe('k1');
  });

  it('reads a PEM with surrounding whitespace (as a secret file may hold it)', () => {
    expect(createKeySet([{ secret: `\n${ec.pem}\n\n`, state: 'active' }]).active.alg).toBe('ES256');
  });

  it('uses the RFC 7638 thumbprint of the public key as kid when none is given', async () => {
    const set = createKeySet([
      { secret: rsa.pem, state: 'active' },
      { secret: JSON.stringify({ ...ec.jwk, kid: undefined }), state: 'next' },
    ]);
    expect(set.keys[0]!.kid).toBe(await calculateJwkThumbprint(rsa.jwk as never));
    expect(set.keys[1]!.kid).toBe(await calculateJwkThumbprint(ec.jwk as never));
    expect(set.keys[0]!.thumbprint).toBe(set.keys[0]!.kid);
  });

  it("takes a JWK's own kid, and refuses a different kid given beside it", () => {
    const secret = JSON.stringify({ ...ec.jwk, kid: 'from-jwk' });
    expect(createKeySet([{ secret, state: 'active' }]).active.kid).toBe('from-jwk');
    expect(createKeySet([{ secret, state: 'active', kid: 'from-jwk' }]).active.kid).toBe('from-jwk');
    expect(problemsOf([{ secret, state: 'active', kid: 'other' }])).toEqual([
      expect.stringMatching(/^signingKeys\[0\] \(kid "other"\): kid "other" differs from the JWK's own kid/),
    ]);
  });

  it('refuses an RSA key of 1024 bits', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const jwk = privateKey.export({ format: 'jwk' });
    recordSecret(pem);
    recordSecret(jwk.d!);
    for (const secret of [pem, JSON.stringify(jwk)]) {
      expect(problemsOf([{ secret, state: 'active' }])).toEqual([
        'signingKeys[0]: is an RSA key of 1024 bits; RS256 needs at least 2048 (generate a new key)',
      ]);
    }
  });

  it('refuses an HS256 (oct) key', async () => {
    const secret = await generateSecret('HS256', { extractable: true });
    const jwk = await exportJWK(secret);
    recordSecret(jwk.k!);
    expect(problemsOf([{ secret: JSON.stringify(jwk), state: 'active' }])).toEqual([
      expect.stringContaining('signingKeys[0]: is a symmetric (oct, HS256) key'),
    ]);
  });

  it('refuses an EC key on P-384, from a PEM and from a JWK', async () => {
    const p384 = await material('ES384');
    for (const secret of [p384.pem, JSON.stringify(p384.jwk)]) {
      expect(problemsOf([{ secret, state: 'active' }])).toEqual([
        'signingKeys[0]: is an EC key on secp384r1; ES256 needs P-256',
      ]);
    }
  });

  it('refuses an Ed25519 key', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    recordSecret(pem);
    expect(problemsOf([{ secret: pem, state: 'active' }])).toEqual([
      expect.stringMatching(/^signingKeys\[0\]: is a ed25519 key; only RSA \(RS256\) and EC P-256 \(ES256\)/),
    ]);
  });

  it('refuses a public key, a PKCS#1 PEM, a JWK with another alg, and text that is no key', () => {
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicOnly } = rsa.jwk;
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pkcs1Pem = privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
    recordSecret(pkcs1Pem);
    const problems = problemsOf([
      { secret: JSON.stringify(publicOnly), state: 'active' },
      { secret: pkcs1Pem, state: 'next' },
      { secret: JSON.stringify({ ...ec.jwk, alg: 'ES384' }), state: 'next' },
      { secret: 'hunter2', state: 'retired' },
      { secret: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', state: 'retired' },
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/^signingKeys\[0\]: is a public JWK; the private key \(with "d"\) is needed/),
      expect.stringMatching(/^signingKeys\[1\]: is a "RSA PRIVATE KEY" PEM; convert it to PKCS#8 with: openssl pkcs8/),
      'signingKeys[2]: is a JWK with "alg": "ES384", but the key can only sign ES256',
      'signingKeys[3]: is neither a PEM private key nor JSON (a private JWK)',
      'signingKeys[4]: is a "PUBLIC KEY" PEM; a PKCS#8 private key ("BEGIN PRIVATE KEY") is needed',
    ]);
  });

  it('never puts key material in an error message', () => {
    const broken = rsa.pem.replace(/[A-Za-z]{20}/, 'x'.repeat(20));
    const [problem] = problemsOf([{ secret: broken, state: 'active' }]);
    expect(problem).toMatch(/^signingKeys\[0\]: cannot be read as a PKCS#8 private key \(/);
    expect(problem).not.toContain(rsa.pem.split('\n')[1]!.slice(0, 16));
  });
});

describe('the key set', () => {
  it('has exactly one active key', () => {
    const set = createKeySet([
      { secret: ec.pem, state: 'next', kid: 'new' },
      { secret: rsa.pem, state: 'active', kid: 'current' },
      { secret: ec2.pem, state: 'retired', kid: 'old' },
    ]);
    expect(set.active.kid).toBe('current');
    expect(set.keys.map((k) => [k.kid, k.state])).toEqual([
      ['new', 'next'],
      ['current', 'active'],
      ['old', 'retired'],
    ]);
    expect(Object.isFrozen(set) && Object.isFrozen(set.keys)).toBe(true);
  });

  it('refuses two active keys, naming both', () => {
    expect(
      problemsOf([
        { secret: ec.pem, state: 'active', kid: 'a' },
        { secret: rsa.pem, state: 'next', kid: 'b' },
        { secret: ec2.pem, state: 'active', kid: 'c' },
      ]),
    ).toEqual([
      'signingKeys[0], signingKeys[2] are all active; exactly one key signs: keep one active, ' +
        'make the newer next or the older retired',
    ]);
  });

  it.each([[[]], [['next', 'retired']]] as [KeyState[]][])('refuses a set with no active key (%j)', (states) => {
    const inputs = states.map((state, i) => ({ secret: i === 0 ? ec.pem : rsa.pem, state }));
    expect(problemsOf(inputs)).toEqual([
      "signingKeys: no key is active; set exactly one key's state to active (the one that signs)",
    ]);
  });

  it('refuses a kid used twice and an unknown state', () => {
    expect(
      problemsOf([
        { secret: ec.pem, state: 'active', kid: 'same' },
        { secret: rsa.pem, state: 'next', kid: 'same' },
        { secret: ec2.pem, state: 'current' as KeyState },
      ]),
    ).toEqual([
      'signingKeys[2]: state must be one of next, active, retired',
      'signingKeys[1]: kid "same" is already used by signingKeys[0]; give each key its own kid',
    ]);
  });

  it('names the list as the caller asks', () => {
    expect(() => createKeySet([{ secret: 'nope', state: 'active' }], 'orgs.acme.jwt.keys')).toThrow(
      /orgs\.acme\.jwt\.keys\[0\]: is neither/,
    );
  });
});

describe('publicJwks', () => {
  function expectPublicOnly(jwks: { keys: object[] }): void {
    const text = JSON.stringify(jwks);
    recordOutput(text);
    for (const key of jwks.keys) {
      for (const field of Object.keys(key)) expect(publicJwkFields as readonly string[]).toContain(field);
      for (const m of privateMembers) expect(key).not.toHaveProperty(m);
    }
    for (const m of [rsa, ec, ec2]) {
      for (const member of privateMembers) {
        const value = m.jwk[member];
        if (typeof value === 'string') expect(text).not.toContain(value);
      }
    }
  }

  it('holds the next, active and retired keys, public members only', () => {
    const set = createKeySet([
      { secret: ec.pem, state: 'next', kid: 'new' },
      { secret: JSON.stringify(rsa.jwk), state: 'active', kid: 'current' },
      { secret: JSON.stringify(ec2.jwk), state: 'retired', kid: 'old' },
    ]);
    const jwks = publicJwks(set);
    expect(jwks.keys.map((k) => k.kid)).toEqual(['new', 'current', 'old']);
    expect(jwks.keys[0]).toEqual({
      kty: 'EC',
      crv: 'P-256',
      x: ec.jwk.x,
      y: ec.jwk.y,
      kid: 'new',
      alg: 'ES256',
      use: 'sig',
    });
    expect(jwks.keys[1]).toEqual({ kty: 'RSA', n: rsa.jwk.n, e: rsa.jwk.e, kid: 'current', alg: 'RS256', use: 'sig' });
    expectPublicOnly(jwks);
  });

  it('drops extra and private-looking members a JWK input carries', () => {
    const padded = {
      ...ec.jwk,
      k: 'c2VjcmV0LWxvb2tpbmctaw',
      p: 'c2VjcmV0LWxvb2tpbmctcA',
      oth: [{ r: 'x', d: 'y', t: 'z' }],
      x5c: ['MIIB'],
      key_ops: ['sign'],
      ext: true,
      note: 'internal',
    };
    recordSecret(padded.k);
    recordSecret(padded.p);
    const set = createKeySet([
      { secret: JSON.stringify(padded), state: 'active', kid: 'padded' },
      { secret: JSON.stringify({ ...rsa.jwk, use: 'sig', alg: 'RS256', extra: 'x' }), state: 'retired', kid: 'r' },
    ]);
    const jwks = publicJwks(set);
    expect(Object.keys(jwks.keys[0]!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(Object.keys(jwks.keys[1]!).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expectPublicOnly(jwks);
    expect(JSON.stringify(jwks)).not.toContain(padded.k);
  });
});

describe('generateSigningKey', () => {
  it.each(['RS256', 'ES256'] as const)('makes a %s pair that the key set reads back', async (alg) => {
    const generated = await generateSigningKey(alg);
    recordSecret(generated.privatePem);
    expect(generated.privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(generated.kid).toBe(await calculateJwkThumbprint(generated.publicJwk));
    expect(generated.publicJwk).toMatchObject({ alg, use: 'sig', kid: generated.kid });
    for (const field of Object.keys(generated.publicJwk)) expect(publicJwkFields as readonly string[]).toContain(field);
    const set = createKeySet([{ secret: generated.privatePem, state: 'active' }]);
    expect(set.active.kid).toBe(generated.kid);
    expect(publicJwks(set).keys).toEqual([generated.publicJwk]);
  });

  it('refuses another algorithm', async () => {
    await expect(generateSigningKey('HS256' as never)).rejects.toThrow(RangeError);
  });
});
