import { describe, expect, it } from 'vitest';
import { GmemPageStore, PAGE_HWPOISON, PAGE_PREPARED, PAGE_UPTODATE } from './page-store.js';

/** every (pgoff, pfn, flags) that forEachIn reports over [start, end), in call order */
function walk(s: GmemPageStore, start: number, end: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  s.forEachIn(start, end, (pgoff, pfn, flags) => out.push([pgoff, pfn, flags]));
  return out;
}

describe('GmemPageStore (the page cache of a guest_memfd inode)', () => {
  it('holes read as pfn -1 and flags 0, inside and outside existing chunks', () => {
    const s = new GmemPageStore();
    expect(s.pfnAt(0)).toBe(-1);
    expect(s.flagsAt(0)).toBe(0);
    expect(s.flagsAt(5000)).toBe(0);
    s.insert(3, 70);
    expect(s.pfnAt(2)).toBe(-1);
    expect(s.flagsAt(2)).toBe(0);
    expect(s.flagsAt(5000)).toBe(0);
    expect(s.pfnAt(3)).toBe(70);
  });

  it('insert: pfn 0 up to 2^31 - 2 is stored; negative, 2^31 - 1 and non-numbers are refused', () => {
    const s = new GmemPageStore();
    s.insert(0, 0);
    s.insert(1, 0x7ffffffe);
    expect(s.pfnAt(0)).toBe(0);
    expect(s.pfnAt(1)).toBe(0x7ffffffe);
    expect(() => s.insert(2, -1)).toThrow(new RangeError('pfn -1 beyond 2^31 - 1'));
    expect(() => s.insert(2, 0x7fffffff)).toThrow(RangeError);
    expect(() => s.insert(2, Number.NaN)).toThrow(RangeError);
    expect(s.pfnAt(2)).toBe(-1);
    expect(s.nrPages).toBe(2);
  });

  it('insert at a page that has one is refused; a new folio starts with clear flags', () => {
    const s = new GmemPageStore();
    s.insert(7, 10);
    s.setFlags(7, PAGE_UPTODATE);
    expect(() => s.insert(7, 11)).toThrow(/already has a page/);
    expect(s.pfnAt(7)).toBe(10);
    s.removeRange(7, 8, () => {});
    s.insert(7, 12);
    expect(s.flagsAt(7)).toBe(0);
  });

  it('setFlags needs a page: a hole in a new or an existing chunk throws', () => {
    const s = new GmemPageStore();
    expect(() => s.setFlags(0, PAGE_UPTODATE)).toThrow(/no page at pgoff 0/);
    s.insert(1, 5);
    expect(() => s.setFlags(0, PAGE_UPTODATE)).toThrow(/no page at pgoff 0/);
    s.setFlags(1, PAGE_UPTODATE);
    s.setFlags(1, PAGE_PREPARED);
    expect(s.flagsAt(1)).toBe(PAGE_UPTODATE | PAGE_PREPARED);
  });

  it('nrPoisoned counts each poisoned page once and drops when it leaves the cache', () => {
    const s = new GmemPageStore();
    s.insert(0, 1);
    s.insert(1, 2);
    s.setFlags(0, PAGE_HWPOISON);
    s.setFlags(0, PAGE_HWPOISON);
    expect(s.nrPoisoned).toBe(1);
    expect(s.removeRange(1, 2, () => {})).toBe(1);
    expect(s.nrPoisoned).toBe(1);
    expect(s.removeRange(0, 1, () => {})).toBe(1);
    expect(s.nrPoisoned).toBe(0);
  });

  it('removeRange reports each page once, in index order, with its pfn and flags, across chunks', () => {
    const s = new GmemPageStore();
    s.insert(1030, 30);
    s.insert(5, 5);
    s.insert(600, 60);
    s.insert(511, 11);
    s.setFlags(600, PAGE_UPTODATE);
    const seen: [number, number, number][] = [];
    expect(s.removeRange(6, 1031, (p, pfn, f) => seen.push([p, pfn, f]))).toBe(3);
    expect(seen).toEqual([
      [511, 11, 0],
      [600, 60, PAGE_UPTODATE],
      [1030, 30, 0],
    ]);
    expect(s.nrPages).toBe(1);
    expect(s.pfnAt(600)).toBe(-1);
    expect(s.pfnAt(5)).toBe(5);
    expect(s.removeRange(0, 1 << 30, () => {})).toBe(1);
    expect(s.removeRange(0, 1 << 30, () => {})).toBe(0);
    expect(s.nrPages).toBe(0);
  });

  it('forEachIn walks only [start, end) of each chunk, in index order, and changes nothing', () => {
    const s = new GmemPageStore();
    for (const p of [1600, 0, 512, 700, 1023, 1024, 1535, 3000]) s.insert(p, p + 100);
    s.setFlags(700, PAGE_HWPOISON);
    expect(walk(s, 600, 1536)).toEqual([
      [700, 800, PAGE_HWPOISON],
      [1023, 1123, 0],
      [1024, 1124, 0],
      [1535, 1635, 0],
    ]);
    expect(walk(s, 0, 1 << 30).map(([p]) => p)).toEqual([0, 512, 700, 1023, 1024, 1535, 1600, 3000]);
    expect(walk(s, 513, 700)).toEqual([]);
    expect(s.nrPages).toBe(8);
  });

  it('chunks created out of order are still walked and removed in index order', () => {
    const s = new GmemPageStore();
    for (const c of [9, 3, 7, 1]) s.insert(c * 512 + 2, c);
    expect(walk(s, 0, 20 * 512).map(([p]) => p)).toEqual([1, 3, 7, 9].map((c) => c * 512 + 2));
    const order: number[] = [];
    s.removeRange(0, 20 * 512, (p) => order.push(p));
    expect(order).toEqual([1, 3, 7, 9].map((c) => c * 512 + 2));
  });

  it('a chunk emptied by removeRange can be filled again and is seen by every operation', () => {
    const s = new GmemPageStore();
    s.insert(0, 1);
    s.removeRange(0, 1, () => {});
    s.insert(0, 2);
    expect(walk(s, 0, 512)).toEqual([[0, 2, 0]]);
    expect(s.removeRange(0, 512, () => {})).toBe(1);
    expect(s.pfnAt(0)).toBe(-1);
  });

  it('emptying the last-used chunk does not hide a neighbouring chunk', () => {
    const s = new GmemPageStore();
    s.insert(512, 40);
    s.insert(0, 41);
    s.removeRange(0, 1, () => {});
    expect(s.pfnAt(512)).toBe(40);
    expect(s.flagsAt(512)).toBe(0);
    s.setFlags(512, PAGE_UPTODATE);
    expect(s.flagsAt(512)).toBe(PAGE_UPTODATE);
  });

  it('reserve allocates only the holes; insert and removeRange end a reservation', () => {
    const s = new GmemPageStore();
    s.insert(1, 9);
    s.insert(3, 8);
    s.reserve(0, 6);
    expect(s.nrReserved).toBe(4);
    expect([0, 1, 2, 3, 4, 5, 6].map((p) => s.isReserved(p))).toEqual([true, false, true, false, true, true, false]);
    s.reserve(0, 6); // again: nothing new
    expect(s.nrReserved).toBe(4);
    s.insert(2, 7);
    expect(s.nrReserved).toBe(3);
    expect(s.isReserved(2)).toBe(false);
    s.insert(10, 6); // not reserved: the count stays
    expect(s.nrReserved).toBe(3);
    expect(s.removeRange(4, 5, () => {})).toBe(0);
    expect(s.nrReserved).toBe(2);
    expect(s.isReserved(4)).toBe(false);
    expect(s.isReserved(5)).toBe(true);
  });

  it('insert without any reservation leaves the count at zero', () => {
    const s = new GmemPageStore();
    s.insert(0, 1);
    s.insert(1, 2);
    expect(s.nrReserved).toBe(0);
    expect(s.isReserved(0)).toBe(false);
  });
});
