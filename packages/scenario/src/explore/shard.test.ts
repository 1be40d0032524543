import { describe, expect, it } from 'vitest';
import { builtinExplorationNames, explore, loadBuiltinExploration, mergeReports, type ExploreProgress, type ExploreReport } from '../index.js';
import { exploreWorkers } from './workers.js';

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(l.errors.map((e) => e.message).join('\n'));
  return l.exploration;
}

/** the parts of a result that must not depend on how the search was split */
function summary(r: { schedules: number; stats: ExploreReport['stats'] | ReturnType<typeof mergeReports>['stats'] }) {
  const s = r.stats;
  return { schedules: r.schedules, steps: s.steps, sleepBlocked: s.sleepBlocked, observations: s.observations, vendorFaultRuns: s.vendorFaultRuns, violatingRuns: s.violatingRuns };
}

describe('limits and progress', () => {
  it('a schedule limit stops the exhaustive search: incomplete, with the reason', () => {
    const x = load('fault-vs-conversion');
    const r = explore(x.scenario, { ...x.options, schedules: 50 });
    expect(r.schedules).toBe(50);
    expect(r.stats.complete).toBe(false);
    expect(r.stats.stopReason).toBe('max-schedules');
    const t = explore(x.scenario, { ...x.options, timeLimitMs: 0 });
    expect(t.stats.complete).toBe(false);
    expect(t.stats.stopReason).toBe('time');
    const full = explore(x.scenario, x.options);
    expect(full.stats.complete).toBe(true);
    expect(full.stats.stopReason).toBe('complete');
  });

  it('progress reports schedules, steps/s and the frontier, and a final one when done', () => {
    const x = load('fault-vs-conversion');
    const seen: ExploreProgress[] = [];
    const r = explore(x.scenario, { ...x.options, progressIntervalMs: 0, onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(100);
    expect(seen.at(-1)!.done).toBe(true);
    expect(seen.some((p) => p.frontier > 0 && p.stepsPerSecond > 0)).toBe(true);
    const mid = seen[Math.floor(seen.length / 2)]!;
    expect(mid.schedules).toBeGreaterThan(0);
    expect(mid.schedules).toBeLessThan(r.schedules);
  });
});

describe('shards', () => {
  for (const name of builtinExplorationNames()) {
    const x = load(name);
    if ((x.header.expect ?? 'pass') !== 'pass') continue;
    it(`${name}: the shards' runs add up to exactly the unsharded search`, () => {
      const whole = explore(x.scenario, x.options);
      expect(whole.stats.complete).toBe(true);
      for (const count of [2, 3]) {
        const parts = Array.from({ length: count }, (_, index) => explore(x.scenario, { ...x.options, shard: { index, count } }));
        for (const p of parts) expect(p.stats.complete).toBe(true);
        const merged = mergeReports(parts, x.options.bound);
        expect(merged.complete).toBe(true);
        expect(merged.result).toBe('pass');
        expect(summary(merged)).toEqual(summary(whole));
      }
    });
  }

  it('fault-vs-conversion with skipRetryCheck: every violating run is in exactly one shard; merged keeps the shortest counterexample', () => {
    const x = load('fault-vs-conversion');
    const o = { ...x.options, faultInjection: { skipRetryCheck: true }, maxViolations: Infinity, shrink: false };
    const whole = explore(x.scenario, o);
    const parts = [0, 1, 2].map((index) => explore(x.scenario, { ...o, shard: { index, count: 3 } }));
    const merged = mergeReports(parts, x.options.bound);
    expect(summary(merged)).toEqual(summary(whole));
    expect(merged.stats.violatingRuns).toBeGreaterThan(0);
    expect(merged.result).toBe('violation');
    expect(merged.violations).toHaveLength(1);
    const len = (s: string) => (s === '' ? 0 : s.split('.').length);
    const shortest = Math.min(...whole.violations.map((v) => len(v.schedule)));
    expect(len(merged.violations[0]!.schedule)).toBe(shortest);
    // the default (stop at the first violation, shrink it) finds one in some shard too
    const first = [0, 1, 2].map((index) => explore(x.scenario, { ...x.options, faultInjection: { skipRetryCheck: true }, shard: { index, count: 3 } }));
    expect(mergeReports(first, x.options.bound).result).toBe('violation');
  });

  it('a missing shard leaves the merged search incomplete', () => {
    const x = load('gmem-punch-vs-fault');
    const parts = [0, 1].map((index) => explore(x.scenario, { ...x.options, shard: { index, count: 3 } }));
    const m = mergeReports(parts, x.options.bound);
    expect(m.complete).toBe(false);
    expect(m.result).toBe('incomplete');
    expect(m.stopReason).toBe('shards-missing');
    expect(() => mergeReports([parts[0]!, parts[0]!], x.options.bound)).toThrow(/given twice/);
  });

  it('rejects a shard outside the partition', () => {
    const x = load('gmem-punch-vs-fault');
    expect(() => explore(x.scenario, { ...x.options, shard: { index: 3, count: 3 } })).toThrow(/1 <= K <= N/);
  });
});

describe('workers', () => {
  it('snp-rmp-timing with 2 worker threads: the same result as one thread', async () => {
    const x = load('snp-rmp-timing');
    const whole = explore(x.scenario, x.options);
    const seen: ExploreProgress[] = [];
    const w = await exploreWorkers({ builtin: 'snp-rmp-timing' }, x.options, 2, { onProgress: (p) => seen.push(p), progressIntervalMs: 0 });
    expect(w.complete).toBe(true);
    expect(w.shards).toBe(2);
    expect(summary(w)).toEqual(summary(whole));
    expect(seen.at(-1)!.done).toBe(true);
  });

  it('a violation found in a worker comes back shrunk', async () => {
    const x = load('gmem-punch-vs-fault');
    const w = await exploreWorkers({ builtin: 'gmem-punch-vs-fault' }, { ...x.options, faultInjection: { skipRetryCheck: true } }, 2);
    expect(w.result).toBe('violation');
    expect(w.violations[0]!.violation).toMatch(/SPTE gfn .* maps pfn/);
  });
});
