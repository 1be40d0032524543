import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
      const verdicts = cells.map((c) => run(c)?.status);
      expect(verdicts).toEqual(doc.rows.map((x) => x.status));
      expect(cells.length).toBeGreaterThan(filter ? 50 : 400);
    });
  }

  it('a cell whose file expects what the model does not do is a failing row', async () => {
    const [first] = judgeCells();
    const dir = mkdtempSync(join(tmpdir(), 'ccmem-judge-'));
    const path = join(dir, 'broken.yaml');
    // the first errno the file expects, made one no call there returns
    const text = readFileSync(first!.path, 'utf8');
    const broken = text.replace(/errno: E(?!2BIG)[A-Z0-9]+/, 'errno: E2BIG');
    expect(broken).not.toBe(text);
    writeFileSync(path, broken);
    const run = await cellRunner();
    expect(run(first!)?.status).toBe('pass');
    expect(run({ ...first!, path })?.status).toBe('fail');
  });

  it("each cell carries its file's text hash (the test name's suffix), so an edited scenario is a new test", () => {
    const cells = judgeCells();
    const byFile = new Map<string, string>();
    for (const c of cells) {
      expect(c.fileHash).toBe(createHash('sha256').update(readFileSync(c.path)).digest('hex').slice(0, 12));
      byFile.set(c.path, c.fileHash);
    }
    // different files, different texts: the hashes tell them apart
    expect(new Set(byFile.values()).size).toBe(byFile.size);
  });
});
