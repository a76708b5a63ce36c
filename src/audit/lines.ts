// Reads trail files line by line, fast: large chunks split on newlines (readline costs more than the hashing a
// verifier does per line), each line named `<base name>:<line number>`.
import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

const CHUNK = 4 << 20;

/** PATH's rotated siblings (PATH.<time>, oldest first: the stamp sorts by time), then PATH when it exists. */
export async function trailFiles(path: string): Promise<string[]> {
  const base = basename(path);
  const rotated = (await readdir(dirname(path)).catch(() => [] as string[]))
    .filter((n) => n.startsWith(`${base}.`))
    .sort()
    .map((n) => join(dirname(path), n));
  const current = await stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
  return current ? [...rotated, path] : rotated;
}

/**
 * Hands `onLine` every non-empty line of `files`, in order, with where it is. `stopped` is asked between chunks;
 * returns false when it cut the reading short. A read error (unreadable file) rejects.
 */
export async function forEachLine(
  files: readonly string[],
  onLine: (line: string, where: string) => void,
  stopped: () => boolean = () => false,
): Promise<boolean> {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (const file of files) {
    const name = basename(file);
    const fh = await open(file, 'r');
    try {
      const decoder = new StringDecoder('utf8');
      let partial = '';
      let n = 0;
      for (;;) {
        if (stopped()) return false;
        const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) break;
        const text = partial + decoder.write(buf.subarray(0, bytesRead));
        let start = 0;
        for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
          n += 1;
          if (nl > start) onLine(text.slice(start, nl), `${name}:${n}`);
          start = nl + 1;
        }
        partial = text.slice(start);
      }
      const rest = partial + decoder.end();
      // A last line without its newline (a writer stopped mid-line, or an editor dropped it) is still read.
      if (rest !== '') onLine(rest, `${name}:${n + 1}`);
    } finally {
      await fh.close();
    }
  }
  return true;
}
