import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IntervalTree } from './interval-tree.js';

describe('IntervalTree', () => {
  it('finds overlaps in start order, with shared starts and nested intervals', () => {
    const t = new IntervalTree();
    t.insert(0, 100, 1);
    t.insert(10, 20, 2);
    t.insert(10, 50, 3);
    t.insert(60, 61, 4);
    const hits = (lo: number, hi: number) => {
      const out: number[] = [];
      t.forEachOverlap(lo, hi, (v) => {
        out.push(v);
      });
      return out;
    };
    expect(hits(15, 16)).toEqual([1, 2, 3]);
    expect(hits(20, 60)).toEqual([1, 3]);
    expect(hits(60, 61)).toEqual([1, 4]);
    expect(hits(100, 200)).toEqual([]);
    expect(hits(5, 5)).toEqual([]);
    expect(t.remove(10, 3)).toBe(true);
    expect(t.remove(10, 3)).toBe(false);
    expect(hits(20, 60)).toEqual([1]);
    const first: number[] = [];
    t.forEachOverlap(0, 100, (v) => first.push(v) === 1);
    expect(first).toEqual([1]);
    expect(t.checkInvariants()).toEqual([]);
  });

  it('answers a query made from inside another query\'s callback', () => {
    const t = new IntervalTree();
    for (let i = 0; i < 100; i++) t.insert(i * 10, i * 10 + 10, i);
    const pairs: [number, number][] = [];
    t.forEachOverlap(0, 1000, (outer) => {
      t.forEachOverlap(outer * 10 + 5, outer * 10 + 15, (inner) => {
        pairs.push([outer, inner]);
      });
    });
    const want: [number, number][] = [];
    for (let i = 0; i < 100; i++) {
      want.push([i, i]);
      if (i < 99) want.push([i, i + 1]);
    }
    expect(pairs).toEqual(want);
    expect(t.checkInvariants()).toEqual([]);
  });

  it('stays balanced under 30000 ascending inserts and removes', () => {
    const t = new IntervalTree();
    for (let i = 0; i < 30000; i++) t.insert(i * 4096, (i + 1) * 4096, i);
    expect(t.checkInvariants()).toEqual([]);
    for (let i = 0; i < 30000; i += 2) expect(t.remove(i * 4096, i)).toBe(true);
    expect(t.checkInvariants()).toEqual([]);
    expect(t.size).toBe(15000);
  });

  it('agrees with a naive list under random operations (fast-check)', () => {
    const iv = fc.record({ s: fc.integer({ min: 0, max: 500 }), len: fc.integer({ min: 1, max: 120 }), v: fc.integer({ min: 0, max: 30 }) });
    const op = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), iv }),
      fc.record({ kind: fc.constant('remove' as const), iv }),
      fc.record({ kind: fc.constant('query' as const), iv }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const t = new IntervalTree();
        const ref: { s: number; e: number; v: number }[] = [];
        for (const o of ops) {
          const { s, len, v } = o.iv;
          const at = ref.findIndex((r) => r.s === s && r.v === v);
          if (o.kind === 'insert') {
            if (at >= 0) continue; // (start, value) pairs are unique
            t.insert(s, s + len, v);
            ref.push({ s, e: s + len, v });
          } else if (o.kind === 'remove') {
            expect(t.remove(s, v)).toBe(at >= 0);
            if (at >= 0) ref.splice(at, 1);
          } else {
            const got: [number, number, number][] = [];
            t.forEachOverlap(s, s + len, (val, a, b) => {
              got.push([a, b, val]);
            });
            const want = ref
              .filter((r) => r.s < s + len && r.e > s)
              .sort((a, b) => a.s - b.s || a.v - b.v)
              .map((r) => [r.s, r.e, r.v]);
            expect(got).toEqual(want);
          }
        }
        expect(t.checkInvariants()).toEqual([]);
        expect(t.size).toBe(ref.length);
      }),
      { numRuns: 200 },
    );
  });
});
