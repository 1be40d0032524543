/**
 * `ccmem explore <file> | --builtin <name>`: deterministic exploration of the interleavings of a
 * scenario's `concurrent:` block (docs/explore.md). Exit 0 complete without violation, 1
 * violations, 2 invalid, 3 incomplete (stopped by --time or --max-schedules, nothing found).
 */
import {
  builtinExplorationNames,
  explore,
  exploreWorkers,
  formatScenarioError,
  loadBuiltinExploration,
  loadExplorationFile,
  replaySchedule,
  reportToJson,
  type ExploreOptions,
  type ExploreProgress,
  type ExploreResultJson,
} from '@ccmem/scenario';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CliIo } from '../io.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, toJson } from './shared.js';
import { writeExploreReport } from './report.js';

/** no violation found, but the search stopped before it was complete (proves nothing) */
export const EXIT_INCOMPLETE = 3;

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
  /** milliseconds (parsed from --time) */
  time?: number;
  maxSchedules?: number;
  /** 0-based index and count (parsed from --shard K/N) */
  shard?: { index: number; count: number };
  shardDepth?: number;
  workers?: number;
  /** false: --no-progress */
  progress?: boolean;
  reduction?: 'sleep' | 'dpor';
  /** write an HTML report of the counterexample (or the --replay schedule) here */
  report?: string;
}

/** "90" (seconds), "1500ms", "30s", "5m", "1h", "1m30s" → milliseconds */
export function parseDuration(v: string): number {
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    ms += Number(m[1]) * unit[m[2]!]!;
    end = re.lastIndex;
  }
  if (end === 0 || end !== t.length) throw new InvalidArgumentError('needs a duration like 90, 30s, 5m, 1h30m or 500ms');
  return ms;
}

/** "K/N" with 1 <= K <= N → 0-based index */
export function parseShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const k = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || k < 1 || k > n) throw new InvalidArgumentError('needs K/N with 1 <= K <= N (e.g. 2/4)');
  return { index: k - 1, count: n };
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function progressLine(p: ExploreProgress, mode: string): string {
  const rate = p.stepsPerSecond >= 10_000 ? `${Math.round(p.stepsPerSecond / 1000)}k` : String(Math.round(p.stepsPerSecond));
  const front = mode === 'exhaustive' ? `frontier ${p.frontier}` : `${p.frontier} runs left`;
  return `${p.schedules} schedules, ${rate} steps/s, ${front}, ${p.violatingRuns} violating, ${seconds(p.elapsedMs)}`;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * Progress on stderr: on a terminal one line rewritten in place with a spinner (5 times a
 * second), otherwise a plain line every 5 seconds.
 */
export function progressReporter(io: CliIo, mode: string): { interval: number; report: (p: ExploreProgress) => void } {
  const tty = io.isTTY && Boolean(process.stderr.isTTY);
  let frame = 0;
  if (tty) {
    return {
      interval: 200,
      report: (p) => {
        if (p.done) process.stderr.write('\r\x1b[2K');
        else process.stderr.write(`\r\x1b[2K${SPINNER[frame++ % SPINNER.length]} ${progressLine(p, mode)}`);
      },
    };
  }
  return { interval: 5000, report: (p) => void (!p.done && io.err(`explore: ${progressLine(p, mode)}`)) };
}

function stopText(r: ExploreResultJson, o: ExploreCommandOptions): string {
  switch (r.stopReason) {
    case 'time':
      return `time limit${o.time !== undefined ? ` ${seconds(o.time)}` : ''} reached`;
    case 'max-schedules':
      return 'schedule limit reached';
    case 'violations':
      return 'stopped at the first violation';
    case 'shards-missing':
    case 'complete':
      return 'shards missing';
  }
}

/** the text summary of an exploration result (explore and merge) */
export function printSummary(io: CliIo, r: ExploreResultJson, o: ExploreCommandOptions = {}): void {
  const c = io.color;
  const s = r.stats;
  const mark = r.result === 'pass' ? c.green('✓') : r.result === 'violation' ? c.red('✗') : c.yellow('?');
  const what = r.mode === 'exhaustive' ? (r.complete ? 'complete' : c.yellow(`INCOMPLETE (${stopText(r, o)})`)) : r.complete ? 'all runs' : c.yellow(`stopped early (${stopText(r, o)})`);
  const shard = r.shard ? `, shard ${r.shard.index + 1}/${r.shard.count}` : r.shards !== undefined ? `, ${r.shards} shards merged` : '';
  io.out(`${mark} ${r.name}: ${r.mode}${r.bound !== undefined ? ` bound ${r.bound}` : ''}${shard}, ${what}: ${r.schedules} schedules, ${s.steps} steps, ${seconds(s.elapsedMs)}`);
  if (r.result === 'incomplete') io.out(`    no violation in the schedules explored; the search did not finish, so this is not a pass`);
  for (const [k, n] of Object.entries(s.observations)) io.out(`    observed ${k} in ${n} schedules`);
  if (s.vendorFaultRuns) io.out(`    vendor #NPFs (RMP faults) in ${s.vendorFaultRuns} schedules`);
  for (const v of r.violations) {
    io.out(`    ${c.red('violation')}: ${v.violation}`);
    io.out(`    schedule: ${v.schedule || '(empty: the deterministic completion alone)'}  ${c.dim(`(ccmem explore … --replay '${v.schedule}')`)}`);
    for (const e of v.events) io.out(`      ${e.name} ${toJson(e.fields)}`);
  }
}

export function exitCodeOf(r: ExploreResultJson): number {
  return r.result === 'pass' ? EXIT_OK : r.result === 'violation' ? EXIT_FAIL : EXIT_INCOMPLETE;
}

export async function exploreCommand(io: CliIo, file: string | undefined, o: ExploreCommandOptions): Promise<number> {
  if ((file === undefined) === (o.builtin === undefined)) {
    io.err(`${io.color.red('error')} give a scenario file or --builtin <name>`);
    return EXIT_INVALID;
  }
  const { builtin, replay, json, skipRetryCheck, time, maxSchedules, shard, shardDepth, workers, progress, report, ...search } = o;
  const loaded = builtin !== undefined ? loadBuiltinExploration(builtin) : loadExplorationFile(file!);
  if (!loaded.ok) {
    for (const e of loaded.errors) io.err(`${io.color.red('error')} ${formatScenarioError(e)}`);
    if (json) io.out(JSON.stringify({ errors: loaded.errors }));
    return EXIT_INVALID;
  }
  const { scenario, options } = loaded.exploration;
  const opts: ExploreOptions = { ...options, ...search, ...(skipRetryCheck && { faultInjection: { skipRetryCheck: true } }) };
  const mode = opts.mode ?? 'exhaustive';
  if (time !== undefined) opts.timeLimitMs = time;
  if (maxSchedules !== undefined) opts.schedules = Math.min(opts.schedules ?? Infinity, maxSchedules);
  if ((shard !== undefined || workers !== undefined) && mode !== 'exhaustive') {
    io.err(`${io.color.red('error')} --shard and --workers partition the exhaustive search (this exploration is ${mode})`);
    return EXIT_INVALID;
  }
  if (shard !== undefined && workers !== undefined) {
    io.err(`${io.color.red('error')} give --shard or --workers, not both`);
    return EXIT_INVALID;
  }
  if (shard !== undefined) opts.shard = { ...shard, ...(shardDepth !== undefined && { depth: shardDepth }) };
  const name = builtin ?? scenario.name;
  const bound = opts.bound ?? 64;
  let result: ExploreResultJson;
  try {
    if (replay !== undefined) {
      const r = replaySchedule(scenario, replay, opts);
      result = reportToJson({
        name,
        mode,
        schedules: 1,
        violations: r.violation ? [{ schedule: replay, violation: r.violation, events: r.events }] : [],
        pass: r.violation === null,
        stats: {
          steps: r.steps,
          elapsedMs: 0,
          stepsPerSecond: 0,
          sleepBlocked: 0,
          observations: {},
          vendorFaultRuns: r.vendorFaults > 0 ? 1 : 0,
          violatingRuns: r.violation ? 1 : 0,
          complete: true,
          stopReason: 'complete',
        },
      });
      if (!json) {
        for (const e of r.events) io.out(`  ${e.name} ${toJson(e.fields)}`);
        for (const s of r.records) io.out(`  [${s.actor}] ${s.op} → ${toJson(s.outcome)}`);
      }
    } else {
      const pr = progress === false ? null : progressReporter(io, mode);
      if (pr) {
        opts.onProgress = pr.report;
        opts.progressIntervalMs = pr.interval;
      }
      if (workers !== undefined && workers > 1) {
        const source = builtin !== undefined ? { builtin } : { file: file! };
        const { onProgress: _p, ...plain } = opts;
        void _p;
        result = await exploreWorkers(source, plain, workers, {
          name,
          ...(shardDepth !== undefined && { shardDepth }),
          ...(pr && { onProgress: pr.report, progressIntervalMs: pr.interval }),
        });
      } else result = reportToJson(explore(scenario, opts, name), bound);
    }
  } catch (e) {
    io.err(`${io.color.red('error')} ${(e as Error).message}`);
    return EXIT_INVALID;
  }
  if (json) io.out(toJson(result));
  else printSummary(io, result, o);
  if (report !== undefined) writeExploreReport(io, scenario, opts, result, report, { name, ...(file !== undefined && { file }), ...(replay !== undefined && { schedule: replay }) });
  return exitCodeOf(result);
}

/** a non-negative integer option value */
function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('needs a non-negative integer');
  return n;
}

function positive(v: string): number {
  const n = count(v);
  if (n < 1) throw new InvalidArgumentError('needs a positive integer');
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
    .option('--bound <N>', 'scheduled phases per run (exhaustive: depth bound; default 64)', count)
    .option('--seed <S>', 'PRNG seed (random, pct)', count)
    .option('--schedules <N>', 'runs (random, pct) or a cap on runs (exhaustive)', count)
    .option('--depth <D>', 'pct bug depth (D - 1 priority change points)', count)
    .addOption(new Option('--reduction <r>', 'exhaustive: dpor (default: backtrack sets below the shard depth + sleep sets) or sleep (sleep sets alone)').choices(['sleep', 'dpor']))
    .option('--time <duration>', 'stop after this long (90, 30s, 5m, 1h30m); the summary then says "incomplete"', parseDuration)
    .option('--max-schedules <N>', 'stop after N runs; the summary then says "incomplete"', positive)
    .option('--shard <K/N>', 'exhaustive: explore only shard K of N (merge the --json results with ccmem merge)', parseShard)
    .option('--shard-depth <D>', 'prefix length whose subtrees are dealt out to the shards (default 4)', positive)
    .option('--workers <N>', 'exhaustive: run N shards in worker threads and merge them', positive)
    .option('--no-progress', 'no progress lines on stderr')
    .option('--replay <schedule>', 'rerun one schedule ("vmm.cpu0.cpu0…") and print its events')
    .option('--skip-retry-check', 'fault injection: skip mmu_invalidate_retry_gfn under mmu_lock')
    .option('--json', 'print one JSON document')
    .option('--report <file>', 'write a self-contained HTML report: the counterexample (or the --replay schedule) phase by phase, one swimlane per actor, with the state after each phase')
    .action(async (file: string | undefined, opts: ExploreCommandOptions) => done(await exploreCommand(io, file, opts)));
}
