import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// One root config; every package is a project and its tests run on source
// (the `@ccmem/source` export condition points at `src/`), so no build is needed.
// A package's own `pnpm test` runs its project alone: `vitest run --root ../.. --project <name>`.
const repoRoot = fileURLToPath(new URL('.', import.meta.url));
// `pnpm mutate` raises the per-test limit: instrumented code runs several times slower, and
// StrykerJS judges a mutant's time by its own timeout (stryker.config.mjs `timeoutMS`)
const testTimeout = Number(process.env.CCMEM_TEST_TIMEOUT_MS) || 60_000;
const projectDirs = ['packages', 'apps'].flatMap((group) =>
  readdirSync(join(repoRoot, group))
    .map((name) => join(group, name))
    .filter((dir) => existsSync(join(repoRoot, dir, 'package.json'))),
);

export default defineConfig({
  resolve: { conditions: ['@ccmem/source'] },
  ssr: { resolve: { conditions: ['@ccmem/source'] } },
  test: {
    projects: projectDirs.map((dir) => ({
      extends: true,
      test: { name: dir.split('/')[1], root: join(repoRoot, dir), include: ['src/**/*.test.ts', 'test/**/*.test.ts'], testTimeout },
    })),
    reporters: process.env.CCMEM_TEST_REPORT
      ? ['default', ['json', { outputFile: process.env.CCMEM_TEST_REPORT }]]
      : ['default'],
  },
});
