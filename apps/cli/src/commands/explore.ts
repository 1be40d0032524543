/**
 * `ccmem explore <file> | --builtin <name>`: deterministic exploration of the interleavings of a
 * scenario's `concurrent:` block (docs/explore.md). The file's `explore: expect:` (or --expect)
 * says what the search must find: `pass` (the default: a complete search without violation),
 * `violation`, or `livelock`. Exit 0 the result is the expected one, 1 it is not, 2 invalid,
 * 3 incomplete (stopped by --time or --max-schedules, nothing found).
 */
import {
  explore,
  exploreWorkers,
  loadBuiltinExploration,
  loadExplorationFileWithin,
  replaySchedule,
  reportToJson,
  type ExploreOptions,
  type ExploreProgress,
  type ExploreResultJson,
} from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import pc from 'picocolors';
import type { ReportOptions } from '../define/options.js';
import type { ReportCase } from '../report/cases.js';
import { emitReport, jsonOnStdout, reportUsageError, textOnStdout } from '../report/emit.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, invalid, reportInvalid, toJson } from './shared.js';
import { writeExploreReport } from './report.js';

export { parseDuration, parseShard } from '../define/options.js';

const noColor = pc.createColors(false);

/** no violation found, but the search stopped before it was complete (proves nothing) */
export const EXIT_INCOMPLETE = 3;

/** what an exploration must find (`explore: expect:` in the file, or --expect) */
export type ExploreExpectation = 'pass' | 'violation' | 'livelock';

export interface ExploreCommandOptions extends ReportOptions {
  builtin?: string;
  expect?: ExploreExpectation;
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

/** how many kernel events of a counterexample the text summary prints (a livelock has thousands) */
const EVENTS_SHOWN = 40;

/** whether a result is what was expected: 'yes', 'no', or 'incomplete' (nothing found, search not done) */
export function verdictOf(r: ExploreResultJson, expect: ExploreExpectation = 'pass'): 'yes' | 'no' | 'incomplete' {
  if (r.result === 'incomplete') return 'incomplete';
  if (expect === 'pass') return r.result === 'pass' ? 'yes' : 'no';
  if (r.result !== 'violation') return 'no';
  return expect === 'violation' || r.violations.some((v) => v.violation.startsWith('livelock:')) ? 'yes' : 'no';
}

/** one line: what was expected and whether it came */
function expectationLine(r: ExploreResultJson, expect: ExploreExpectation): string | null {
  const v = verdictOf(r, expect);
  if (expect === 'pass') return v === 'no' ? 'expected no violation (explore: expect: pass)' : null;
  if (v === 'yes') return `found the expected ${expect} (explore: expect: ${expect})`;
  if (v === 'incomplete') return `expected a ${expect}: none in the schedules explored, and the search did not finish`;
  return r.result === 'pass' ? `expected a ${expect} (explore: expect: ${expect}), but the complete search found none` : `expected a ${expect}, found another violation`;
}

/** the text summary of an exploration result (explore and merge) */
export function printSummary(io: CliIo, r: ExploreResultJson, o: ExploreCommandOptions = {}, expect: ExploreExpectation = 'pass'): void {
  const c = io.color;
  const s = r.stats;
  const v = verdictOf(r, expect);
  const mark = v === 'yes' ? c.green('✓') : v === 'no' ? c.red('✗') : c.yellow('?');
  const what = r.mode === 'exhaustive' ? (r.complete ? 'complete' : r.stopReason === 'violations' ? 'stopped at the first violation' : c.yellow(`INCOMPLETE (${stopText(r, o)})`)) : r.complete ? 'all runs' : c.yellow(`stopped early (${stopText(r, o)})`);
  const shard = r.shard ? `, shard ${r.shard.index + 1}/${r.shard.count}` : r.shards !== undefined ? `, ${r.shards} shards merged` : '';
  io.out(`${mark} ${r.name}: ${r.mode}${r.bound !== undefined ? ` bound ${r.bound}` : ''}${shard}, ${what}: ${r.schedules} schedules, ${s.steps} steps, ${seconds(s.elapsedMs)}`);
  const said = expectationLine(r, expect);
  if (said) io.out(`    ${v === 'yes' ? c.green(said) : c.red(said)}`);
  if (r.result === 'incomplete') io.out(`    no violation in the schedules explored; the search did not finish, so this is not a pass`);
  for (const [k, n] of Object.entries(s.observations)) io.out(`    observed ${k} in ${n} schedules`);
  if (s.vendorFaultRuns) io.out(`    vendor #NPFs (RMP faults) in ${s.vendorFaultRuns} schedules`);
  for (const x of r.violations) {
    io.out(`    ${v === 'yes' ? c.yellow('violation') : c.red('violation')}: ${x.violation}`);
    io.out(`    schedule: ${x.schedule || '(empty: the deterministic completion alone)'}  ${c.dim(`(ccmem explore … --replay '${x.schedule}')`)}`);
    for (const e of x.events.slice(0, EVENTS_SHOWN)) io.out(`      ${e.name} ${toJson(e.fields)}`);
    if (x.events.length > EVENTS_SHOWN) io.out(c.dim(`      … ${x.events.length - EVENTS_SHOWN} more kernel events (all of them with --json, or --replay '${x.schedule}')`));
  }
}

/** 0 the expected result, 1 another one, 3 incomplete */
export function exitCodeOf(r: ExploreResultJson, expect: ExploreExpectation = 'pass'): number {
  const v = verdictOf(r, expect);
  return v === 'yes' ? EXIT_OK : v === 'no' ? EXIT_FAIL : EXIT_INCOMPLETE;
}

/** the `--json` document: the explorer's result, what was expected and whether it came */
export function exploreJson(r: ExploreResultJson, expect: ExploreExpectation) {
  return { ...r, expect, as_expected: verdictOf(r, expect) === 'yes' };
}

export async function exploreCommand(io: CliIo, file: string | undefined, o: ExploreCommandOptions): Promise<number> {
  const usage = reportUsageError(o);
  if (usage) return invalid(io, usage);
  if ((file === undefined) === (o.builtin === undefined)) return invalid(io, 'give an exploration file or --builtin <name> (ccmem help explore)');
  const { builtin, replay, json: jsonFlag, skipRetryCheck, time, maxSchedules, shard, shardDepth, workers, progress, reporter, output, expect: expectFlag, report, ...search } = o;
  const json = jsonOnStdout(o);
  const text = textOnStdout(o);
  // a file a user names is read within the read timeout (a hung mount is an error); the
  // workers get its text
  const loaded: Awaited<ReturnType<typeof loadExplorationFileWithin>> = builtin !== undefined ? loadBuiltinExploration(builtin) : await loadExplorationFileWithin(file!);
  if (!loaded.ok) return reportInvalid(io, loaded.errors, json);
  const { scenario, options, header } = loaded.exploration;
  const expect: ExploreExpectation = expectFlag ?? header.expect ?? 'pass';
  const opts: ExploreOptions = { ...options, ...search, ...(skipRetryCheck && { faultInjection: { skipRetryCheck: true } }) };
  const mode = opts.mode ?? 'exhaustive';
  if (time !== undefined) opts.timeLimitMs = time;
  if (maxSchedules !== undefined) opts.schedules = Math.min(opts.schedules ?? Infinity, maxSchedules);
  if ((shard !== undefined || workers !== undefined) && mode !== 'exhaustive') return invalid(io, `--shard and --workers partition the exhaustive search (this exploration is ${mode})`);
  if (shard !== undefined && workers !== undefined) return invalid(io, 'give --shard or --workers, not both');
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
      if (text) {
        for (const e of r.events) io.out(`  ${e.name} ${toJson(e.fields)}`);
        for (const s of r.records) io.out(`  [${s.actor}] ${s.op} → ${toJson(s.outcome)}`);
      }
    } else {
      const pr = progress === false ? null : progressReporter(io, mode);
      if (pr) {
        // say at once what is being searched: the first progress line comes only later
        const actors = Object.keys(scenario.concurrent?.actors ?? {}).length;
        const how = mode === 'exhaustive' ? `exhaustive, bound ${bound}${workers !== undefined && workers > 1 ? `, ${workers} workers` : ''}${shard ? `, shard ${shard.index + 1}/${shard.count}` : ''}` : `${mode}, ${opts.schedules ?? 'default'} runs`;
        io.err(`explore: ${name}: ${how}, ${actors} actors, expecting ${expect}${time !== undefined ? `, at most ${seconds(time)}` : ''}`);
        opts.onProgress = pr.report;
        opts.progressIntervalMs = pr.interval;
      }
      if (workers !== undefined && workers > 1) {
        const source = builtin !== undefined ? { builtin } : loaded.text !== undefined ? { file: file!, text: loaded.text } : { file: file! };
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
    return invalid(io, (e as Error).message);
  }
  const doc = () => toJson(exploreJson(result, expect));
  if (jsonFlag) io.out(doc());
  else if (text) printSummary(io, result, o, expect);
  const ok = emitReport(io, o, 'ccmem explore', () => [exploreCase(result, expect, builtin !== undefined ? `builtin/${builtin}` : file!, o)], doc);
  if (!ok) return EXIT_INVALID;
  if (report !== undefined) writeExploreReport(io, scenario, opts, result, report, { name, ...(file !== undefined && { file }), ...(replay !== undefined && { schedule: replay }) });
  return exitCodeOf(result, expect);
}

/** the report case of an exploration */
function exploreCase(r: ExploreResultJson, expect: ExploreExpectation, source: string, o: ExploreCommandOptions): ReportCase {
  const v = verdictOf(r, expect);
  const base = { suite: 'ccmem explore', classname: source, name: `${r.name} (${r.mode}, expect ${expect})`, timeMs: r.stats.elapsedMs };
  if (v === 'yes') return { ...base, status: 'pass' };
  const lines: string[] = [];
  printSummary({ out: (t) => void lines.push(t), err: () => {}, isTTY: false, color: noColor }, r, o, expect);
  const message = v === 'incomplete' ? `incomplete (${stopText(r, o)}): no violation in ${r.schedules} schedules, but the search did not finish` : (expectationLine(r, expect) ?? r.violations[0]?.violation ?? 'failed');
  return { ...base, status: 'fail', message: expect === 'pass' && r.violations[0] ? r.violations[0].violation : message, details: lines.join('\n') };
}
