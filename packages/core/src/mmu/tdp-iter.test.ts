import { describe, expect, it } from 'vitest';
import { SptPool } from './spt-pool.js';
import { ACC_ALL } from './mmu-internal.js';
import { makeNonleafSpte, makeSpte, type Spte } from './spte.js';
import { gfnRoundForLevel, PAGES_PER_LEVEL, spteIndex, TdpIter } from './tdp-iter.js';

function put(pool: SptPool, t: number, i: number, s: Spte): void {
  const w = pool.words(t);
  const o = SptPool.base(t) + 2 * i;
  w[o] = s.lo;
  w[o + 1] = s.hi;
}

/** root(L4)[0] → L3[0] → L2: [0] → L1 (4K leaves at 0, 5, 511), [1] = 2M leaf */
function build(): { pool: SptPool; root: number } {
  const pool = new SptPool();
  const root = pool.alloc(0, 4, -1, 0, false, true);
  const l3 = pool.alloc(0, 3, root, 0, false, true);
  const l2 = pool.alloc(0, 2, l3, 0, false, true);
  const l1 = pool.alloc(0, 1, l2, 0, false, true);
  const s: Spte = { lo: 0, hi: 0 };
  put(pool, root, 0, makeNonleafSpte(s, l3));
  put(pool, l3, 0, makeNonleafSpte(s, l2));
  put(pool, l2, 0, makeNonleafSpte(s, l1));
  put(pool, l2, 1, makeSpte(s, 2, 4096, ACC_ALL, true, false));
  for (const i of [0, 5, 511]) put(pool, l1, i, makeSpte(s, 1, 100 + i, ACC_ALL, true, false));
  return { pool, root };
}

describe('TdpIter', () => {
  it('walks pre-order: down into tables, side within a table, up at the end', () => {
    const { pool, root } = build();
    const it = new TdpIter().start(pool, root, 4, 1, 0, 2048);
    const seen: [number, number][] = [];
    while (it.next()) seen.push([it.gfn, it.level]);
    // root[0], L3[0], L2[0], 512 4K entries, then L2[1..3]
    expect(seen.length).toBe(3 + 512 + 3);
    expect(seen.slice(0, 4)).toEqual([
      [0, 4],
      [0, 3],
      [0, 2],
      [0, 1],
    ]);
    expect(seen[3 + 511]).toEqual([511, 1]);
    expect(seen.slice(-3)).toEqual([
      [512, 2],
      [1024, 2],
      [1536, 2],
    ]);
    // gfns never decrease after the first entry of each level
    for (let i = 4; i < seen.length; i++) expect(seen[i]![0]).toBeGreaterThanOrEqual(seen[i - 1]![0]);
  });

  it('starts mid-range and stops at min level', () => {
    const { pool, root } = build();
    const it = new TdpIter().start(pool, root, 4, 2, 700, 1100);
    const seen: [number, number][] = [];
    while (it.next()) seen.push([it.gfn, it.level]);
    // the root entry covering 700 is visited with its rounded gfn; level 1 is never entered
    expect(seen).toEqual([
      [0, 4],
      [0, 3],
      [512, 2],
      [1024, 2],
    ]);
  });

  it('exposes the entry so callers can rewrite it and steer the walk', () => {
    const { pool, root } = build();
    const it = new TdpIter().start(pool, root, 4, 1, 0, 1024);
    let leaves = 0;
    while (it.next()) {
      if (it.level === 2 && it.index === 0) it.write(0, 0x80000000); // zap the table pointer
      if (it.level === 1) leaves++;
    }
    expect(leaves).toBe(0); // the iterator re-reads before stepping down
    expect(it.valid).toBe(true); // stopped by endGfn, not by running out
  });

  it('index and rounding helpers are exact above 2^32', () => {
    const g = 2 ** 40 + 3 * 512 ** 3 + 7 * 512 + 9;
    expect(spteIndex(g, 1)).toBe(9);
    expect(spteIndex(g, 2)).toBe(7);
    expect(spteIndex(g, 4)).toBe((2 ** 40 / 512 ** 3 + 3) % 512);
    expect(gfnRoundForLevel(g, 2)).toBe(g - 9);
    expect(PAGES_PER_LEVEL[3]).toBe(262144);
    // every level against the BigInt definition, gfns up to 2^52 (52-bit guest physical addresses)
    for (let i = 0; i < 2000; i++) {
      const gfn = Math.floor(Math.random() * 2 ** (i % 2 ? 52 : 31));
      for (let level = 1; level <= 5; level++) {
        const n = BigInt(PAGES_PER_LEVEL[level]!);
        expect(gfnRoundForLevel(gfn, level)).toBe(Number(BigInt(gfn) - (BigInt(gfn) % n)));
      }
    }
  });
});
