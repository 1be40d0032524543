import { Command, Option } from 'commander';
import { INVARIANT_MODES, runScenario, type InvariantMode, type ScenarioResult, type TargetName } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { ALLOW_EMPTY_HELP, EXIT_FAIL, EXIT_INVALID, EXIT_OK, INVARIANTS_OPTION_HELP, nothingRan, MAX_FILE_SIZE_HELP, MAX_STEPS_HELP, inputLimits, loadFiles, printResult, reportInvalid, resultJson, targetsOrReport, toJson, writeTrace } from './shared.js';

export interface RunCommandOptions {
  target: TargetName;
  json?: boolean;
  trace?: string;
  stopOnFailure?: boolean;
  /** when the model checks its invariants (default step) */
  invariants?: InvariantMode;
  maxSteps?: string;
  maxFileSize?: string;
  allowEmpty?: boolean;
}

export async function runCommand(io: CliIo, files: string[], opts: RunCommandOptions): Promise<number> {
  const limits = inputLimits(opts);
  if (typeof limits === 'string') {
    io.err(`${io.color.red('error')} ${limits}`);
    return EXIT_INVALID;
  }
  const { loaded, errors } = loadFiles(files, limits);
  if (errors.length) return reportInvalid(io, errors, Boolean(opts.json));
  const [target] = (await targetsOrReport(io, opts.target, { invariants: opts.invariants ?? 'step' })) ?? [];
  if (!target) return EXIT_INVALID;
  const results: ScenarioResult[] = [];
  for (const { file, scenario } of loaded) {
    const r = runScenario(scenario, target, { file, trace: Boolean(opts.trace), stopOnFailure: Boolean(opts.stopOnFailure) });
    results.push(r);
    if (!opts.json) printResult(io, r);
  }
  const passed = results.filter((r) => r.pass && r.skipped === undefined).length;
  const failed = results.filter((r) => !r.pass).length;
  const skipped = results.filter((r) => r.pass && r.skipped !== undefined).length;
  const traceError = opts.trace ? writeTrace(opts.trace, results) : null;
  if (traceError) io.err(`${io.color.red('error')} ${traceError}`);
  if (opts.json) {
    io.out(toJson({ scenarios: results.map(resultJson), passed, failed, skipped }));
  } else {
    const c = io.color;
    io.out(`\n${c.green(`${passed} passed`)}, ${failed ? c.red(`${failed} failed`) : '0 failed'}${skipped ? `, ${c.yellow(`${skipped} skipped`)}` : ''}`);
  }
  if (traceError) return EXIT_INVALID;
  if (failed > 0) return EXIT_FAIL;
  if (passed === 0) return nothingRan(io, `every scenario was skipped on the ${opts.target} target`, opts.allowEmpty);
  return EXIT_OK;
}

export function buildRunCommand(io: CliIo, done: (code: number) => void): Command {
  return new Command('run')
    .description('run scenario files and check every expectation (exit 0 all pass, 1 any fail, 2 invalid file)')
    .argument('<files...>', 'scenario YAML files')
    .addOption(new Option('--target <target>', 'where to run them').choices(['model', 'kvm']).default('model'))
    .option('--json', 'print one JSON document with every step outcome')
    .option('--trace <file>', 'write the kernel events of every step to this JSON file')
    .option('--stop-on-failure', 'stop a scenario at its first failing step')
    .addOption(new Option('--invariants <mode>', INVARIANTS_OPTION_HELP).choices([...INVARIANT_MODES]).default('step'))
    .option('--max-steps <n>', MAX_STEPS_HELP)
    .option('--max-file-size <bytes>', MAX_FILE_SIZE_HELP)
    .option('--allow-empty', ALLOW_EMPTY_HELP)
    .action(async (files: string[], opts: RunCommandOptions) => done(await runCommand(io, files, opts)));
}
