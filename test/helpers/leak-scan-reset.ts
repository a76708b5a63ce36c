// Global setup of the unit project: starts a clean leak scan (test/check-leaks.ts reads it after the run).
import { resetLeakScan } from './leak-scan.js';

export function setup(): void {
  resetLeakScan();
}
