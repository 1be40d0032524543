import { statSync, writeFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { globSync, isDynamicPattern } from 'tinyglobby';
import {
  parseNumber,
  builtinScenarioFiles,
  collectEvents,
  describeExpectation,
  describeOutcome,
  formatScenarioError,
  jsonReplacer,
  readScenarioTextsWithin,
  tryParseScenario,
  type InputLimits,
  type Scenario,
  type ScenarioError,
  type ScenarioResult,
  type StepResult,
  type Target,
  type TargetName,
} from '@ccmem/scenario';
import pc from 'picocolors';
import type { KernelProfile } from '@ccmem/core';
import type { CliIo } from '../io.js';
import type { ReportCase } from '../report/cases.js';
import { getTarget, targetProblem, type TargetFactoryOptions } from '../targets.js';
import { parseDuration } from '../define/options.js';


const noColor = pc.createColors(false);

/** Exit codes: 0 every expectation held, 1 something failed, 2 invalid input or environment. */
export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_INVALID = 2;

export interface LoadedFile {
  file: string;
  scenario: Scenario;
}

/**
 * The scenario files named by command-line paths: a directory stands for every `.yaml`/`.yml`
 * file below it (sorted by path), a glob (`"scenarios/snp/*.yaml"`, quoted so the shell leaves
 * it alone; `**` crosses directories) for the files it matches (sorted), anything else for
 * itself. A directory without scenario files or a glob that matches nothing is an error.
 */
export function expandPaths(paths: readonly string[]): { files: string[]; errors: ScenarioError[] } {
  const files: string[] = [];
  const errors: ScenarioError[] = [];
  const problem = (file: string, message: string) => errors.push({ file, line: 1, column: 1, field: '', message });
  for (const p of paths) {
    let isDir = false;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      isDir = false;
    }
    if (isDir) {
      const found = builtinScenarioFiles(p);
      if (found.length === 0) problem(p, 'no scenario files (.yaml, .yml) in this directory');
      files.push(...found);
    } else if (isDynamicPattern(p)) {
      const found = globSync(p, { onlyFiles: true, expandDirectories: false, absolute: isAbsolute(p) })
        .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
        .sort();
      if (found.length === 0) problem(p, 'no scenario files (.yaml, .yml) match this glob');
      files.push(...found);
    } else files.push(p);
  }
  return { files: [...new Set(files)], errors };
}

/**
 * Load the scenario files of `paths` (expanded as `expandPaths()` does), within `limits`: each
 * file read within `limits.readTimeoutMs` (a child process reads them: a hung mount is an
 * error, never a hang).
 */
export async function loadFiles(paths: readonly string[], limits: InputLimits = {}): Promise<{ loaded: LoadedFile[]; errors: ScenarioError[] }> {
  const { files, errors } = expandPaths(paths);
  return loadScenarioFiles(files, limits, errors);
}

/** read and parse `files` (named as given: `file` of each result is the path) within `limits` */
export async function loadScenarioFiles(
  files: readonly string[],
  limits: InputLimits = {},
  errors: ScenarioError[] = [],
  name: (path: string) => string = (p) => p,
): Promise<{ loaded: LoadedFile[]; errors: ScenarioError[] }> {
  const loaded: LoadedFile[] = [];
  for (const r of await readScenarioTextsWithin(files, limits)) {
    if ('errors' in r) {
      errors.push(...r.errors);
      continue;
    }
    const parsed = tryParseScenario(r.text, r.path, limits);
    if (parsed.ok) loaded.push({ file: name(r.path), scenario: parsed.scenario });
    else errors.push(...parsed.errors);
  }
  return { loaded, errors };
}

/** `message` as an error on stderr; the exit code of invalid input or usage (2) */
export function invalid(io: CliIo, message: string): number {
  io.err(`${io.color.red('error')} ${message}`);
  return EXIT_INVALID;
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
    for (const m of extraMismatches(s)) io.out(`      ${c.red(m)}`);
    if (s.rule) io.out(`      kernel rule: ${s.rule}`);
  }
}

/**
 * The mismatches of a failed step that say more than its `expected:` and `happened:` lines.
 * The runner writes each mismatch as one self-contained sentence for one-line reports (the
 * matrix, --json): `expected errno EINVAL (happened: errno EEXIST)`. Printed under `expected:` /
 * `happened:` that repeats both (once per mismatch: an errno and an exit nobody expected made
 * three copies of the outcome), so here the `(happened: …)` tail goes, a sentence that only
 * restates the expectation goes, and each remaining sentence is printed once.
 */
export function extraMismatches(s: Pick<StepResult, 'mismatches' | 'expected' | 'outcome' | 'op'>): string[] {
  const tail = ` (happened: ${describeOutcome(s.outcome)})`;
  const fields = Object.entries(s.expected).filter(([, v]) => v !== undefined);
  // the whole expectation, and each of its fields, as a mismatch sentence would say it
  const restated = new Set([`expected ${describeExpectation(s.expected)}`, ...fields.map(([k, v]) => `expected ${describeExpectation({ [k]: v })}`)]);
  // `expected value 0x1, happened 0`: the happened: line already has the value (not so for an
  // assert step, whose happened: line does not list the state it inspected)
  const shown = s.op === 'assert' ? [] : fields.filter(([k]) => OUTCOME_LINE_FIELDS.has(k)).map(([k, v]) => `expected ${describeExpectation({ [k]: v })}, happened `);
  const out: string[] = [];
  for (const m of s.mismatches) {
    const core = m.endsWith(tail) ? m.slice(0, -tail.length) : m;
    if (restated.has(core) || shown.some((p) => core.startsWith(p)) || out.includes(core)) continue;
    out.push(core);
  }
  return out;
}

/** outcome fields the `happened:` line (describeOutcome) prints */
const OUTCOME_LINE_FIELDS = new Set(['value', 'dirty_pages', 'gpa', 'size', 'ret']);

/** The text report of one failing scenario (printResult's lines), for report files. */
export function resultText(r: ScenarioResult): string {
  const lines: string[] = [];
  const plain: CliIo = { out: (t) => void lines.push(t), err: () => {}, isTTY: false, color: noColor };
  printResult(plain, r);
  return lines.join('\n');
}

/** the first failing step as one line (report files' `message`) */
export function firstFailure(r: ScenarioResult): string {
  if (r.error) return r.error;
  const s = r.steps.find((x) => !x.pass);
  if (!s) return 'failed';
  const at = s.line !== undefined ? ` line ${s.line}` : '';
  return `step ${s.index} ${s.op}${at}: ${s.mismatches[0] ?? 'failed'}`;
}

/** The report case of one scenario run (run, --reporter). */
export function resultCase(r: ScenarioResult, suite: string, timeMs?: number): ReportCase {
  const base = { suite, classname: r.file, name: r.name, ...(timeMs !== undefined && { timeMs }) };
  if (r.error) return { ...base, status: 'error', message: r.error, details: resultText(r) };
  if (!r.pass) return { ...base, status: 'fail', message: firstFailure(r), details: resultText(r) };
  if (r.skipped !== undefined) return { ...base, status: 'skip', message: r.skipped };
  return { ...base, status: 'pass' };
}

/** Yield to the event loop (a closed stdout pipe is noticed there; see bin.ts). */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
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

/** `--max-steps` / `--max-file-size` / `--read-timeout` as InputLimits (docs/scenarios.md, "Limits") */
export function inputLimits(opts: { maxSteps?: string; maxFileSize?: string; readTimeout?: string }): InputLimits | string {
  const out: InputLimits = {};
  if (opts.readTimeout !== undefined) {
    let ms: number;
    try {
      ms = parseDuration(opts.readTimeout);
    } catch {
      return `--read-timeout ${opts.readTimeout}: needs a duration like 30s, 500ms or 1m`;
    }
    if (!(ms >= 1) || !Number.isSafeInteger(Math.round(ms))) return `--read-timeout ${opts.readTimeout}: must be at least 1ms`;
    out.readTimeoutMs = Math.round(ms);
  }
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


/** the exit code of a command that ran nothing: 2 (with why on stderr) unless --allow-empty */
export function nothingRan(io: CliIo, what: string, allowEmpty: boolean | undefined): number {
  if (allowEmpty) return EXIT_OK;
  return invalid(io, `nothing ran: ${what} (--allow-empty accepts that)`);
}

/**
 * The kernel profile a (real-KVM) target detected for this host, or undefined when it has none
 * or cannot detect one (no usable /dev/kvm: its rows or steps then say why). `profile: host`
 * on the model follows it.
 */
export function detectedHostProfile(target: Target | (() => Target) | undefined): KernelProfile | undefined {
  if (!target) return undefined;
  try {
    const t = typeof target === 'function' ? target() : target;
    const p = (t as Target & { profile?: KernelProfile }).profile;
    return p && typeof p === 'object' ? p : undefined;
  } catch {
    return undefined;
  }
}
