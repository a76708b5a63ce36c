// Config validation in tests: the problems parseConfig reports for a document, or none.
import { ConfigError, parseConfig } from '../../src/config/load.js';

/** Every problem `doc` has (path: message), in the order parseConfig reports them; [] when it is valid. */
export function problemsOf(doc: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(doc, 'test', env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}
