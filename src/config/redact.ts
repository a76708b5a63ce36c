// The effective config made printable: secret references stay as they are, anything that could be a secret value
// becomes <redacted>.
import { parseSecretRef } from './secret-ref.js';

export const REDACTED = '<redacted>';

/** Fields that hold a secret (or its reference). A value in one that is not a reference is never printed. */
const SECRET_FIELDS = new Set(['password', 'nextPassword', 'secret', 'key', 'token', 'username']);

// Values shorter than this are not scrubbed out of other strings: a 1-character "secret" would shred the output,
// and no real secret is that short (the schema and the secret checks refuse empty ones).
const MIN_SCRUBBED_LENGTH = 4;

/** `text` with every occurrence of each of `secrets` replaced by <redacted>. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first, so a secret that contains another is replaced whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (secret.length >= MIN_SCRUBBED_LENGTH) out = out.split(secret).join(REDACTED);
  }
  return out;
}

/** A URL's user and password replaced by <redacted> (redis://:pw@host → redis://<redacted>@host). */
function withoutUserinfo(text: string): string {
  // The WHATWG parser would re-encode the rest; only the userinfo between "//" and the last "@" of the authority goes.
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`);
}

function redactString(key: string | undefined, value: string, secrets: readonly string[]): string {
  if (parseSecretRef(value) !== undefined) return scrub(value, secrets);
  if (key !== undefined && SECRET_FIELDS.has(key)) return REDACTED;
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value)) return REDACTED;
  return scrub(withoutUserinfo(value), secrets);
}

/**
 * A copy of `value` fit to print: references (`env:NAME`, `file:/path`) kept, any other value in a secret field,
 * any URL's userinfo, any private key PEM and every occurrence of `secrets` (resolved values) replaced by
 * <redacted>. Map keys are scrubbed too.
 */
export function redactConfig(value: unknown, secrets: readonly string[] = [], key?: string): unknown {
  if (typeof value === 'string') return redactString(key, value, secrets);
  if (Array.isArray(value)) return value.map((v) => redactConfig(v, secrets, key));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      out[scrub(k, secrets)] = redactConfig(v, secrets, k);
    }
    return out;
  }
  return value;
}
