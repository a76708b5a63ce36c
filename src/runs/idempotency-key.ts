// The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header): its syntax, and the hashes that name a
// key's record and the request it was first used for. Pure functions.
import { createHash } from 'node:crypto';

/** Longest key accepted, in characters after unescaping. The draft sets none; Stripe allows 255, so do we. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** Why a header value is not a usable key. Stable strings: the router maps each to a 400 detail. */
export type IdempotencyKeyProblem =
  | 'missing'
  | 'empty'
  | 'not_a_string'
  | 'invalid_character'
  | 'invalid_escape'
  | 'unterminated'
  | 'parameters_not_supported'
  | 'trailing_characters'
  | 'too_long';

/** A human detail per problem, saying what to send instead. */
export const idempotencyKeyProblems: Readonly<Record<IdempotencyKeyProblem, string>> = {
  missing: 'this org requires an Idempotency-Key header on this call',
  empty: 'Idempotency-Key must not be empty',
  not_a_string:
    'Idempotency-Key must be a quoted structured-field string, e.g. Idempotency-Key: "8e03978e-…" (a bare key may ' +
    'hold only letters, digits and ._~:/+=-)',
  invalid_character: 'Idempotency-Key may contain printable ASCII only (0x20-0x7E)',
  invalid_escape: 'inside Idempotency-Key, a backslash may only escape " or \\',
  unterminated: 'Idempotency-Key lacks its closing quote',
  parameters_not_supported: 'Idempotency-Key takes no parameters',
  trailing_characters: 'Idempotency-Key must be a single string (send the header once)',
  too_long: `Idempotency-Key may be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
};

/** A key sent without quotes: letters and digits first, then letters, digits and `._~:/+=-` (UUIDs, base64, ULIDs). */
const BARE_KEY = /^[A-Za-z0-9][A-Za-z0-9._~:/+=-]*$/;

export type ParsedIdempotencyKey = { ok: true; key: string } | { ok: false; problem: IdempotencyKeyProblem };

/**
 * Parses the header's value as the draft requires: an Item Structured Header whose value is an sf-string
 * (RFC 8941 §3.3.3: `"`-quoted printable ASCII, `\` escaping only `"` and `\`). Returns the unescaped key.
 * Decisions: surrounding spaces and tabs are ignored (RFC 8941 §4.2 discards spaces; HTTP trims OWS); parameters
 * (`"k";a=1`) are refused rather than ignored, since the draft defines none; a bare key (`8e03978e-40d5`, as Stripe's
 * clients send) is accepted when it holds only letters, digits and `._~:/+=-`, and names the same record as its quoted
 * form; a repeated header (`"a", "b"`) and the empty string are refused.
 * `undefined` (no header) gives `missing`, so an org that requires a key needs no other check.
 */
export function parseIdempotencyKey(header: string | undefined): ParsedIdempotencyKey {
  if (header === undefined) return { ok: false, problem: 'missing' };
  const value = header.replace(/^[ \t]+|[ \t]+$/g, '');
  if (value === '') return { ok: false, problem: 'missing' };
  if (value[0] !== '"') {
    // Many clients (Stripe's among them) send the key bare: a plain token of safe characters is taken as is.
    if (!BARE_KEY.test(value)) return { ok: false, problem: 'not_a_string' };
    return value.length > MAX_IDEMPOTENCY_KEY_LENGTH ? { ok: false, problem: 'too_long' } : { ok: true, key: value };
  }
  let key = '';
  for (let i = 1; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x5c) {
      const next = value[++i];
      if (next !== '"' && next !== '\\') return { ok: false, problem: 'invalid_escape' };
      key += next;
    } else if (c === 0x22) {
      const rest = value.slice(i + 1);
      if (rest.startsWith(';')) return { ok: false, problem: 'parameters_not_supported' };
      if (rest !== '') return { ok: false, problem: 'trailing_characters' };
      if (key === '') return { ok: false, problem: 'empty' };
      if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) return { ok: false, problem: 'too_long' };
      return { ok: true, key };
    } else if (c < 0x20 || c > 0x7e) {
      return { ok: false, problem: 'invalid_character' };
    } else {
      key += value[i];
    }
  }
  return { ok: false, problem: 'unterminated' };
}

const sha256 = (parts: readonly string[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

/**
 * The record's name for one caller's key: a SHA-256 over issuer, subject and key (JSON-encoded, so no two triples
 * collide by concatenation). Neither claim text nor key text ever reaches Redis, and another caller's same key
 * names another record.
 */
export function idempotencyScope(caller: { issuer: string; subject: string }, key: string): string {
  return sha256(['snapgate/idempotency-scope/v1', caller.issuer, caller.subject, key]);
}

/** What the key was first used for (action + target), hashed: the same key on another request is a mismatch (422). */
export function requestFingerprint(request: { action: string; org: string; ruuid: string }): string {
  return sha256(['snapgate/idempotency-request/v1', request.action, request.org, request.ruuid]);
}
