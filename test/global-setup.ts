// Runs before the whole test run: starts a clean leak scan (test/check-leaks.ts reads it after the
// run) and builds dist/ once, for the tests that run the built gateway as deployed (process, bench).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/gateway.js';
import { LEAK_SCAN_DIR } from './helpers/leak-scan.js';

export function setup(): void {
  rmSync(LEAK_SCAN_DIR, { recursive: true, force: true });
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    { cwd: ROOT, stdio: 'pipe' },
  );
}
