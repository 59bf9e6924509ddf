import { defineConfig } from 'vitest/config';

// The tests Stryker runs against mutants: everything that exercises the core in this process.
// Left out: tests that start other processes (they would run the sandbox's code without the active
// mutant, slowly), the CDK and CLI suites (no core code), and the 2-minute crash-recovery run.
// MUTATION_TESTS=glob[,glob] runs only those tests against the mutants: a quick run whose score is a
// lower bound (a mutant those tests kill, the whole suite kills too; a survivor may be killed by a
// test left out). The model-loading worker tests take minutes per survivor on 2 cores.
const ALL = ['test/shared/**/*.test.ts', 'test/worker/**/*.test.ts', 'test/webhooks/**/*.test.ts', 'test/api/**/*.test.ts', 'test/functions/**/*.test.ts'];

export default defineConfig({
  test: {
    include: process.env.MUTATION_TESTS ? process.env.MUTATION_TESTS.split(',') : ALL,
    exclude: ['test/worker/crash-recovery.test.ts', 'node_modules/**'],
    setupFiles: ['test/mutation-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
