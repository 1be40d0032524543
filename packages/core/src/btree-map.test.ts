import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BTreeMap } from './btree-map.js';

/** the naive reference: a Map plus a sort per query */
class RefMap {
  readonly m = new Map<number, number>();
  sorted(): number[] {
    return [...this.m.keys()].sort((a, b) => a - b);
  }
  floor(key: number): number | undefined {
    let f: number | undefined;
    for (const k of this.sorted()) if (k <= key) f = k;
    return f;
  }
  next(key: number): number {
    for (const k of this.sorted()) if (k > key) return k;
    return Infinity;
  }
}

type Op = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number } | { kind: 'deleteRange'; lo: number; len: number };

const key = fc.integer({ min: 0, max: 3000 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), key, value: fc.integer({ min: -5, max: 5 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteRange' as const), lo: key, len: fc.integer({ min: 0, max: 400 }) }) },
);

function apply(t: BTreeMap, r: RefMap, o: Op): void {
  if (o.kind === 'set') {
    t.set(o.key, o.value);
    r.m.set(o.key, o.value);
  } else if (o.kind === 'delete') {
    expect(t.delete(o.key)).toBe(r.m.delete(o.key));
  } else {
    let n = 0;
    for (const k of [...r.m.keys()]) if (k >= o.lo && k < o.lo + o.len) n += r.m.delete(k) ? 1 : 0;
    expect(t.deleteRange(o.lo, o.lo + o.len)).toBe(n);
  }
}

describe('BTreeMap', () => {
  it('keeps order and balance under ascending, descending and shuffled inserts and deletes', () => {
    const n = 20000;
    for (const order of ['asc', 'desc', 'shuffled'] as const) {
      const keys = Array.from({ length: n }, (_, i) => (order === 'desc' ? n - 1 - i : i) * 3);
      if (order === 'shuffled') {
        let s = 7;
        for (let i = n - 1; i > 0; i--) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          const j = s % (i + 1);
          [keys[i], keys[j]] = [keys[j]!, keys[i]!];
        }
      }
      const t = new BTreeMap();
      keys.forEach((k, i) => t.set(k, i));
      expect(t.size).toBe(n);
      expect(t.checkInvariants()).toEqual([]);
      // 64-key leaves, 1024-way inner nodes: 20,000 keys fit under one inner root
      expect(t.depth).toBe(1);
      expect(t.floorValueOf(3 * 100 + 2, -1)).toBe(keys.indexOf(300));
      t.seek(301);
      expect([t.floorKey, t.nextKey]).toEqual([300, 303]);
      // delete all but every 97th key, in the same order
      for (const k of keys) if ((k / 3) % 97 !== 0) expect(t.delete(k)).toBe(true);
      expect(t.checkInvariants()).toEqual([]);
      expect(t.size).toBe(Math.ceil(n / 97));
      expect(t.depth).toBeLessThanOrEqual(1);
      expect(t.entries().map(([k]) => k)).toEqual(Array.from({ length: Math.ceil(n / 97) }, (_, i) => i * 97 * 3));
    }
  });

  it('splits, borrows from and merges inner nodes (more leaves than one inner node holds)', () => {
    const n = 140000;
    for (const order of ['asc', 'shuffled'] as const) {
      const keys = Array.from({ length: n }, (_, i) => i * 2);
      if (order === 'shuffled') {
        let s = 11;
        for (let i = n - 1; i > 0; i--) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          const j = s % (i + 1);
          [keys[i], keys[j]] = [keys[j]!, keys[i]!];
        }
      }
      const t = new BTreeMap();
      keys.forEach((k, i) => t.set(k, i));
      expect(t.checkInvariants()).toEqual([]);
      // more than 1024 leaves of at most 64 keys: the root is an inner node over inner nodes
      expect(t.depth).toBe(2);
      let wrong = 0;
      for (let q = 0; q < n; q += 997) if (t.floorValueOf(2 * q + 1, -1) !== keys.indexOf(2 * q)) wrong++;
      expect(wrong).toBe(0);
      // delete all but every 89th key: inner nodes underflow, borrow and merge, the root collapses
      let missing = 0;
      for (const k of keys) if ((k / 2) % 89 !== 0 && !t.delete(k)) missing++;
      expect(missing).toBe(0);
      expect(t.checkInvariants()).toEqual([]);
      expect(t.size).toBe(Math.ceil(n / 89));
      expect(t.depth).toBeLessThanOrEqual(1);
      expect(t.entries().map(([k]) => k)).toEqual(Array.from({ length: Math.ceil(n / 89) }, (_, i) => i * 89 * 2));
    }
  });

  it('answers floor, next, prev and ranges at the edges', () => {
    const t = new BTreeMap();
    expect(t.seek(5)).toBe(false);
    expect(t.nextKey).toBe(Infinity);
    expect(t.floorValueOf(5, -7)).toBe(-7);
    t.set(10, 1);
    t.set(20, 2);
    expect(t.seek(9)).toBe(false);
    expect(t.nextKey).toBe(10);
    expect(t.seek(15)).toBe(true);
    expect([t.floorKey, t.floorValue, t.prevValue, t.nextKey]).toEqual([10, 1, NaN, 20]);
    expect(t.seek(25)).toBe(true);
    expect([t.floorKey, t.floorValue, t.prevValue, t.nextKey]).toEqual([20, 2, 1, Infinity]);
    expect(t.get(20, -1)).toBe(2);
    expect(t.get(21, -1)).toBe(-1);
    const seen: number[] = [];
    t.forRange(10, 20, (k) => {
      seen.push(k);
    });
    expect(seen).toEqual([10]);
    const c = t.clone();
    t.delete(10);
    expect(c.has(10)).toBe(true);
    expect(t.has(10)).toBe(false);
  });

  it('agrees with a naive sorted map under random operations (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 1500 }), fc.array(key, { minLength: 1, maxLength: 20 }), (ops, probes) => {
        const t = new BTreeMap();
        const r = new RefMap();
        for (const o of ops) apply(t, r, o);
        expect(t.checkInvariants()).toEqual([]);
        expect(t.size).toBe(r.m.size);
        expect(t.entries()).toEqual(r.sorted().map((k) => [k, r.m.get(k)!]));
        for (const p of probes) {
          const f = r.floor(p);
          expect(t.seek(p)).toBe(f !== undefined);
          if (f !== undefined) {
            expect(t.floorKey).toBe(f);
            expect(t.floorValue).toBe(r.m.get(f));
            expect(t.floorValueOf(p, -99)).toBe(r.m.get(f));
            const before = r.floor(f - 1);
            expect(t.prevValue).toBe(before === undefined ? NaN : r.m.get(before));
          }
          expect(t.nextKey).toBe(r.next(p));
          expect(t.nextKeyAfter(p)).toBe(r.next(p));
          // after a descent elsewhere, so the finger may or may not answer
          t.seek(p ^ 0x55);
          expect(t.hasKeyBetween(p, p + 50)).toBe(r.next(p) < p + 50);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('BTreeMap pair updates', () => {
  it('insertPair and deletePair leave the tree exactly as two set() or two delete() calls do', () => {
    // 20,000 random pair updates on 4,000 slots: leaves fill, split, drain and merge
    const a = new BTreeMap();
    const b = new BTreeMap();
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    let pairs = 0;
    for (let step = 0; step < 20000; step++) {
      const k = 2 * rnd(4000);
      // keys k and k + 1: absent together, or present together with nothing in between
      if (!a.has(k) && !a.has(k + 1)) {
        a.insertPair(k, 1, k + 1, -1);
        b.set(k, 1);
        b.set(k + 1, -1);
        pairs++;
      } else {
        a.deletePair(k, k + 1);
        b.delete(k);
        b.delete(k + 1);
        pairs--;
      }
      if (step % 997 === 0) expect(a.checkInvariants()).toEqual([]);
    }
    expect(a.size).toBe(2 * pairs);
    expect(a.entries()).toEqual(b.entries());
    expect(a.checkInvariants()).toEqual([]);
    expect(a.depth).toBe(b.depth);
    expect(a.byteLength()).toBe(b.byteLength());
  });
});
