// Secret references (`env:NAME`, `file:/path`): the only way a secret enters snapgate's config.
import { readFile } from 'node:fs/promises';

export type SecretRef = { kind: 'env'; name: string; text: string } | { kind: 'file'; path: string; text: string };

export const secretRefPattern = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/;

/** Parses `env:NAME` or `file:/absolute/path`; anything else is an inline value and is refused. */
export function parseSecretRef(text: string): SecretRef | undefined {
  if (!secretRefPattern.test(text)) return undefined;
  if (text.startsWith('env:')) return { kind: 'env', name: text.slice(4), text };
  return { kind: 'file', path: text.slice(5), text };
}

/** Thrown when a reference cannot be resolved; the message names the reference, never a value. */
export class SecretResolutionError extends Error {
  constructor(
    readonly ref: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${ref} ${reason}`, options);
    this.name = 'SecretResolutionError';
  }
}

/**
 * Resolves a reference to its value. Files lose one trailing newline (as written by `echo` and
 * most secret mounts). An empty value is an error: an empty password is always a mistake.
 */
export async function resolveSecret(
  ref: SecretRef,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string> {
  let value: string | undefined;
  if (ref.kind === 'env') {
    value = env[ref.name];
    if (value === undefined) throw new SecretResolutionError(ref.text, 'is not set in the environment');
  } else {
    try {
      value = (await readFile(ref.path, 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'read error';
      throw new SecretResolutionError(ref.text, `cannot be read (${code})`, { cause: err });
    }
  }
  if (value.length === 0) throw new SecretResolutionError(ref.text, 'is empty');
  return value;
}
