// Signed checkpoints: a signature made with the writer's Ed25519 key verifies with its public key only, and any
// change to the signed text, an untrusted key or a key of another type is refused.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkSignature,
  checkpointSigner,
  CheckpointKeyError,
  isCheckpointLine,
  keyIdOf,
  parsePublicKeys,
  signCheckpoint,
  trustedKeys,
} from '../../src/audit/checkpoint.js';

const pair = () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
};

const fields = {
  time: '2026-12-02T10:00:00.000Z',
  writer: 'gw-1/0a1b2c3d',
  seq: 41,
  head: 'a'.repeat(64),
  prevCheckpoint: 'genesis',
  reason: 'interval' as const,
  interval: 10_000,
  store: 'file:audit.jsonl',
};

describe('checkpoint signatures', () => {
  const a = pair();
  const b = pair();
  const signer = checkpointSigner(a.privatePem);
  const trusted = trustedKeys(parsePublicKeys(a.publicPem));

  it('verifies with the public key alone and names its key', () => {
    const body = signCheckpoint(fields, signer);
    expect(isCheckpointLine(body)).toBe(true);
    const parsed = JSON.parse(body) as { key: string; seq: number };
    expect(parsed.key).toBe(keyIdOf(parsePublicKeys(a.publicPem)[0]!));
    expect(parsed.seq).toBe(41);
    expect(checkSignature(body, parsed.key, trusted)).toEqual({ ok: true });
  });

  it('refuses an edited checkpoint, an untrusted key and a malformed body', () => {
    const body = signCheckpoint(fields, signer);
    const edited = body.replace('"seq":41', '"seq":51');
    expect(checkSignature(edited, signer.kid, trusted)).toEqual({ ok: false, why: 'bad_signature' });
    const other = checkpointSigner(b.privatePem);
    const forged = signCheckpoint(fields, other);
    expect(checkSignature(forged, other.kid, trusted)).toEqual({ ok: false, why: 'unknown_key' });
    expect(checkSignature('{"v":3}', signer.kid, trusted)).toEqual({ ok: false, why: 'malformed' });
  });

  it('trusts several keys at once (rotation)', () => {
    const both = trustedKeys([...parsePublicKeys(a.publicPem), ...parsePublicKeys(b.publicPem)]);
    for (const pem of [a.privatePem, b.privatePem]) {
      const s = checkpointSigner(pem);
      expect(checkSignature(signCheckpoint(fields, s), s.kid, both)).toEqual({ ok: true });
    }
  });

  it('takes only Ed25519 keys', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    expect(() => checkpointSigner(ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())).toThrow(
      CheckpointKeyError,
    );
    expect(() => parsePublicKeys(ec.publicKey.export({ type: 'spki', format: 'pem' }).toString())).toThrow(
      CheckpointKeyError,
    );
    expect(() => checkpointSigner('not a key')).toThrow(CheckpointKeyError);
  });
});
