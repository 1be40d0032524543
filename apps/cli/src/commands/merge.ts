/**
 * `ccmem merge <result.json...>`: combine the `--json` results of the shards of one exhaustive
 * exploration (`ccmem explore --shard K/N --json`) into one report with one (the shortest)
 * counterexample (docs/explore.md). Exit codes as `ccmem explore`: 0 complete without violation,
 * 1 violation, 2 invalid input, 3 incomplete (a shard missing or stopped early).
 */
import { DEFAULT_READ_TIMEOUT_MS, mergeResults, missingShards, readFilesBounded, type ExploreResultJson } from '@ccmem/scenario';
import type { CliIo } from '../io.js';
import { inputLimits, invalid, toJson } from './shared.js';
import { exitCodeOf, exploreJson, printSummary, type ExploreExpectation } from './explore.js';

export async function mergeCommand(io: CliIo, files: readonly string[], o: { json?: boolean; readTimeout?: string }): Promise<number> {
  const parts: ExploreResultJson[] = [];
  const limits = inputLimits({ readTimeout: o.readTimeout });
  if (typeof limits === 'string') return invalid(io, limits);
  // each input read within the read timeout (a pipe such as <(cat a.json) is fine; a FIFO
  // without writer or a hung mount is an error)
  const texts = await readFilesBounded(files, {
    maxBytes: Infinity,
    timeoutMs: limits.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
    regularOnly: false,
    timeoutOption: '--read-timeout',
  });
  for (const r of texts) {
    const f = r.path;
    if ('error' in r) return invalid(io, `${f}: ${r.error}`);
    let doc: unknown;
    try {
      doc = JSON.parse(r.text);
    } catch (e) {
      return invalid(io, `${f}: ${(e as Error).message}`);
    }
    const d = doc as Partial<ExploreResultJson>;
    if (typeof d !== 'object' || d === null || typeof d.name !== 'string' || typeof d.schedules !== 'number' || !Array.isArray(d.violations) || typeof d.stats !== 'object') {
      return invalid(io, `${f}: not a result of ccmem explore --json`);
    }
    parts.push(d as ExploreResultJson);
  }
  let merged: ExploreResultJson;
  try {
    merged = mergeResults(parts);
  } catch (e) {
    return invalid(io, (e as Error).message);
  }
  const missing = missingShards(parts);
  if (missing.length) io.err(`${io.color.yellow('warning')} shards missing: ${missing.join(', ')}`);
  // the shards' `expect` (ccmem explore --json writes it): what the exploration must find
  const expect = (parts.map((p) => (p as { expect?: unknown }).expect).find((e) => e === 'pass' || e === 'violation' || e === 'livelock') ?? 'pass') as ExploreExpectation;
  if (o.json) io.out(toJson(exploreJson(merged, expect)));
  else printSummary(io, merged, {}, expect);
  return exitCodeOf(merged, expect);
}
