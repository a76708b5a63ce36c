// Runs before the whole test run: starts a clean leak scan (test/check-leaks.ts reads it after the run).
import { rmSync } from 'node:fs';
import { LEAK_SCAN_DIR } from './helpers/leak-scan.js';

export function setup(): void {
  rmSync(LEAK_SCAN_DIR, { recursive: true, force: true });
}
