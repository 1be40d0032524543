/**
 * The cells of `ccmem matrix --no-kvm [--filter <text>]`, each runnable alone: what
 * `matrix.judge.ts` makes one test of. A cell is run by the CLI's own model target factory
 * (`getTargetFactory('model')`, invariants checked after every step, the command's default)
 * through @ccmem/scenario's `buildMatrix()`, on one target shared by every cell, as the command
 * shares one.
 */
import { buildMatrix, builtinScenarios, cellMatches, matrixCells, type MatrixCell, type MatrixRow, type ScenarioEntry, type Target } from '@ccmem/scenario';
import { getTargetFactory, loadTargets } from '../src/targets.js';

export interface JudgeCell {
  entry: ScenarioEntry;
  cell: MatrixCell;
}

/** the model cells `ccmem matrix --no-kvm --filter <filter>` runs, in its order */
export function judgeCells(filter?: string): JudgeCell[] {
  return builtinScenarios().flatMap((entry) =>
    matrixCells([entry], ['model'])
      .filter((cell) => cellMatches(cell, filter))
      .map((cell) => ({ entry, cell })),
  );
}

const sameCell = (a: MatrixCell, b: MatrixCell) =>
  a.file === b.file && a.scenario === b.scenario && a.vm_type === b.vm_type && a.provider === b.provider && a.target === b.target;

/** a function that runs one cell and returns its row, on a model target made once */
export async function cellRunner(): Promise<(c: JudgeCell) => MatrixRow> {
  await loadTargets({});
  const factory = await getTargetFactory('model');
  let shared: Target | undefined;
  const model = (): Target => (shared ??= factory({ invariants: 'step' }));
  return ({ entry, cell }) => {
    const rows = buildMatrix([entry], { model }, { select: (c) => sameCell(c, cell) });
    if (rows.length !== 1) throw new Error(`${cell.file} ${cell.scenario}: ${rows.length} rows for one cell`);
    return rows[0]!;
  };
}
