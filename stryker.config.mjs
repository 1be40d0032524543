// StrykerJS: mutation testing, one package at a time (`pnpm mutate <pkg>`, docs/testing.md).
// scripts/mutate.mjs fills in `mutate` and the incremental file for the package; this file holds
// what every run shares.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'vitest.config.ts', related: true },
  coverageAnalysis: 'perTest',
  incremental: true,
  reporters: ['clear-text', 'progress', 'json'],
  // two cores, shared: one test process beside Stryker itself
  concurrency: 1,
  timeoutMS: 60_000,
  // the instrumented first run of a whole package's tests (core: minutes) records per-test coverage
  dryRunTimeoutMinutes: 60,
  ignorePatterns: ['.stryker-tmp', 'reports', 'bench', '**/dist', '.turbo'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
  disableTypeChecks: '{packages,apps}/**/*.ts',
};
