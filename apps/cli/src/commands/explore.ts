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
import type { CliIo } from '../io.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, toJson } from './shared.js';
import { setCommandImplementation } from './injected.js';

export const EXPLORE_HELP = `Usage: ccmem explore <file> [options]
       ccmem explore --builtin <name> [options]

Options:
  --mode exhaustive|random|pct   search strategy (default: the file's, else exhaustive)
  --bound N                      scheduled phases per run (exhaustive: depth bound)
  --seed S                       PRNG seed (random, pct)
  --schedules N                  runs (random, pct) or a cap on runs (exhaustive)
  --depth D                      pct bug depth (D - 1 priority change points)
  --replay <schedule>            rerun one schedule ("vmm.cpu0.cpu0…") and print its events
  --skip-retry-check             fault injection: skip mmu_invalidate_retry_gfn under mmu_lock
  --json                         print one JSON document
Built-in explorations: ${safeNames().join(', ')}`;

function safeNames(): string[] {
  try {
    return builtinExplorationNames();
  } catch {
    return [];
  }
}

interface Parsed {
  file?: string;
  builtin?: string;
  replay?: string;
  json: boolean;
  help: boolean;
  opts: ExploreOptions;
  error?: string;
}

function parseArgs(args: string[]): Parsed {
  const p: Parsed = { json: false, help: false, opts: {} };
  const num = (v: string | undefined, what: string): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) throw new Error(`${what} needs a non-negative integer`);
    return n;
  };
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
      const val = () => inline ?? args[++i];
      switch (flag) {
        case '--json':
          p.json = true;
          break;
        case '--help':
        case '-h':
          p.help = true;
          break;
        case '--builtin':
          p.builtin = val();
          break;
        case '--replay':
          p.replay = val() ?? '';
          break;
        case '--mode': {
          const m = val();
          if (m !== 'exhaustive' && m !== 'random' && m !== 'pct') throw new Error(`--mode must be exhaustive, random or pct`);
          p.opts.mode = m;
          break;
        }
        case '--bound':
          p.opts.bound = num(val(), '--bound');
          break;
        case '--seed':
          p.opts.seed = num(val(), '--seed');
          break;
        case '--schedules':
          p.opts.schedules = num(val(), '--schedules');
          break;
        case '--depth':
          p.opts.depth = num(val(), '--depth');
          break;
        case '--skip-retry-check':
          p.opts.faultInjection = { skipRetryCheck: true };
          break;
        default:
          if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
          if (p.file !== undefined) throw new Error('one scenario file at a time');
          p.file = a;
      }
    }
    if (!p.help && (p.file === undefined) === (p.builtin === undefined)) throw new Error('give a scenario file or --builtin <name>');
  } catch (e) {
    p.error = (e as Error).message;
  }
  return p;
}

export function exploreCommand(io: CliIo, args: string[], extra: Record<string, unknown> = {}): number {
  const p = parseArgs([...args, ...(extra.json ? ['--json'] : [])]);
  if (p.help) {
    io.out(EXPLORE_HELP);
    return EXIT_OK;
  }
  if (p.error) {
    io.err(`${io.color.red('error')} ${p.error}\n${EXPLORE_HELP}`);
    return EXIT_INVALID;
  }
  const loaded = p.builtin !== undefined ? loadBuiltinExploration(p.builtin) : loadExplorationFile(p.file!);
  if (!loaded.ok) {
    for (const e of loaded.errors) io.err(`${io.color.red('error')} ${formatScenarioError(e)}`);
    if (p.json) io.out(JSON.stringify({ errors: loaded.errors }));
    return EXIT_INVALID;
  }
  const { scenario, options } = loaded.exploration;
  const opts: ExploreOptions = { ...options, ...p.opts };
  const name = p.builtin ?? scenario.name;
  let report: ExploreReport;
  try {
    if (p.replay !== undefined) {
      const r = replaySchedule(scenario, p.replay, opts);
      report = {
        name,
        mode: opts.mode ?? 'exhaustive',
        schedules: 1,
        violations: r.violation ? [{ schedule: p.replay, violation: r.violation, events: r.events }] : [],
        pass: r.violation === null,
        stats: { steps: r.steps, elapsedMs: 0, stepsPerSecond: 0, sleepBlocked: 0, observations: {}, vendorFaultRuns: r.vendorFaults > 0 ? 1 : 0, violatingRuns: r.violation ? 1 : 0, complete: true },
      };
      if (!p.json) {
        for (const e of r.events) io.out(`  ${e.name} ${toJson(e.fields)}`);
        for (const s of r.records) io.out(`  [${s.actor}] ${s.op} → ${toJson(s.outcome)}`);
      }
    } else report = explore(scenario, opts, name);
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  if (p.json) {
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

setCommandImplementation('explore', exploreCommand);
