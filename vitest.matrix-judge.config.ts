import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The built-in scenario matrix as a vitest suite, one test per model cell
// (apps/cli/mutation/matrix.judge.ts), for `pnpm mutate <pkg> --matrix`: StrykerJS then runs only
// the cells that reach a mutant. `@ccmem/*` resolve to the sources next to this file, so inside a
// StrykerJS sandbox every package is the sandbox's (mutated) copy, not the original tree.
const repoRoot = fileURLToPath(new URL('.', import.meta.url));
const source = { find: /^@ccmem\/(core|gmem|snp|tdx|kvm|scenario)$/, replacement: `${repoRoot}packages/$1/src/index.ts` };

export default defineConfig({
  resolve: { alias: [source], conditions: ['@ccmem/source'] },
  ssr: { resolve: { conditions: ['@ccmem/source'] } },
  test: {
    root: repoRoot,
    include: ['apps/cli/mutation/**/*.judge.ts'],
    testTimeout: 60_000,
  },
});
