// Signed checkpoints: a signature made with the writer's Ed25519 key verifies with its public key only, and any
// change to the signed text, an untrusted key or a key of another type is refused.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { runKeysCli } from '../../src/credentials/cli.js';

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

describe('snapgate keys generate --alg Ed25519', () => {
  it('writes the private key 0600 and its public half to FILE.pub, and prints the config, never the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-keys-'));
    let out = '';
    let err = '';
    const io = { out: (t: string) => (out += t), err: (t: string) => (err += t), env: {}, cwd: dir };
    expect(await runKeysCli(['generate', '--alg', 'Ed25519', '--out', 'checkpoint.pem'], io)).toBe(0);
    const path = join(dir, 'checkpoint.pem');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const signer = checkpointSigner(readFileSync(path, 'utf8'));
    const [pub] = parsePublicKeys(readFileSync(`${path}.pub`, 'utf8'));
    expect(keyIdOf(pub!)).toBe(signer.kid);
    expect(out).toContain(`key: file:${path}`);
    expect(out).toContain(signer.kid);
    expect(out + err).not.toContain('PRIVATE KEY');
    // Never over an existing key.
    expect(await runKeysCli(['generate', '--alg', 'Ed25519', '--out', 'checkpoint.pem'], io)).toBe(1);
    expect(checkpointSigner(readFileSync(path, 'utf8')).kid).toBe(signer.kid);
  });
});
