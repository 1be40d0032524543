import { runScenario, type InvariantMode, type ScenarioResult, type TargetName } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import type { ReportOptions } from '../define/options.js';
import { emitReport, jsonOnStdout, reportUsageError, textOnStdout } from '../report/emit.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, inputLimits, invalid, loadFiles, nothingRan, printResult, reportInvalid, resultCase, resultJson, targetsOrReport, tick, toJson, writeTrace } from './shared.js';

export interface RunCommandOptions extends ReportOptions {
  target: TargetName;
  json?: boolean;
  trace?: string;
  stopOnFailure?: boolean;
  /** when the model checks its invariants (default step) */
  invariants?: InvariantMode;
  maxSteps?: string;
  maxFileSize?: string;
  readTimeout?: string;
  allowEmpty?: boolean;
}

/** `ccmem run <paths…>`: files, directories and globs (shared.ts `expandPaths()`). */
export async function runCommand(io: CliIo, paths: string[], opts: RunCommandOptions): Promise<number> {
  const usage = reportUsageError(opts);
  if (usage) return invalid(io, usage);
  const json = jsonOnStdout(opts);
  const text = textOnStdout(opts);
  const limits = inputLimits(opts);
  if (typeof limits === 'string') return invalid(io, limits);
  const { loaded, errors } = await loadFiles(paths, limits);
  if (errors.length) return reportInvalid(io, errors, json);
  const [target] = (await targetsOrReport(io, opts.target, { invariants: opts.invariants ?? 'step' })) ?? [];
  if (!target) return EXIT_INVALID;
  const results: ScenarioResult[] = [];
  const times: number[] = [];
  for (const { file, scenario } of loaded) {
    const t0 = performance.now();
    const r = runScenario(scenario, target, { file, trace: Boolean(opts.trace), stopOnFailure: Boolean(opts.stopOnFailure) });
    times.push(performance.now() - t0);
    results.push(r);
    if (text) printResult(io, r);
    await tick();
  }
  const passed = results.filter((r) => r.pass && r.skipped === undefined).length;
  const failed = results.filter((r) => !r.pass).length;
  const skipped = results.filter((r) => r.pass && r.skipped !== undefined).length;
  const traceError = opts.trace ? writeTrace(opts.trace, results) : null;
  if (traceError) io.err(`${io.color.red('error')} ${traceError}`);
  const doc = () => toJson({ scenarios: results.map(resultJson), passed, failed, skipped });
  if (opts.json) io.out(doc());
  else if (text) {
    const c = io.color;
    io.out(`\n${c.green(`${passed} passed`)}, ${failed ? c.red(`${failed} failed`) : '0 failed'}${skipped ? `, ${c.yellow(`${skipped} skipped`)}` : ''}`);
  }
  const ok = emitReport(io, opts, `ccmem run (${opts.target})`, () => results.map((r, i) => resultCase(r, `ccmem run ${opts.target}`, times[i])), doc);
  if (!ok) return EXIT_INVALID;
  if (traceError) return EXIT_INVALID;
  if (failed > 0) return EXIT_FAIL;
  if (passed === 0) return nothingRan(io, `every scenario was skipped on the ${opts.target} target`, opts.allowEmpty);
  return EXIT_OK;
}
