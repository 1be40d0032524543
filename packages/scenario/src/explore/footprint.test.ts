import { describe, expect, it } from 'vitest';
import { builtinExplorationNames, explore, loadBuiltinExploration } from '../index.js';
import { hugeRange } from './footprint.js';
import { independent, SHARED_INVALIDATE } from './types.js';
import { World } from './world.js';

function load(name: string) {
  const l = loadBuiltinExploration(name);
  if (!l.ok) throw new Error(l.errors.map((e) => e.message).join('\n'));
  return l.exploration;
}

describe('independence', () => {
  it('disjoint pages commute; shared invalidation state written by one side does not', () => {
    expect(independent({ lo: 0, hi: 1, global: false }, { lo: 1, hi: 2, global: false })).toBe(true);
    expect(independent({ lo: 0, hi: 2, global: false }, { lo: 1, hi: 2, global: false })).toBe(false);
    expect(independent({ lo: 0, hi: 1, global: false, reads: SHARED_INVALIDATE }, { lo: 5, hi: 6, global: false, writes: SHARED_INVALIDATE })).toBe(false);
    expect(independent({ lo: 0, hi: 1, global: false, reads: SHARED_INVALIDATE }, { lo: 5, hi: 6, global: false, reads: SHARED_INVALIDATE })).toBe(true);
    expect(independent({ lo: 0, hi: 1, global: true }, { lo: 5, hi: 6, global: false })).toBe(false);
  });

  it('hugeRange: 2 MiB around the ends, 1 GiB where the 1 GiB page lies inside the memslot', () => {
    const x = load('fault-vs-conversion-4vcpu');
    const w = new World(x.scenario);
    try {
      // the slot is 4 MiB at gfn 0x100000: no 1 GiB page fits
      expect(hugeRange(w.vm, 0x100001, 0x100002)).toEqual({ lo: 0x100000, hi: 0x100200, global: false });
      expect(hugeRange(w.vm, 0x1001ff, 0x100201)).toEqual({ lo: 0x100000, hi: 0x100400, global: false });
    } finally {
      w.dispose();
    }
    const big = {
      ...x.scenario,
      steps: x.scenario.steps.map((s) =>
        s.op === 'mmap' || s.op === 'create_guest_memfd'
          ? { ...s, args: { ...s.args, size: 0x40000000 } }
          : s.op === 'set_user_memory_region2'
            ? { ...s, args: { ...s.args, memory_size: 0x40000000 } }
            : s,
      ),
    } as typeof x.scenario;
    const wb = new World(big);
    try {
      expect(hugeRange(wb.vm, 0x100001, 0x100002)).toEqual({ lo: 0x100000, hi: 0x140000, global: false });
    } finally {
      wb.dispose();
    }
  });
});

describe('page-granular footprints', () => {
  const runs = builtinExplorationNames().map((name) => {
    const x = load(name);
    return { name, x };
  });

  for (const { name, x } of runs) {
    it(`${name}: no more schedules than with 2 MiB footprints, and the same verdict`, () => {
      // sleep sets alone: the footprints' own effect
      const page = explore(x.scenario, { ...x.options, reduction: 'sleep' });
      const coarse = explore(x.scenario, { ...x.options, reduction: 'sleep', coarseFootprints: true });
      expect(page.schedules).toBeLessThanOrEqual(coarse.schedules);
      expect(page.pass).toBe(coarse.pass);
      expect(page.pass).toBe((x.header.expect ?? 'pass') === 'pass');
      expect(Object.keys(page.stats.observations).sort()).toEqual(Object.keys(coarse.stats.observations).sort());
      if (name === 'fault-vs-conversion-4vcpu') expect(page.schedules * 2).toBeLessThan(coarse.schedules);
    });
  }

  // the mutation switch: every distinct violation the coarse search found is still found
  for (const name of ['fault-vs-conversion', 'gmem-punch-vs-fault', 'fault-vs-conversion-4vcpu']) {
    it(`${name} with skipRetryCheck: the same distinct violations as with 2 MiB footprints`, () => {
      const x = load(name);
      const o = { ...x.options, reduction: 'sleep' as const, faultInjection: { skipRetryCheck: true }, maxViolations: Infinity, shrink: false };
      const page = explore(x.scenario, o);
      const coarse = explore(x.scenario, { ...o, coarseFootprints: true });
      expect(page.pass).toBe(false);
      const kinds = (r: typeof page) => [...new Set(r.violations.map((v) => v.violation))].sort();
      expect(kinds(page)).toEqual(kinds(coarse));
      expect(page.schedules).toBeLessThanOrEqual(coarse.schedules);
    });
  }
});
