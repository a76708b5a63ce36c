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

/** What `forEachLine` hands on instead of a line longer than `MAX_LINE`: no JSON line can begin with a NUL. */
export const LINE_TOO_LONG = '\u0000line longer than 16 MiB';

/** The longest line read (in UTF-16 units, as decoded): a longer one is not kept in memory, only skipped. */
export const MAX_LINE = 16 << 20;

/**
 * Hands `onLine` every non-empty line of `files`, in order, with where it is; a line longer than `MAX_LINE` as
 * `LINE_TOO_LONG`. `stopped` is asked between chunks; returns false when it cut the reading short. A read error
 * (unreadable file) rejects.
 */
export async function forEachLine(
  files: readonly string[],
  onLine: (line: string, where: string) => void,
  stopped: () => boolean = () => false,
  maxLine = MAX_LINE,
): Promise<boolean> {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (const file of files) {
    const name = basename(file);
    const fh = await open(file, 'r');
    try {
      const decoder = new StringDecoder('utf8');
      // The line read so far, in pieces (only each new chunk is searched for a newline, so a long line costs linear
      // time), and its length; `long` once it passed `maxLine`: then its text is dropped up to its newline.
      let pieces: string[] = [];
      let length = 0;
      let long = false;
      let n = 0;
      const end = (tail: string) => {
        n += 1;
        if (long || length + tail.length > maxLine) {
          onLine(LINE_TOO_LONG, `${name}:${n}`);
        } else if (length + tail.length > 0) {
          onLine(length === 0 ? tail : pieces.join('') + tail, `${name}:${n}`);
        }
        pieces = [];
        length = 0;
        long = false;
      };
      const more = (text: string) => {
        if (long || text === '') return;
        if (length + text.length > maxLine) {
          long = true;
          pieces = [];
          length = 0;
          return;
        }
        pieces.push(text);
        length += text.length;
      };
      for (;;) {
        if (stopped()) return false;
        const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) break;
        const text = decoder.write(buf.subarray(0, bytesRead));
        let start = 0;
        for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
          end(text.slice(start, nl));
          start = nl + 1;
        }
        more(text.slice(start));
      }
      more(decoder.end());
      // A last line without its newline (a writer stopped mid-line, or an editor dropped it) is still read.
      if (long || length > 0) end('');
    } finally {
      await fh.close();
    }
  }
  return true;
}
