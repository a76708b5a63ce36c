// Two projects: `unit` (test/unit: in-process only, no dist/ build, no redis-server, no child processes; seconds)
// and `integration` (test/e2e: real processes, real redis-server, the built dist/). `npm test` runs both;
// `npm run test:unit` runs `unit` alone. One JSON report for the whole run, read by .ci/run.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', ['json', { outputFile: 'reports/vitest.json' }]],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Only resets the leak scan: nothing is built, nothing is started.
          globalSetup: ['test/helpers/leak-scan-reset.ts'],
          testTimeout: 10_000,
          hookTimeout: 10_000,
          // In-process tests: worker threads start faster than forks. src/ keeps no state at module scope, so
          // the files can share one module graph per worker instead of importing it afresh each.
          pool: 'threads',
          isolate: false,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/e2e/**/*.test.ts'],
          // Resets the leak scan and builds dist/ once, for the tests that run the built gateway as deployed.
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
          pool: 'forks',
          // After-hooks run in reverse order of registration (vitest's default, stated because test/helpers/world.ts
          // relies on it): a suite's own afterEach/afterAll run before the helpers' that stop its world.
          sequence: { hooks: 'stack' },
        },
      },
    ],
  },
});
