// What the dev commands (test/dev/*.ts) share: flags, stderr for everything said, and a clean exit on SIGTERM/SIGINT.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit code for a command line that cannot be used (sysexits EX_USAGE). */
const EX_USAGE = 64;

/** Everything the dev commands say goes to stderr: stdout is kept for what a shell captures (dev:token's token). */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Parses argv (after the script) against `options`, or prints the problem and `usage` and exits 64; --help exits 0. */
export function flags<const T extends NonNullable<ParseArgsConfig['options']>>(
  options: T,
  usage: string,
): ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false }>>['values'] {
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { ...options, help: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    });
    if ((values as { help?: boolean }).help) {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    return values as never;
  } catch (err) {
    fail(`${err instanceof Error ? err.message : String(err)}\n${usage}`, EX_USAGE);
  }
}

/** A whole number in [min, max] from a flag, or the usage error naming it. */
export function intFlag(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (/^\d+$/.test(value) && n >= min && n <= max) return n;
  fail(`--${name} must be a whole number from ${min} to ${max}`, EX_USAGE);
}

/** Says `message` on stderr and exits with `code`. */
export function fail(message: string, code = 1): never {
  say(message);
  process.exit(code);
}

/** Runs `close` on the first SIGTERM or SIGINT, then exits 0 (1 if closing failed). */
export function closeOnSignal(name: string, close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    say(`${name}: ${signal}, stopping`);
    close().then(
      () => process.exit(0),
      (err: unknown) => fail(`${name}: could not close cleanly: ${String(err)}`),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
