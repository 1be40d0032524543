import { writeFileSync } from 'node:fs';
import {
  DEFAULT_INPUT_LIMITS,
  parseNumber,
  ScenarioParseError,
  collectEvents,
  describeExpectation,
  describeOutcome,
  formatScenarioError,
  jsonReplacer,
  loadScenarioFile,
  type InputLimits,
  type Scenario,
  type ScenarioError,
  type ScenarioResult,
  type Target,
  type TargetName,
} from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { getTarget, targetProblem, type TargetFactoryOptions } from '../targets.js';

/** the `--invariants` option of run and matrix (docs/scenarios.md, "Running") */
export const INVARIANTS_OPTION_HELP =
  'when the model checks its invariants: full (after every step), step (every step of the first 1000, then every 1000th and the last), off';

/** Exit codes: 0 every expectation held, 1 something failed, 2 invalid input or environment. */
export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_INVALID = 2;

export interface LoadedFile {
  file: string;
  scenario: Scenario;
}

export function loadFiles(files: readonly string[], limits: InputLimits = {}): { loaded: LoadedFile[]; errors: ScenarioError[] } {
  const loaded: LoadedFile[] = [];
  const errors: ScenarioError[] = [];
  for (const file of files) {
    try {
      loaded.push({ file, scenario: loadScenarioFile(file, limits) });
    } catch (e) {
      if (e instanceof ScenarioParseError) errors.push(...e.errors);
      else throw e;
    }
  }
  return { loaded, errors };
}

export function reportInvalid(io: CliIo, errors: readonly ScenarioError[], json: boolean): number {
  for (const e of errors) io.err(`${io.color.red('error')} ${formatScenarioError(e)}`);
  if (json) io.out(JSON.stringify({ errors }));
  return EXIT_INVALID;
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer);
}

/** The `--json` form of one scenario result (events stay in the --trace file). */
export function resultJson(r: ScenarioResult) {
  return {
    file: r.file,
    name: r.name,
    target: r.target,
    vm_type: r.vm_type,
    provider: r.provider,
    pass: r.pass,
    ...(r.skipped !== undefined && { skipped: r.skipped }),
    ...(r.error !== undefined && { error: r.error }),
    steps: r.steps.map((s) => {
      const { events: _events, ...outcome } = s.outcome;
      return {
        index: s.index,
        op: s.op,
        pass: s.pass,
        outcome,
        expected: s.expected,
        ...(s.line !== undefined && { line: s.line }),
        ...(s.actor !== undefined && { actor: s.actor }),
        ...(s.rule !== undefined && { rule: s.rule }),
        ...(s.skipped !== undefined && { skipped: s.skipped }),
        ...(s.mismatches.length > 0 && { mismatches: s.mismatches }),
      };
    }),
  };
}

/** Human report of one scenario run: a status line, then every failing step. */
export function printResult(io: CliIo, r: ScenarioResult): void {
  const c = io.color;
  const where = r.file ? c.dim(` (${r.file})`) : '';
  if (r.error) {
    io.out(`${c.red('✗')} ${r.name}${where}\n    ${r.error}`);
    return;
  }
  if (r.skipped !== undefined && r.pass) {
    io.out(`${c.yellow('-')} ${r.name}${where} ${c.yellow(`skipped: ${r.skipped}`)}`);
    return;
  }
  io.out(`${r.pass ? c.green('✓') : c.red('✗')} ${r.name}${where}`);
  for (const s of r.steps) {
    if (s.pass) continue;
    const at = s.line !== undefined ? ` line ${s.line}` : '';
    io.out(`    step ${s.index} ${c.bold(s.op)}${s.actor ? ` [${s.actor}]` : ''}${at}`);
    io.out(`      expected: ${describeExpectation(s.expected)}`);
    io.out(`      happened: ${describeOutcome(s.outcome)}`);
    for (const m of s.mismatches) io.out(`      ${c.red(m)}`);
    if (s.rule) io.out(`      kernel rule: ${s.rule}`);
  }
}

/** write the --trace file; an error message (the run's results are kept) when it cannot be written */
export function writeTrace(path: string, results: readonly ScenarioResult[]): string | null {
  const doc = {
    scenarios: results.map((r) => ({ file: r.file, name: r.name, target: r.target, steps: collectEvents(r) })),
  };
  try {
    writeFileSync(path, `${toJson(doc)}\n`);
    return null;
  } catch (e) {
    return `cannot write the trace file ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
}

/** `--max-steps` / `--max-file-size` as InputLimits (docs/scenarios.md, "Limits") */
export function inputLimits(opts: { maxSteps?: string; maxFileSize?: string }): InputLimits | string {
  const out: InputLimits = {};
  for (const [flag, v, key] of [
    ['--max-steps', opts.maxSteps, 'maxSteps'],
    ['--max-file-size', opts.maxFileSize, 'maxFileBytes'],
  ] as const) {
    if (v === undefined) continue;
    let n: number;
    try {
      n = parseNumber(v);
    } catch {
      return `${flag} ${v}: not a number`;
    }
    if (!Number.isSafeInteger(n) || n <= 0) return `${flag} ${v}: must be a positive integer`;
    out[key] = n;
  }
  return out;
}

export const MAX_STEPS_HELP = `the most steps a scenario file may have (default ${DEFAULT_INPUT_LIMITS.maxSteps})`;
export const MAX_FILE_SIZE_HELP = `the largest scenario file read, in bytes (KiB/MiB suffixes; default ${DEFAULT_INPUT_LIMITS.maxFileBytes / 2 ** 20}MiB)`;

/**
 * The named targets, or null after telling the user why one is not available (the caller then
 * exits with EXIT_INVALID).
 */
export async function targetsOrReport(io: CliIo, ...names: (TargetName | TargetFactoryOptions)[]): Promise<Target[] | null> {
  // (a trailing options object is handed to every factory)
  const opts = names.find((n): n is TargetFactoryOptions => typeof n === 'object');
  for (const n of names) {
    const problem = typeof n === 'string' ? targetProblem(n) : null;
    if (problem) {
      io.err(`${io.color.red('error')} the ${n as string} target cannot run here: ${problem}`);
      return null;
    }
  }
  try {
    return await Promise.all(names.filter((n): n is TargetName => typeof n === 'string').map((n) => getTarget(n, opts)));
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return null;
  }
}

export const ALLOW_EMPTY_HELP = 'exit 0 even when nothing ran (every scenario skipped, or no scenario matched)';

/** the exit code of a command that ran nothing: 2 (with why on stderr) unless --allow-empty */
export function nothingRan(io: CliIo, what: string, allowEmpty: boolean | undefined): number {
  if (allowEmpty) return EXIT_OK;
  io.err(`${io.color.red('error')} nothing ran: ${what} (--allow-empty accepts that)`);
  return EXIT_INVALID;
}
