import { describe, expect, it } from 'vitest';
import { ccmemInProcess } from '../test-support/ccmem-in-process.js';
import { cellRunner, judgeCells } from '../mutation/matrix-cells.js';

interface Row {
  scenario: string;
  file: string;
  vm_type: string;
  provider: string;
  target: string;
  status: string;
}

const key = (r: Omit<Row, 'status'>) => `${r.file}\0${r.scenario}\0${r.vm_type}\0${r.provider}\0${r.target}`;

// `pnpm mutate --matrix` judges mutants by the matrix as a suite of one test per cell
// (docs/testing.md): the suite must hold the command's rows, one by one, with the same verdicts.
describe('the matrix as a mutation-testing suite', () => {
  for (const filter of [undefined, 'snp']) {
    it(`has the cells and verdicts of ccmem matrix --no-kvm${filter ? ` --filter ${filter}` : ''}`, async () => {
      const r = await ccmemInProcess(['matrix', '--no-kvm', '--json', ...(filter ? ['--filter', filter] : [])]);
      const doc = JSON.parse(r.stdout) as { rows: Row[] };
      const cells = judgeCells(filter);
      expect(cells.map((c) => key(c.cell))).toEqual(doc.rows.map(key));
      const run = await cellRunner();
      const verdicts = cells.map((c) => run(c).status);
      expect(verdicts).toEqual(doc.rows.map((x) => x.status));
      expect(cells.length).toBeGreaterThan(filter ? 50 : 400);
    });
  }

  it('a cell that fails its expectations is a failing row', async () => {
    const [first] = judgeCells();
    const broken = structuredClone(first!);
    const step = broken.entry.scenario.steps.find((s) => s.expect !== undefined);
    expect(step).toBeDefined();
    Object.assign(step!, { expect: { errno: 'E2BIG' } });
    const row = (await cellRunner())(broken);
    expect(row.status).toBe('fail');
  });
});
