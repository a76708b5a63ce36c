// Watches the config file for changes the way it is replaced in practice: edited in place, renamed over, or swapped
// through a symlink (a Kubernetes ConfigMap mount swaps its `..data` link). Only a change of content counts.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from '../log.js';

/** After a change, how long things must be quiet before the file is read (editors write in several steps). */
const SETTLE_MS = 200;

const digest = (bytes: Buffer | undefined): string | undefined =>
  bytes === undefined ? undefined : createHash('sha256').update(bytes).digest('hex');

const readBytes = (path: string): Promise<Buffer | undefined> => readFile(path).catch(() => undefined);

/**
 * Calls `onChange` once the content of `path` differs from what it was when last seen (at start, then at each call).
 * Watches the directory, not the file: a rename or symlink swap replaces the file a watch on it would follow.
 * A file that cannot be read (mid-swap, deleted) is not a change; its next readable content is compared.
 */
export async function watchConfigFile(path: string, onChange: () => void, log: Logger): Promise<{ close(): void }> {
  let seen = digest(await readBytes(path));
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const check = async (): Promise<void> => {
    const now = digest(await readBytes(path));
    if (closed || now === undefined || now === seen) return;
    seen = now;
    onChange();
  };
  let watcher: FSWatcher | undefined;
  try {
    const name = basename(path);
    watcher = watch(dirname(path), { persistent: false }, (_event, changed) => {
      // Only the file itself, or a ConfigMap's `..data` swap: a busy neighbour (an audit file, a spool) must not keep
      // postponing the check. Without a name (some platforms), any change counts.
      if (changed !== null && changed !== name && !changed.startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(() => void check(), SETTLE_MS);
    });
    watcher.on('error', (err) =>
      log.warn('config file watch failed; reload with SIGHUP', { config: basename(path), error: err.message }),
    );
  } catch (err) {
    log.warn('cannot watch the config directory; reload with SIGHUP', {
      config: path,
      error: err instanceof Error ? err.message : String(err),
    });
  }
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
