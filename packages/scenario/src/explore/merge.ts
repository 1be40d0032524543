/**
 * Combining the reports of the shards of one exhaustive exploration (`ccmem explore --shard K/N
 * --json`, `ccmem merge`, `--workers N`) into one report. The shards partition the schedule
 * space (ShardSpec), so counts add up; the merged search is complete when every shard of the
 * partition is present and complete. Of the counterexamples the shards found (each already
 * shrunk by its shard), the shortest is kept.
 */
import type { ExploreReport, ExploreStats, ExploreViolation, StopReason } from './engine.js';
import type { ExploreMode } from './types.js';

/** The JSON document `ccmem explore --json` prints and `ccmem merge` reads. */
export interface ExploreResultJson {
  name: string;
  mode: ExploreMode;
  schedules: number;
  violations: { schedule: string; violation: string; events: ExploreViolation['events']; original?: string }[];
  /** no violation and the search was complete */
  pass: boolean;
  /** the whole search (every shard, when merged) was explored */
  complete: boolean;
  /** pass: complete without violation; violation: at least one; incomplete: neither (proves nothing) */
  result: 'pass' | 'violation' | 'incomplete';
  stopReason: StopReason;
  bound?: number;
  /** the shard this result covers (0-based index); merged results have none */
  shard?: { index: number; count: number; depth: number };
  /** merged results: how many shard results went in */
  shards?: number;
  stats: Omit<ExploreStats, 'complete' | 'stopReason'>;
}

export function resultOf(pass: boolean, complete: boolean): ExploreResultJson['result'] {
  return !pass ? 'violation' : complete ? 'pass' : 'incomplete';
}

/** the --json document of a report */
export function reportToJson(report: ExploreReport, bound?: number): ExploreResultJson {
  const { complete, stopReason, ...stats } = report.stats;
  return {
    name: report.name,
    mode: report.mode,
    schedules: report.schedules,
    violations: report.violations.map((v) => ({ schedule: v.schedule, violation: v.violation, events: v.events, ...(v.original !== undefined && { original: v.original }) })),
    pass: report.pass && complete,
    complete,
    result: resultOf(report.pass, complete),
    stopReason,
    ...(bound !== undefined && { bound }),
    ...(report.shard && { shard: report.shard }),
    stats,
  };
}

/** phases in a schedule string ("" is the empty schedule) */
function scheduleLength(s: string): number {
  return s === '' ? 0 : s.split('.').length;
}

/** shortest first, then by text: a deterministic choice whatever the shards' order */
export function shortestFirst(a: { schedule: string }, b: { schedule: string }): number {
  return scheduleLength(a.schedule) - scheduleLength(b.schedule) || (a.schedule < b.schedule ? -1 : a.schedule > b.schedule ? 1 : 0);
}

/**
 * Merge shard results of one exploration. Throws when they do not belong together (other
 * name, mode, bound or partition, the same shard twice).
 */
export function mergeResults(parts: readonly ExploreResultJson[]): ExploreResultJson {
  if (parts.length === 0) throw new Error('nothing to merge');
  const first = parts[0]!;
  const count = first.shard?.count ?? 1;
  const depth = first.shard?.depth;
  const seen = new Set<number>();
  for (const p of parts) {
    if (p.name !== first.name) throw new Error(`results of different explorations: "${first.name}" and "${p.name}"`);
    if (p.mode !== 'exhaustive') throw new Error(`${p.name}: only exhaustive results can be merged (this one is ${p.mode})`);
    if (p.bound !== first.bound) throw new Error(`${p.name}: results with different bounds (${first.bound} and ${p.bound})`);
    if (p.shards !== undefined) throw new Error(`${p.name}: a result is already merged`);
    const c = p.shard?.count ?? 1;
    if (c !== count || p.shard?.depth !== depth) throw new Error(`${p.name}: results of different partitions (${count} and ${c} shards)`);
    const i = p.shard?.index ?? 0;
    if (seen.has(i)) throw new Error(`${p.name}: shard ${i + 1}/${count} given twice`);
    seen.add(i);
  }
  const stats: ExploreResultJson['stats'] = { steps: 0, elapsedMs: 0, stepsPerSecond: 0, sleepBlocked: 0, observations: {}, vendorFaultRuns: 0, violatingRuns: 0 };
  let schedules = 0;
  let skipped = 0;
  for (const p of parts) {
    schedules += p.schedules;
    stats.steps += p.stats.steps;
    // the shards ran in parallel: the wall time is the slowest shard's, the rate their sum
    stats.elapsedMs = Math.max(stats.elapsedMs, p.stats.elapsedMs);
    stats.stepsPerSecond += p.stats.stepsPerSecond;
    stats.sleepBlocked += p.stats.sleepBlocked;
    stats.vendorFaultRuns += p.stats.vendorFaultRuns;
    stats.violatingRuns += p.stats.violatingRuns;
    skipped += p.stats.skippedPrefixes ?? 0;
    for (const [k, n] of Object.entries(p.stats.observations)) stats.observations[k] = (stats.observations[k] ?? 0) + n;
  }
  if (count > 1) stats.skippedPrefixes = skipped;
  const violations = parts.flatMap((p) => p.violations).sort(shortestFirst).slice(0, 1);
  const complete = seen.size === count && parts.every((p) => p.complete);
  const pass = violations.length === 0;
  const stopReason: StopReason = complete ? 'complete' : (parts.find((p) => !p.complete)?.stopReason ?? 'shards-missing');
  return {
    name: first.name,
    mode: 'exhaustive',
    schedules,
    violations,
    pass: pass && complete,
    complete,
    result: resultOf(pass, complete),
    stopReason,
    ...(first.bound !== undefined && { bound: first.bound }),
    shards: parts.length,
    stats,
  };
}

/** the missing shards of a partition, 1-based as `--shard K/N` names them */
export function missingShards(parts: readonly ExploreResultJson[]): string[] {
  const count = parts[0]?.shard?.count ?? 1;
  const have = new Set(parts.map((p) => p.shard?.index ?? 0));
  const out: string[] = [];
  for (let i = 0; i < count; i++) if (!have.has(i)) out.push(`${i + 1}/${count}`);
  return out;
}

/** a report (engine form) from merged results, for code that wants ExploreReport */
export function mergeReports(reports: readonly ExploreReport[], bound?: number): ExploreResultJson {
  return mergeResults(reports.map((r) => reportToJson(r, bound)));
}
