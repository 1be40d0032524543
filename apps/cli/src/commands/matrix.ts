import picomatch from 'picomatch';
import { relative } from 'node:path';
import {
  PROVIDERS,
  ScenarioParseError,
  TARGET_NAMES,
  VM_TYPES,
  builtinScenarios,
  builtinScenarioFiles,
  buildMatrix,
  cellMatches,
  kvmUnavailableReason,
  matrixCells,
  summarizeMatrix,
  type MatrixCell,
  type InvariantMode,
  type MatrixColumns,
  type MatrixRow,
  type TargetName,
} from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import type { ReportOptions } from '../define/options.js';
import type { ReportCase } from '../report/cases.js';
import { emitReport, jsonOnStdout, reportUsageError, textOnStdout } from '../report/emit.js';
import { getTargetFactory, kvmColumnAvailable, type TargetFactory } from '../targets.js';
import { detectedHostProfile, EXIT_FAIL, EXIT_INVALID, EXIT_OK, invalid, loadScenarioFiles, nothingRan, reportInvalid, resultText, tick, toJson } from './shared.js';
import { writeMatrixReport } from './report.js';

export interface MatrixCommandOptions extends ReportOptions {
  json?: boolean;
  /** substring of the scenario, file, VM type, provider or target (the old, loose filter) */
  filter?: string;
  /** exact selections (lists from comma-separated, repeatable options) */
  vmType?: string[];
  provider?: string[];
  target?: string[];
  /** scenario names or suite paths, exact or globs */
  scenario?: string[];
  /** run the scenarios of this directory instead of the built-in suite */
  dir?: string;
  /** leave out the real-KVM column even when it is available */
  kvm?: boolean;
  /** when the model checks its invariants (default step) */
  invariants?: InvariantMode;
  allowEmpty?: boolean;
  /** write an HTML index of the rows here, each failing cell linked to its own report */
  report?: string;
  /** a skipped row (or a missing real-KVM column) fails the run */
  failOnSkip?: boolean;
}

export interface Totals {
  passed: number;
  failed: number;
  skipped: number;
}

/** passed/failed/skipped per value of `key` (per VM type, per target), in order of appearance */
export function totalsBy(rows: readonly MatrixRow[], key: 'vm_type' | 'target' | 'provider'): Record<string, Totals> {
  const out: Record<string, Totals> = {};
  for (const r of rows) {
    const t = (out[r[key]] ??= { passed: 0, failed: 0, skipped: 0 });
    if (r.status === 'pass') t.passed++;
    else if (r.status === 'fail') t.failed++;
    else t.skipped++;
  }
  return out;
}

/**
 * The cell predicate of --vm-type, --provider, --target and --scenario, or the usage error.
 * --scenario matches a scenario's name or its file (relative to the suite) exactly, or as a
 * glob: in a name `*` matches anything, in a path it stops at `/` (`**` crosses).
 */
export function cellSelector(o: Pick<MatrixCommandOptions, 'vmType' | 'provider' | 'target' | 'scenario'>): { select: (c: MatrixCell) => boolean } | { error: string } {
  const check = (flag: string, given: string[] | undefined, known: readonly string[]): string | null => {
    const bad = (given ?? []).filter((v) => !known.includes(v));
    return bad.length ? `${flag}: unknown ${bad.map((b) => `"${b}"`).join(', ')} (known: ${known.join(', ')})` : null;
  };
  const error = check('--vm-type', o.vmType, VM_TYPES) ?? check('--provider', o.provider, PROVIDERS) ?? check('--target', o.target, TARGET_NAMES);
  if (error) return { error };
  const names = o.scenario ?? [];
  const nameGlob = names.length ? picomatch(names, { bash: true, dot: true }) : null;
  const pathGlob = names.length ? picomatch(names, { dot: true }) : null;
  const scenarioMatches = (c: MatrixCell) => names.includes(c.scenario) || names.includes(c.file) || nameGlob!(c.scenario) || pathGlob!(c.file);
  return {
    select: (c) =>
      (!o.vmType || o.vmType.includes(c.vm_type)) &&
      (!o.provider || o.provider.includes(c.provider)) &&
      (!o.target || o.target.includes(c.target)) &&
      (names.length === 0 || scenarioMatches(c)),
  };
}

const COLUMNS = { status: 6, vm_type: 12, provider: 11, target: 6 };

function line(status: string, vmType: string, provider: string, target: string, scenario: string): string {
  return `${status.padEnd(COLUMNS.status)}  ${vmType.padEnd(COLUMNS.vm_type)}  ${provider.padEnd(COLUMNS.provider)}  ${target.padEnd(COLUMNS.target)}  ${scenario}`;
}

const HEADER = line('status', 'vm type', 'provider', 'target', 'scenario');

/** the per-VM-type and per-target totals as a small table */
function totalsTable(io: CliIo, byVm: Record<string, Totals>, byTarget: Record<string, Totals>): void {
  const c = io.color;
  const w = 14;
  const row = (label: string, t: Totals) =>
    `  ${label.padEnd(w)}${String(t.passed).padStart(7)}${(t.failed ? c.red(String(t.failed).padStart(7)) : String(t.failed).padStart(7))}${String(t.skipped).padStart(8)}`;
  io.out(c.bold(`${'by VM type'.padEnd(w + 2)} passed failed skipped`));
  for (const [k, t] of Object.entries(byVm)) io.out(row(k, t));
  io.out(c.bold(`${'by target'.padEnd(w + 2)} passed failed skipped`));
  for (const [k, t] of Object.entries(byTarget)) io.out(row(k, t));
}

export async function matrixCommand(io: CliIo, opts: MatrixCommandOptions): Promise<number> {
  const c = io.color;
  const usage = reportUsageError(opts);
  const selector = cellSelector(opts);
  if (usage || 'error' in selector) return invalid(io, usage ?? (selector as { error: string }).error);
  const json = jsonOnStdout(opts);
  const text = textOnStdout(opts);
  let entries;
  try {
    if (opts.dir === undefined) entries = builtinScenarios();
    else {
      // files a user names: each read within the read timeout
      const dir = opts.dir;
      const { loaded, errors } = await loadScenarioFiles(builtinScenarioFiles(dir), {}, [], (p) => relative(dir, p));
      if (errors.length) return reportInvalid(io, errors, json);
      entries = loaded;
    }
  } catch (e) {
    if (e instanceof ScenarioParseError) return reportInvalid(io, e.errors, json);
    return invalid(io, (e as Error).message);
  }
  let columns: MatrixColumns;
  let modelFactory: TargetFactory;
  const invariants = opts.invariants ?? 'step';
  try {
    const factory = await getTargetFactory('model');
    modelFactory = (o) => factory({ ...o, invariants });
    columns = { model: () => modelFactory() };
  } catch (e) {
    return invalid(io, (e as Error).message);
  }
  const kvmWanted = opts.kvm !== false && (!opts.target || opts.target.includes('kvm'));
  if (kvmWanted && kvmColumnAvailable()) {
    // a kvm target that cannot load makes every kvm row a skip that says why
    columns.kvm = await getTargetFactory('kvm').catch((e: unknown) => () => {
      throw e;
    });
  }
  // `profile: host` on the model column follows the kernel the kvm column runs on
  const hostProfile = detectedHostProfile(columns.kvm);
  if (hostProfile) columns.model = () => modelFactory({ hostProfile });
  const targets: TargetName[] = columns.kvm ? ['model', 'kvm'] : ['model'];
  // without the real-KVM column the run says why, once (not once per cell); a column the
  // options leave out is not a skip
  const kvmColumnSkipped = columns.kvm || !kvmWanted ? undefined : (kvmUnavailableReason() ?? 'the kvm target is not available');
  const { select } = selector;
  const total = matrixCells(entries, targets).filter((x) => cellMatches(x, opts.filter) && select(x)).length;

  const live = io.isTTY && text;
  const spin = live ? (await import('@clack/prompts')).spinner() : null;
  spin?.start(`running ${total} matrix rows`);
  if (text && !live) io.out(HEADER);
  const rows: MatrixRow[] = [];
  const times: number[] = [];
  let last = performance.now();
  for (const entry of entries) {
    buildMatrix([entry], columns, {
      filter: opts.filter,
      select,
      onRow: (row) => {
        const now = performance.now();
        times.push(now - last);
        last = now;
        rows.push(row);
        if (spin) spin.message(`${rows.length}/${total} ${row.scenario}`);
        else if (text) io.out(`${line(row.status, row.vm_type, row.provider, row.target, row.scenario)}${skipReason(row)}`);
      },
    });
    // a closed stdout pipe (`| head`) is noticed between scenarios; a spinner gets to spin
    await tick();
  }
  const { passed, failed, skipped } = summarizeMatrix(rows);
  spin?.stop(`${rows.length} rows`);
  const byVm = totalsBy(rows, 'vm_type');
  const byTarget = totalsBy(rows, 'target');
  const skipFails = Boolean(opts.failOnSkip) && (skipped > 0 || kvmColumnSkipped !== undefined);

  const doc = () =>
    toJson({
      rows: rows.map((r) => ({
        scenario: r.scenario,
        file: r.file,
        vm_type: r.vm_type,
        provider: r.provider,
        target: r.target,
        status: r.status,
        ...(r.reason !== undefined && r.status !== 'pass' && { reason: r.reason }),
      })),
      passed,
      failed,
      skipped,
      totals: { vm_type: byVm, target: byTarget },
      ...(kvmColumnSkipped !== undefined && { kvm_column: { skipped: kvmColumnSkipped } }),
    });
  if (opts.json) io.out(doc());
  else if (text) {
    if (live) printTable(io, rows);
    for (const r of rows.filter((x) => x.status === 'fail')) {
      io.out(`${c.red('fail')} ${r.scenario} [${r.vm_type}/${r.provider}/${r.target}] ${c.dim(r.file)}\n      ${r.reason ?? ''}`);
    }
    if (kvmColumnSkipped !== undefined) io.out(c.yellow(`kvm column skipped: ${kvmColumnSkipped}`));
    if (rows.length === 0) io.out(c.yellow('no rows: nothing matches the selection'));
    io.out('');
    totalsTable(io, byVm, byTarget);
    if (skipFails) io.out(c.red(`--fail-on-skip: ${skipped} rows skipped${kvmColumnSkipped !== undefined ? ', and the real-KVM column' : ''}`));
    io.out(`\n${c.green(`${passed} passed`)}, ${failed ? c.red(`${failed} failed`) : '0 failed'}, ${c.yellow(`${skipped} skipped`)}`);
  }
  const cases = (): ReportCase[] =>
    rows.map((r, i) => ({
      suite: `${r.target} ${r.vm_type}`,
      classname: r.file,
      name: `${r.scenario} [${r.vm_type}/${r.provider}/${r.target}]`,
      status: r.status === 'pass' ? 'pass' : r.status === 'skip' ? 'skip' : r.result?.error ? 'error' : 'fail',
      ...(r.status !== 'pass' && r.reason !== undefined && { message: r.reason }),
      ...(r.status === 'fail' && r.result && { details: resultText(r.result) }),
      timeMs: times[i] ?? 0,
    }));
  if (!emitReport(io, opts, 'ccmem matrix', cases, doc)) return EXIT_INVALID;
  if (opts.report !== undefined) await writeMatrixReport(io, rows, entries, opts.report, hostProfile);
  if (failed > 0 || skipFails) return EXIT_FAIL;
  if (passed === 0) {
    const why = rows.length === 0 ? (opts.filter !== undefined ? `no row matches --filter ${opts.filter}` : 'no scenario to run') : 'every row was skipped';
    return nothingRan(io, why, opts.allowEmpty);
  }
  return EXIT_OK;
}

/** a skipped row names why: `  (host: no KVM_CAP_GUEST_MEMFD)` */
function skipReason(r: MatrixRow): string {
  return r.status === 'skip' && r.reason ? `  (${r.reason})` : '';
}

function printTable(io: CliIo, rows: readonly MatrixRow[]): void {
  const c = io.color;
  const mark = (s: MatrixRow['status']) => (s === 'pass' ? c.green('pass  ') : s === 'fail' ? c.red('fail  ') : c.yellow('skip  '));
  io.out(c.bold(HEADER));
  for (const r of rows) {
    io.out(`${mark(r.status)}  ${r.vm_type.padEnd(COLUMNS.vm_type)}  ${r.provider.padEnd(COLUMNS.provider)}  ${r.target.padEnd(COLUMNS.target)}  ${r.scenario}${c.dim(skipReason(r))}`);
  }
}
