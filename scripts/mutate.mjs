#!/usr/bin/env node
// pnpm mutate <pkg> [--matrix | --matrix-command] [-- stryker options]
// pnpm mutate --filter <pkg> [--matrix] [--mutate <globs>] [...]
//
// Runs StrykerJS on one package's sources (packages/<pkg>/src, apps/cli/src for `cli`),
// incrementally: the last run's results sit in reports/mutation/<pkg>.incremental.json, so a
// re-run tests only the mutants whose code or tests changed. `--matrix` judges the mutants by
// the built-in scenario matrix alone instead of the unit tests: `ccmem matrix --no-kvm` as a
// vitest suite of one test per cell (apps/cli/mutation/matrix.judge.ts), so StrykerJS runs only
// the cells that reach a mutant. `--matrix-command` runs the command itself for every mutant
// through Stryker's command runner (the same verdicts, seconds per mutant). `--matrix-filter
// snp` keeps only the matrix rows that contain "snp", as `ccmem matrix --filter` does. Any
// other option goes to `stryker run` as is (e.g. `--mutate` to narrow the files, `--force` to
// ignore the incremental file). See docs/testing.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import base from '../stryker.config.mjs';

const argv = process.argv.slice(2).filter((a) => a !== '--');
let pkg;
/** false, 'suite' (--matrix) or 'command' (--matrix-command) */
let matrix = false;
let matrixFilter;
const pass = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--filter') pkg = argv[++i];
  else if (a.startsWith('--filter=')) pkg = a.slice('--filter='.length);
  else if (a === '--matrix') matrix = 'suite';
  else if (a === '--matrix-command') matrix = 'command';
  else if (a === '--matrix-filter') matrixFilter = argv[++i];
  else if (pkg === undefined && !a.startsWith('-')) pkg = a;
  else pass.push(a);
}
if (pkg === undefined) {
  console.error('usage: pnpm mutate <core|gmem|snp|tdx|kvm|scenario|cli> [--matrix | --matrix-command] [--matrix-filter <text>] [stryker options]');
  process.exit(2);
}
pkg = pkg.replace(/^@ccmem\//, '');
const dir = pkg === 'cli' ? 'apps/cli' : `packages/${pkg}`;
if (!existsSync(join(dir, 'package.json'))) {
  console.error(`mutate: no package "${pkg}" (${dir})`);
  process.exit(2);
}

const name = matrix === 'command' ? `${pkg}-matrix-command` : matrix ? `${pkg}-matrix` : pkg;
if (matrix && matrixFilter) process.env.CCMEM_MATRIX_FILTER = matrixFilter;
mkdirSync('reports/mutation', { recursive: true });
const config = {
  ...base,
  mutate: [`${dir}/src/**/*.ts`, `!${dir}/src/**/*.test.ts`, `!${dir}/src/**/testing/**`, `!${dir}/src/index.ts`],
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  ...(matrix === 'suite' && {
    vitest: { configFile: 'vitest.matrix-judge.config.ts', related: false },
    // a cell runs in milliseconds: a mutant still running 20 s past its cells' own time loops
    timeoutMS: 20_000,
  }),
  ...(matrix === 'command' && {
    testRunner: 'command',
    plugins: [],
    coverageAnalysis: 'off',
    commandRunner: {
      command: `node scripts/stryker-sandbox-links.mjs && node --conditions=@ccmem/source --import tsx apps/cli/src/bin.ts matrix --no-kvm${matrixFilter ? ` --filter ${matrixFilter}` : ''}`,
    },
  }),
};
if (matrix === 'command') delete config.vitest;
// a property test that takes seconds takes minutes in StrykerJS's instrumented dry run
process.env.CCMEM_TEST_TIMEOUT_MS ??= '900000';
const file = `reports/mutation/.${name}.stryker.json`;
writeFileSync(file, JSON.stringify(config, null, 2));
const r = spawnSync('npx', ['stryker', 'run', file, ...pass], { stdio: 'inherit' });
process.exit(r.status ?? 1);
