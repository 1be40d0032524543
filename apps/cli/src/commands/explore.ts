/**
 * `ccmem explore <file> | --builtin <name>`: deterministic exploration of the interleavings of a
 * scenario's `concurrent:` block (docs/explore.md). Exit 0 no violation, 1 violations, 2 invalid.
 */
import {
  builtinExplorationNames,
  explore,
  formatScenarioError,
  loadBuiltinExploration,
  loadExplorationFile,
  replaySchedule,
  type ExploreOptions,
  type ExploreReport,
} from '@ccmem/scenario';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CliIo } from '../io.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, toJson } from './shared.js';

export interface ExploreCommandOptions {
  builtin?: string;
  mode?: ExploreOptions['mode'];
  bound?: number;
  seed?: number;
  schedules?: number;
  depth?: number;
  replay?: string;
  skipRetryCheck?: boolean;
  json?: boolean;
}

export function exploreCommand(io: CliIo, file: string | undefined, o: ExploreCommandOptions): number {
  if ((file === undefined) === (o.builtin === undefined)) {
    io.err(`${io.color.red('error')} give a scenario file or --builtin <name>`);
    return EXIT_INVALID;
  }
  const { builtin, replay, json, skipRetryCheck, ...search } = o;
  const loaded = builtin !== undefined ? loadBuiltinExploration(builtin) : loadExplorationFile(file!);
  if (!loaded.ok) {
    for (const e of loaded.errors) io.err(`${io.color.red('error')} ${formatScenarioError(e)}`);
    if (json) io.out(JSON.stringify({ errors: loaded.errors }));
    return EXIT_INVALID;
  }
  const { scenario, options } = loaded.exploration;
  const opts: ExploreOptions = { ...options, ...search, ...(skipRetryCheck && { faultInjection: { skipRetryCheck: true } }) };
  const name = builtin ?? scenario.name;
  let report: ExploreReport;
  try {
    if (replay !== undefined) {
      const r = replaySchedule(scenario, replay, opts);
      report = {
        name,
        mode: opts.mode ?? 'exhaustive',
        schedules: 1,
        violations: r.violation ? [{ schedule: replay, violation: r.violation, events: r.events }] : [],
        pass: r.violation === null,
        stats: { steps: r.steps, elapsedMs: 0, stepsPerSecond: 0, sleepBlocked: 0, observations: {}, vendorFaultRuns: r.vendorFaults > 0 ? 1 : 0, violatingRuns: r.violation ? 1 : 0, complete: true },
      };
      if (!json) {
        for (const e of r.events) io.out(`  ${e.name} ${toJson(e.fields)}`);
        for (const s of r.records) io.out(`  [${s.actor}] ${s.op} → ${toJson(s.outcome)}`);
      }
    } else report = explore(scenario, opts, name);
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  if (json) {
    io.out(toJson({ name: report.name, mode: report.mode, schedules: report.schedules, violations: report.violations.map((v) => ({ schedule: v.schedule, violation: v.violation, events: v.events })), pass: report.pass }));
  } else {
    const c = io.color;
    const s = report.stats;
    io.out(`${report.pass ? c.green('✓') : c.red('✗')} ${report.name}: ${report.mode}, ${report.schedules} schedules, ${s.steps} steps${s.complete ? '' : ' (stopped early)'}`);
    for (const [k, n] of Object.entries(s.observations)) io.out(`    observed ${k} in ${n} schedules`);
    if (s.vendorFaultRuns) io.out(`    vendor #NPFs (RMP faults) in ${s.vendorFaultRuns} schedules`);
    for (const v of report.violations) {
      io.out(`    ${c.red('violation')}: ${v.violation}`);
      io.out(`    schedule: ${v.schedule || '(empty: the deterministic completion alone)'}  ${c.dim(`(ccmem explore … --replay '${v.schedule}')`)}`);
      for (const e of v.events) io.out(`      ${e.name} ${toJson(e.fields)}`);
    }
  }
  return report.pass ? EXIT_OK : EXIT_FAIL;
}

/** a non-negative integer option value */
function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('needs a non-negative integer');
  return n;
}

export function buildExploreCommand(io: CliIo, done: (code: number) => void): Command {
  let names: string[] = [];
  try {
    names = builtinExplorationNames();
  } catch {
    // no built-in explorations in this build
  }
  return new Command('explore')
    .description('explore the interleavings of a scenario with concurrent actors')
    .argument('[file]', 'scenario file with a concurrent: block')
    .option('--builtin <name>', `a built-in exploration: ${names.join(', ')}`)
    .addOption(new Option('--mode <mode>', "search strategy (default: the file's, else exhaustive)").choices(['exhaustive', 'random', 'pct']))
    .option('--bound <N>', 'scheduled phases per run (exhaustive: depth bound)', count)
    .option('--seed <S>', 'PRNG seed (random, pct)', count)
    .option('--schedules <N>', 'runs (random, pct) or a cap on runs (exhaustive)', count)
    .option('--depth <D>', 'pct bug depth (D - 1 priority change points)', count)
    .option('--replay <schedule>', 'rerun one schedule ("vmm.cpu0.cpu0…") and print its events')
    .option('--skip-retry-check', 'fault injection: skip mmu_invalidate_retry_gfn under mmu_lock')
    .option('--json', 'print one JSON document')
    .action((file: string | undefined, opts: ExploreCommandOptions) => done(exploreCommand(io, file, opts)));
}
