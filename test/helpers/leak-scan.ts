// Collects everything the test run makes snapgate say (logs, audit events, error bodies) and every secret it was given,
// so the global teardown can check that no secret ever appears in any output.
import { appendFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const LEAK_SCAN_DIR = resolve(import.meta.dirname, '../../reports/leak-scan');

/** Forgets what an earlier run recorded; a global setup calls it before any test runs. */
export function resetLeakScan(): void {
  rmSync(LEAK_SCAN_DIR, { recursive: true, force: true });
}

function file(kind: 'output' | 'secrets'): string {
  mkdirSync(LEAK_SCAN_DIR, { recursive: true });
  return join(LEAK_SCAN_DIR, `${kind}-${process.pid}.txt`);
}

/** Something snapgate produced: a log line, an audit event, a response body. */
export function recordOutput(text: string): void {
  appendFileSync(file('output'), text.endsWith('\n') ? text : `${text}\n`);
}

/** A value that must never appear in any output: a password, a Basic header value, a token. */
export function recordSecret(value: string): void {
  appendFileSync(file('secrets'), `${JSON.stringify(value)}\n`);
}
