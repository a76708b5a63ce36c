// snapgate's version, read from its package.json at run time (the same file from dist/src/ and from src/ via tsx).
import { readFileSync } from 'node:fs';

/**
 * The `version` of the package.json named snapgate nearest above this module: `../package.json` from src/,
 * `../../package.json` from dist/src/. Returns "unknown" when none can be read (a copy without its package.json);
 * it never throws, so `--version` and build-info metrics cannot stop anything.
 */
export function snapgateVersion(): string {
  let dir = new URL('.', import.meta.url);
  for (let depth = 0; depth < 4; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'snapgate' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not here (or unreadable): look one directory up.
    }
    dir = new URL('..', dir);
  }
  return 'unknown';
}
