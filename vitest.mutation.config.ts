import { defineConfig } from 'vitest/config';

// The tests Stryker runs against mutants: everything that exercises the core in this process.
// Left out: tests that start other processes (they would run the sandbox's code without the active
// mutant, slowly), the CDK and CLI suites (no core code), and the 2-minute crash-recovery run.
export default defineConfig({
  test: {
    include: ['test/shared/**/*.test.ts', 'test/worker/**/*.test.ts', 'test/webhooks/**/*.test.ts', 'test/api/**/*.test.ts', 'test/functions/**/*.test.ts'],
    exclude: ['test/worker/crash-recovery.test.ts', 'node_modules/**'],
    setupFiles: ['test/mutation-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
