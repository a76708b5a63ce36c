// Worker-thread entry of loadConfigIsolated: parses and validates the config, posts the result, and exits.
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError, loadConfig } from './load.js';

const { path, env } = workerData as { path: string; env: Record<string, string | undefined> };
try {
  parentPort?.postMessage({ config: await loadConfig(path, env) });
} catch (err) {
  parentPort?.postMessage(
    err instanceof ConfigError
      ? { problems: err.problems }
      : { failure: err instanceof Error ? err.message : String(err) },
  );
}
