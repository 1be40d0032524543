/**
 * `ccmem matrix --no-kvm` as a vitest suite: one test per model cell, failing exactly when the
 * command would print `fail` for its row (matrix-cells.ts). `pnpm mutate <pkg> --matrix` judges
 * mutants by this suite (vitest.matrix-judge.config.ts), so StrykerJS runs only the cells that
 * reach a mutant; `CCMEM_MATRIX_FILTER` keeps the cells `--filter` would.
 */
import { describe, expect, it } from 'vitest';
import { cellRunner, judgeCells, type JudgeCell } from './matrix-cells.js';

const run = await cellRunner();
const byFile = new Map<string, JudgeCell[]>();
for (const c of judgeCells(process.env.CCMEM_MATRIX_FILTER || undefined)) {
  const list = byFile.get(c.cell.file) ?? [];
  list.push(c);
  byFile.set(c.cell.file, list);
}
for (const [file, cells] of byFile) {
  describe(file, () => {
    for (const c of cells) {
      // the file's hash in the name: an edited scenario is a new test to the incremental mode
      it(`${c.cell.scenario} [${c.cell.vm_type}/${c.cell.provider}] @${c.fileHash}`, () => {
        const row = run(c);
        if (row) expect(row.status, row.reason).not.toBe('fail');
      });
    }
  });
}
