import { describe, expect, it } from 'vitest';
import { builtinExplorationNames, explore, jsonReplacer, loadBuiltinExploration, type RunResult } from '../index.js';

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(l.errors.map((e) => e.message).join('\n'));
  return l.exploration;
}

/**
 * What one run reached: its violation message, or every actor's step outcomes. (A violating
 * run stops at the phase where the check fails, which differs between equivalent orders, so only
 * its message counts.)
 */
function outcome(r: RunResult): string | null {
  if (r.sleepBlocked) return null;
  if (r.violation !== null) return `violation: ${r.violation}`;
  const recs = r.records.map((x) => [x.actor, x.index, x.op, x.outcome] as const).sort((a, b) => a[1] - b[1]);
  return JSON.stringify(recs, jsonReplacer);
}

function reached(name: string, reduction: 'sleep' | 'dpor', mutated: boolean) {
  const x = load(name);
  const seen = new Set<string>();
  const r = explore(x.scenario, {
    ...x.options,
    reduction,
    maxViolations: Infinity,
    shrink: false,
    ...(mutated && { faultInjection: { skipRetryCheck: true } }),
    onRun: (run) => {
      const k = outcome(run);
      if (k !== null) seen.add(k);
    },
  });
  return { r, seen };
}

describe('DPOR (backtrack sets + sleep sets)', () => {
  for (const name of builtinExplorationNames()) {
    for (const mutated of [false, true]) {
      it(`${name}${mutated ? ' with skipRetryCheck' : ''}: no more schedules than sleep sets alone, and every outcome they reach`, () => {
        const sleep = reached(name, 'sleep', mutated);
        const dpor = reached(name, 'dpor', mutated);
        expect(dpor.r.stats.complete).toBe(sleep.r.stats.complete);
        expect(dpor.r.schedules).toBeLessThanOrEqual(sleep.r.schedules);
        expect([...dpor.seen].sort()).toEqual([...sleep.seen].sort());
        expect(Object.keys(dpor.r.stats.observations).sort()).toEqual(Object.keys(sleep.r.stats.observations).sort());
        if (name === 'fault-vs-conversion-4vcpu' && !mutated) expect(dpor.r.schedules).toBeLessThan(sleep.r.schedules * 0.8);
      });
    }
  }

  it('the default (stop at the first violation) still finds the mutation', () => {
    for (const name of ['fault-vs-conversion', 'gmem-punch-vs-fault', 'fault-vs-conversion-4vcpu']) {
      const x = load(name);
      const r = explore(x.scenario, { ...x.options, reduction: 'dpor', faultInjection: { skipRetryCheck: true } });
      expect(r.pass, name).toBe(false);
      expect(r.violations[0]!.violation).toMatch(/SPTE gfn .* maps pfn/);
    }
  });

  it('with shards: DPOR below the shard depth; the shards add up to the unsharded search with the same depth', () => {
    for (const name of ['fault-vs-conversion-4vcpu', 'gmem-punch-vs-fault']) {
      const x = load(name);
      for (const mutated of [false, true]) {
        const o = { ...x.options, reduction: 'dpor' as const, maxViolations: Infinity, shrink: false, ...(mutated && { faultInjection: { skipRetryCheck: true } }) };
        const whole = explore(x.scenario, { ...o, shard: { index: 0, count: 1 } });
        const parts = [0, 1, 2].map((index) => explore(x.scenario, { ...o, shard: { index, count: 3 } }));
        expect(parts.reduce((n, p) => n + p.schedules, 0)).toBe(whole.schedules);
        expect(parts.reduce((n, p) => n + p.stats.violatingRuns, 0)).toBe(whole.stats.violatingRuns);
        expect(parts.reduce((n, p) => n + p.stats.steps, 0)).toBe(whole.stats.steps);
        // still a reduction against sleep sets alone, and the same verdict
        const sleep = explore(x.scenario, { ...o, reduction: 'sleep' });
        expect(whole.schedules).toBeLessThanOrEqual(sleep.schedules);
        expect(whole.pass).toBe(sleep.pass);
      }
    }
  });
});
