// Signed checkpoints: Ed25519 over a writer's chain position (seq, head hash), so that a verifier holding only the
// public key can tell an intact trail from one whose events were edited, cut off or forged. Pure, apart from key I/O.
import { createPrivateKey, createPublicKey, hash, sign, verify, type JsonWebKey, type KeyObject } from 'node:crypto';

export type CheckpointReason = 'open' | 'interval' | 'shutdown' | 'retention';

/** A writer another writer saw in the same store, at this seq (see SinkWriter's witness). */
export interface Witness {
  readonly writer: string;
  readonly seq: number;
  /** When that writer last appended, ms since the epoch (Redis: the writer list's score); absent in files. */
  readonly at?: number;
}

/** What a retention marker says was removed, and where each chain it cut now begins. */
export interface RetentionFacts {
  readonly store: 'redis' | 'file';
  readonly reason: string;
  /** Redis: the stream id of the newest removed entry. */
  readonly through?: string;
  /** File: the rotated files removed (base names). */
  readonly files?: readonly string[];
  readonly entries: number;
  /** Per writer, the seq and chain hash of its last removed record. */
  readonly chains: readonly { readonly writer: string; readonly seq: number; readonly hash: string }[];
}

/** A checkpoint as stored (without its chain member). Member order is the signed order. */
export interface Checkpoint {
  readonly v: 3;
  readonly type: 'checkpoint';
  readonly time: string;
  readonly writer: string;
  /** The last chain seq it covers (0 for the opening one). */
  readonly seq: number;
  /** The chain hash of record `seq` ("genesis" for the opening one). */
  readonly head: string;
  /** The chain hash of the writer's previous checkpoint record ("genesis" for the opening one). */
  readonly prevCheckpoint: string;
  readonly reason: CheckpointReason;
  /** How often this writer checkpoints, ms: the verifier's measure of "silent". */
  readonly interval: number;
  /** The trail it belongs to: `file:<base name>`, `redis:<stream>` or `stdout`. */
  readonly store: string;
  readonly key: string;
  readonly witness?: readonly Witness[];
  readonly retention?: RetentionFacts;
  readonly sig: string;
}

/** The key id of an Ed25519 public key: the first 16 hex digits of SHA-256 over its SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return hash('sha256', publicKey.export({ type: 'spki', format: 'der' }), 'hex').slice(0, 16);
}

export class CheckpointKeyError extends Error {}

/** The key a writer signs with: its private half and its id. */
export interface CheckpointSigner {
  readonly kid: string;
  readonly publicKey: KeyObject;
  sign(text: string): string;
}

/** A signer from a PKCS#8 PEM (or JWK JSON) Ed25519 private key, as `snapgate keys generate --alg Ed25519` writes. */
export function checkpointSigner(secret: string): CheckpointSigner {
  let key: KeyObject;
  try {
    key = secret.trimStart().startsWith('{')
      ? createPrivateKey({ key: JSON.parse(secret) as JsonWebKey, format: 'jwk' })
      : createPrivateKey(secret);
  } catch {
    throw new CheckpointKeyError(
      'is not a private key (give a PKCS#8 PEM Ed25519 key: snapgate keys generate --alg Ed25519)',
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new CheckpointKeyError(`holds a key of type ${key.asymmetricKeyType ?? 'secret'}; checkpoints need Ed25519`);
  }
  const publicKey = createPublicKey(key);
  return {
    kid: keyIdOf(publicKey),
    publicKey,
    sign: (text) => sign(null, Buffer.from(text, 'utf8'), key).toString('base64url'),
  };
}

export type CheckpointFields = Omit<Checkpoint, 'v' | 'type' | 'key' | 'sig'>;

/** The stored body of a signed checkpoint (JSON, no chain member): the signed text with `sig` appended. */
export function signCheckpoint(fields: CheckpointFields, signer: CheckpointSigner): string {
  const unsigned = {
    v: 3 as const,
    type: 'checkpoint' as const,
    time: fields.time,
    writer: fields.writer,
    seq: fields.seq,
    head: fields.head,
    prevCheckpoint: fields.prevCheckpoint,
    reason: fields.reason,
    interval: fields.interval,
    store: fields.store,
    key: signer.kid,
    ...(fields.witness !== undefined && fields.witness.length > 0 ? { witness: fields.witness } : {}),
    ...(fields.retention !== undefined ? { retention: fields.retention } : {}),
  };
  const text = JSON.stringify(unsigned);
  return `${text.slice(0, -1)},"sig":"${signer.sign(text)}"}`;
}

/** Trusted public keys by id. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/**
 * Public keys from a file's text: PEM blocks (SPKI public keys; a private key's public half is taken too), a JWK
 * (`{"kty":"OKP","crv":"Ed25519","x":…}`) or a JWKS (`{"keys":[…]}`). Only Ed25519 keys are accepted.
 */
export function parsePublicKeys(text: string): KeyObject[] {
  const keys: KeyObject[] = [];
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const doc = JSON.parse(trimmed) as { keys?: unknown[] } & Record<string, unknown>;
    const jwks = Array.isArray(doc.keys) ? doc.keys : [doc];
    for (const jwk of jwks) {
      const { d: _d, ...pub } = jwk as Record<string, unknown>;
      keys.push(createPublicKey({ key: pub as JsonWebKey, format: 'jwk' }));
    }
  } else {
    const blocks = trimmed.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? [];
    if (blocks.length === 0) throw new CheckpointKeyError('holds no PEM block, JWK or JWKS');
    for (const pem of blocks) keys.push(createPublicKey(pem));
  }
  for (const k of keys) {
    if (k.asymmetricKeyType !== 'ed25519') {
      throw new CheckpointKeyError(`holds a ${k.asymmetricKeyType ?? 'non-asymmetric'} key; checkpoints are Ed25519`);
    }
  }
  return keys;
}

/** The trusted set, by key id. */
export function trustedKeys(keys: Iterable<KeyObject>): TrustedKeys {
  return new Map([...keys].map((k) => [keyIdOf(k), k]));
}

export type SignatureCheck = { ok: true } | { ok: false; why: 'unknown_key' | 'bad_signature' | 'malformed' };

/** Checks a checkpoint body (the stored line without its chain member) against the trusted keys. */
export function checkSignature(body: string, kid: unknown, keys: TrustedKeys): SignatureCheck {
  const at = body.lastIndexOf(',"sig":"');
  if (at < 0 || !body.endsWith('"}')) return { ok: false, why: 'malformed' };
  const key = typeof kid === 'string' ? keys.get(kid) : undefined;
  if (key === undefined) return { ok: false, why: 'unknown_key' };
  const signed = `${body.slice(0, at)}}`;
  const sig = Buffer.from(body.slice(at + 8, -2), 'base64url');
  return verify(null, Buffer.from(signed, 'utf8'), key, sig) ? { ok: true } : { ok: false, why: 'bad_signature' };
}

/** True for a line that is a checkpoint record (cheap: checkpoints begin with these members). */
export const isCheckpointLine = (line: string): boolean => line.startsWith('{"v":3,"type":"checkpoint"');
