#!/usr/bin/env node
// pnpm mutate <pkg> [--matrix] [-- stryker options]
// pnpm mutate --filter <pkg> [--matrix] [--mutate <globs>] [...]
//
// Runs StrykerJS on one package's sources (packages/<pkg>/src, apps/cli/src for `cli`),
// incrementally: the last run's results sit in reports/mutation/<pkg>.incremental.json, so a
// re-run tests only the mutants whose code or tests changed. `--matrix` judges the mutants by
// the built-in scenario matrix alone (`ccmem matrix --no-kvm` through Stryker's command runner)
// instead of the unit tests (`--matrix-filter snp` keeps only the matrix rows that contain
// "snp", e.g. every SEV-SNP cell: the only cells that run SEV-SNP code). Any other option goes to `stryker run` as is (e.g. `--mutate` to
// narrow the files, `--force` to ignore the incremental file). See docs/testing.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import base from '../stryker.config.mjs';

const argv = process.argv.slice(2).filter((a) => a !== '--');
let pkg;
let matrix = false;
let matrixFilter;
const pass = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--filter') pkg = argv[++i];
  else if (a.startsWith('--filter=')) pkg = a.slice('--filter='.length);
  else if (a === '--matrix') matrix = true;
  else if (a === '--matrix-filter') matrixFilter = argv[++i];
  else if (pkg === undefined && !a.startsWith('-')) pkg = a;
  else pass.push(a);
}
if (pkg === undefined) {
  console.error('usage: pnpm mutate <core|gmem|snp|tdx|kvm|scenario|cli> [--matrix] [stryker options]');
  process.exit(2);
}
pkg = pkg.replace(/^@ccmem\//, '');
const dir = pkg === 'cli' ? 'apps/cli' : `packages/${pkg}`;
if (!existsSync(join(dir, 'package.json'))) {
  console.error(`mutate: no package "${pkg}" (${dir})`);
  process.exit(2);
}

const name = matrix ? `${pkg}-matrix` : pkg;
mkdirSync('reports/mutation', { recursive: true });
const config = {
  ...base,
  mutate: [`${dir}/src/**/*.ts`, `!${dir}/src/**/*.test.ts`, `!${dir}/src/**/testing/**`, `!${dir}/src/index.ts`],
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  ...(matrix && {
    testRunner: 'command',
    plugins: [],
    coverageAnalysis: 'off',
    commandRunner: {
      command: `node scripts/stryker-sandbox-links.mjs && node --conditions=@ccmem/source --import tsx apps/cli/src/bin.ts matrix --no-kvm${matrixFilter ? ` --filter ${matrixFilter}` : ''}`,
    },
  }),
};
if (matrix) delete config.vitest;
const file = `reports/mutation/.${name}.stryker.json`;
writeFileSync(file, JSON.stringify(config, null, 2));
const r = spawnSync('npx', ['stryker', 'run', file, ...pass], { stdio: 'inherit' });
process.exit(r.status ?? 1);
