// Global setup of the integration project: starts a clean leak scan (test/check-leaks.ts reads it after the
// run) and builds dist/ once, for the tests that run the built gateway as deployed (process, bench).
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { resetLeakScan } from './helpers/leak-scan.js';

// Not imported from helpers/gateway.ts: importing it records the test secrets, which this setup would then erase.
const ROOT = resolve(import.meta.dirname, '..');

export function setup(): void {
  resetLeakScan();
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    { cwd: ROOT, stdio: 'pipe' },
  );
}
