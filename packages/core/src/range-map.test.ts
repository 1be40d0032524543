import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KEY_LIMIT, RangeMap } from './range-map.js';

/** Runs as [start, end, value] triples over the whole key space. */
function runs(m: RangeMap): [number, number, number][] {
  const out: [number, number, number][] = [];
  m.forEachRun(0, KEY_LIMIT, (s, e, v) => out.push([s, e, v]));
  return out;
}

describe('RangeMap', () => {
  it('starts as one run with the default value', () => {
    const m = new RangeMap();
    expect(m.runCount).toBe(1);
    expect(m.get(0)).toBe(0);
    expect(m.get(KEY_LIMIT - 1)).toBe(0);
    expect(m.rangeHasValue(0, KEY_LIMIT, 0)).toBe(true);
    expect(m.hasBoundaryIn(0, KEY_LIMIT)).toBe(false);
  });

  it('splits, reports boundaries and coalesces back', () => {
    const m = new RangeMap();
    expect(m.set(10, 20, 8)).toBe(true);
    expect(runs(m)).toEqual([
      [0, 10, 0],
      [10, 20, 8],
      [20, KEY_LIMIT, 0],
    ]);
    expect(m.set(12, 15, 8)).toBe(false);
    expect(m.hasBoundaryIn(0, 10)).toBe(false);
    expect(m.hasBoundaryIn(0, 11)).toBe(true);
    expect(m.hasBoundaryIn(10, 20)).toBe(false);
    expect(m.hasBoundaryIn(10, 21)).toBe(true);
    expect(m.rangeHasValue(10, 20, 8)).toBe(true);
    expect(m.rangeHasValue(9, 20, 8)).toBe(false);
    expect(m.set(20, 30, 8)).toBe(true);
    expect(m.runCount).toBe(3);
    expect(m.set(0, 10, 8)).toBe(true);
    expect(runs(m)).toEqual([
      [0, 30, 8],
      [30, KEY_LIMIT, 0],
    ]);
    expect(m.set(0, KEY_LIMIT, 0)).toBe(true);
    expect(m.runCount).toBe(1);
  });

  it('converts a 4 TiB range with a constant number of runs', () => {
    const m = new RangeMap();
    const pages4T = 2 ** 30; // 4 TiB of 4 KiB pages
    m.set(2 ** 20, 2 ** 20 + pages4T, 8);
    expect(m.runCount).toBe(3);
    expect(m.get(2 ** 20 + pages4T - 1)).toBe(8);
    expect(m.get(2 ** 20 + pages4T)).toBe(0);
    // keys above 2^32 use full-precision arithmetic
    m.set(2 ** 45, 2 ** 45 + 1, 3);
    expect(m.get(2 ** 45)).toBe(3);
    expect(m.get(2 ** 45 + 1)).toBe(0);
    expect(m.get(2 ** 45 - 1)).toBe(0);
  });

  it('seekRun gives the run around a key, which answers hasBoundaryIn for every range around it', () => {
    const m = new RangeMap();
    let seed = 3;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let i = 0; i < 300; i++) {
      const s = rnd(5000);
      m.set(s, s + 1 + rnd(20), rnd(3));
    }
    const all = runs(m);
    for (let q = 0; q < 2000; q++) {
      const key = rnd(5100);
      const v = m.seekRun(key);
      const run = all.find(([s, e]) => s <= key && key < e)!;
      expect([m.runStart, m.runEnd, v]).toEqual(run);
      const lo = key - rnd(40);
      const hi = key + 1 + rnd(40);
      if (lo >= 0) expect(m.runStart > lo || m.runEnd < hi).toBe(m.hasBoundaryIn(lo, hi));
    }
    m.seekRun(KEY_LIMIT - 1);
    expect(m.runEnd).toBe(KEY_LIMIT);
  });

  it('clone is independent', () => {
    const m = new RangeMap();
    m.set(5, 6, 1);
    const c = m.clone();
    c.set(5, 6, 0);
    expect(m.get(5)).toBe(1);
    expect(c.get(5)).toBe(0);
    expect(c.runCount).toBe(1);
  });

  it('rejects ranges outside [0, 2^53)', () => {
    const m = new RangeMap();
    expect(() => m.set(-1, 3, 1)).toThrow(RangeError);
    expect(() => m.set(0, KEY_LIMIT + 2, 1)).toThrow(RangeError);
  });

  it('forEachRun clips to the requested range', () => {
    const m = new RangeMap();
    m.set(4, 8, 2);
    const got: [number, number, number][] = [];
    m.forEachRun(6, 10, (s, e, v) => got.push([s, e, v]));
    expect(got).toEqual([
      [6, 8, 2],
      [8, 10, 0],
    ]);
  });

  /**
   * Model test against a per-key reference. Keys [0, N) are tracked one by one; key N stands
   * for every key >= N (only `end = KEY_LIMIT` sets reach it).
   */
  it('agrees with a per-key reference under random operations', () => {
    const N = 48;
    const key = fc.integer({ min: 0, max: N });
    const end = fc.oneof(fc.integer({ min: 0, max: N }), fc.constant(KEY_LIMIT));
    const val = fc.integer({ min: 0, max: 3 });
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), a: key, b: end, v: val }),
      fc.record({ kind: fc.constant('has' as const), a: key, b: end, v: val }),
      fc.record({ kind: fc.constant('boundary' as const), a: key, b: end, v: val }),
      fc.record({ kind: fc.constant('clone' as const), a: key, b: end, v: val }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        let m = new RangeMap();
        const ref = new Map<number, number>();
        const refGet = (k: number): number => ref.get(Math.min(k, N)) ?? 0;
        const refKeys = (a: number, b: number): number[] => {
          const out: number[] = [];
          for (let k = a; k < Math.min(b, N + 1); k++) out.push(k);
          return out;
        };
        for (const o of ops) {
          const a = o.a;
          const b = o.b;
          if (o.kind === 'set') {
            const before = refKeys(a, b).some((k) => refGet(k) !== o.v);
            for (const k of refKeys(a, b)) ref.set(k, o.v);
            expect(m.set(a, b, o.v)).toBe(a < b && before);
          } else if (o.kind === 'has') {
            const want = refKeys(a, b).every((k) => refGet(k) === o.v);
            expect(m.rangeHasValue(a, b, o.v)).toBe(want);
          } else if (o.kind === 'boundary') {
            let want = false;
            for (let k = a + 1; k < Math.min(b, N + 1); k++) if (refGet(k) !== refGet(k - 1)) want = true;
            expect(m.hasBoundaryIn(a, b)).toBe(want);
          } else {
            m = m.clone();
          }
          // full comparison after every step
          let changes = 0;
          for (let k = 0; k <= N; k++) {
            expect(m.get(k)).toBe(refGet(k));
            if (k > 0 && refGet(k) !== refGet(k - 1)) changes++;
          }
          expect(m.get(KEY_LIMIT - 1)).toBe(refGet(N));
          expect(m.runCount).toBe(changes + 1);
          const rs = runs(m);
          for (let r = 1; r < rs.length; r++) expect(rs[r]![2]).not.toBe(rs[r - 1]![2]);
        }
      }),
      { numRuns: 400 },
    );
  });

  /**
   * The same against a per-key reference over 2000 keys with mostly single-key changes, so
   * the run tree grows to several levels and splits, borrows and merges (the per-page
   * conversion pattern of attributes.fragmented_random, in random order).
   */
  it('agrees with a per-key reference when fragmented into hundreds of runs', () => {
    const N = 2000;
    const op = fc.record({
      a: fc.integer({ min: 0, max: N - 1 }),
      len: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 40 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: N }) }),
      v: fc.integer({ min: 0, max: 2 }),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 200, maxLength: 1500 }), fc.array(fc.tuple(fc.nat(N), fc.nat(600)), { maxLength: 30 }), (ops, probes) => {
        const m = new RangeMap();
        const ref = new Int32Array(N + 1); // ref[N] stands for every key >= N
        for (const o of ops) {
          const b = Math.min(o.a + o.len, N);
          let changed = false;
          for (let k = o.a; k < b; k++) {
            if (ref[k] !== o.v) changed = true;
            ref[k] = o.v;
          }
          expect(m.set(o.a, b, o.v)).toBe(changed);
        }
        let changes = 0;
        for (let k = 0; k < N; k++) {
          expect(m.get(k)).toBe(ref[k]);
          if (k > 0 && ref[k] !== ref[k - 1]) changes++;
        }
        if (ref[N - 1] !== 0) changes++;
        expect(m.runCount).toBe(changes + 1);
        const rs = runs(m);
        expect(rs.length).toBe(m.runCount);
        for (let r = 1; r < rs.length; r++) expect(rs[r]![2]).not.toBe(rs[r - 1]![2]);
        for (const [a, len] of probes) {
          const b = a + len;
          let boundary = false;
          for (let k = a + 1; k < b; k++) if ((ref[Math.min(k, N)] ?? 0) !== (ref[Math.min(k - 1, N)] ?? 0)) boundary = true;
          expect(m.hasBoundaryIn(a, b)).toBe(boundary);
          const v = ref[Math.min(a, N)]!;
          let uniform = true;
          for (let k = a; k < b; k++) if (ref[Math.min(k, N)] !== v) uniform = false;
          expect(m.rangeHasValue(a, b, v)).toBe(uniform || a >= b);
        }
      }),
      { numRuns: 60 },
    );
  });
});
