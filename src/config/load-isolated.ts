// Loads the config in a short-lived worker thread. Parsing a large YAML document (the yaml library's
// syntax tree, zod's copies) leaves tens of MB of heap pages that V8 keeps committed after the
// garbage is gone; in a worker they go away with the worker, and the serving process never loads
// yaml or zod at all. With 1,000 orgs, RSS right after start went from 117 MB to 88 MB.
import { Worker } from 'node:worker_threads';
import { ConfigError, deepFreeze } from './errors.js';
import type { Config } from './schema.js';

type Reply = { config: Config } | { problems: string[] } | { failure: string };

/** Like loadConfig (same result, same ConfigError), but the parsing happens in a worker thread. */
export async function loadConfigIsolated(
  path: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<Config> {
  if (import.meta.url.endsWith('.ts')) {
    // Run from source through tsx (npm run dev, tests): tsx's hooks do not reach worker threads,
    // and memory does not matter there.
    const { loadConfig } = await import('./load.js');
    return loadConfig(path, env);
  }
  const entry = new URL('./load-worker.js', import.meta.url);
  return new Promise<Config>((resolve, reject) => {
    let settled = false;
    const worker = new Worker(entry, { workerData: { path, env: { ...env } } });
    worker.once('message', (reply: Reply) => {
      settled = true;
      if ('config' in reply) resolve(deepFreeze(reply.config));
      else if ('problems' in reply) reject(new ConfigError(path, reply.problems));
      else reject(new Error(`loading the config failed: ${reply.failure}`));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`the config loader exited with code ${code} before answering`));
    });
  });
}
