/**
 * The cells of `ccmem matrix --no-kvm [--filter <text>]`, each runnable alone: what
 * `matrix.judge.ts` makes one test of. A cell is run by the CLI's own model target factory
 * (`getTargetFactory('model')`, invariants checked after every step, the command's default)
 * through @ccmem/scenario's `buildMatrix()`, on one target shared by every cell, as the command
 * shares one.
 *
 * Parsing all 300-odd built-in files takes seconds, and StrykerJS evaluates the suite again for
 * every mutant, so the list of cells (file, scenario, VM type, provider: no parsed content) is
 * kept in the temporary directory, keyed by a hash of the scenario files and of @ccmem/scenario's
 * sources, and a cell's own file is parsed, with the code under test, only when the cell runs.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  buildMatrix,
  builtinScenarioDir,
  builtinScenarioFiles,
  cellMatches,
  loadScenarioFile,
  matrixCells,
  type MatrixCell,
  type MatrixRow,
  type ScenarioEntry,
  type Target,
} from '@ccmem/scenario';
import { getTargetFactory, loadTargets } from '../src/targets.js';

export interface JudgeCell {
  /** the scenario file's absolute path */
  path: string;
  /**
   * a hash of the file's text: part of the test's name, so that StrykerJS's incremental mode
   * sees an edited scenario as a new test and judges its mutants again (it cannot see YAML)
   */
  fileHash: string;
  cell: MatrixCell;
}

/** every `.ts` file under a directory, sorted */
function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .sort()
    .map((name) => join(dir, name));
}

function allCells(): JudgeCell[] {
  const dir = builtinScenarioDir();
  const files = builtinScenarioFiles(dir);
  const hash = createHash('sha256');
  const fileHashes = new Map<string, string>();
  for (const p of [...files, ...sources(join(dir, '..', 'src'))]) {
    const text = readFileSync(p);
    hash.update(p).update('\0').update(text).update('\0');
    fileHashes.set(p, createHash('sha256').update(text).digest('hex').slice(0, 12));
  }
  const cacheDir = join(tmpdir(), 'ccmem-matrix-cells');
  const cache = join(cacheDir, `${hash.digest('hex')}.json`);
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')) as JudgeCell[];
  const cells = files.flatMap((path) => {
    const fileHash = fileHashes.get(path)!;
    return matrixCells([{ file: relative(dir, path), scenario: loadScenarioFile(path) }], ['model']).map((cell) => ({ path, fileHash, cell }));
  });
  mkdirSync(cacheDir, { recursive: true });
  const part = `${cache}.${process.pid}`;
  writeFileSync(part, JSON.stringify(cells));
  renameSync(part, cache);
  return cells;
}

/** the model cells `ccmem matrix --no-kvm --filter <filter>` runs, in its order */
export function judgeCells(filter?: string): JudgeCell[] {
  return allCells().filter((c) => cellMatches(c.cell, filter));
}

const sameCell = (a: MatrixCell, b: MatrixCell) =>
  a.file === b.file && a.scenario === b.scenario && a.vm_type === b.vm_type && a.provider === b.provider && a.target === b.target;

/**
 * A function that parses a cell's file (once per file) and runs the cell, on a model target
 * made once; a cell its freshly parsed file no longer has gives no row (undefined), as the
 * command would print none.
 */
export async function cellRunner(): Promise<(c: JudgeCell) => MatrixRow | undefined> {
  await loadTargets({});
  const factory = await getTargetFactory('model');
  let shared: Target | undefined;
  const model = (): Target => (shared ??= factory({ invariants: 'step' }));
  const parsed = new Map<string, ScenarioEntry>();
  return ({ path, cell }) => {
    let entry = parsed.get(path);
    if (!entry) parsed.set(path, (entry = { file: cell.file, scenario: loadScenarioFile(path) }));
    const rows = buildMatrix([entry], { model }, { select: (c) => sameCell(c, cell) });
    if (rows.length > 1) throw new Error(`${cell.file} ${cell.scenario}: ${rows.length} rows for one cell`);
    return rows[0];
  };
}
