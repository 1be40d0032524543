import { describe, expect, it } from 'vitest';
import { PTE_LIST_EXT, Rmap } from './rmap.js';

function list(r: Rmap, gfn: number, level: number): number[] {
  const out: number[] = [];
  r.forEach(gfn, level, (s) => out.push(s));
  return out.sort((a, b) => a - b);
}

describe('rmap heads and pte_list_desc chains', () => {
  it('one SPTE lives in the head; more go to descriptors; removal shrinks back to the head', () => {
    const r = new Rmap();
    expect(r.add(0x1234, 1, 7)).toBe(0);
    expect(list(r, 0x1234, 1)).toEqual([7]);
    const many = Array.from({ length: 3 * PTE_LIST_EXT + 1 }, (_, i) => 100 + i);
    for (const s of many) r.add(0x1234, 1, s);
    expect(list(r, 0x1234, 1)).toEqual([7, ...many]);
    expect(r.maxRmapSize).toBe(many.length + 1);
    for (const s of many) expect(r.remove(0x1234, 1, s)).toBe(true);
    expect(list(r, 0x1234, 1)).toEqual([7]);
    expect(r.remove(0x1234, 1, 99)).toBe(false);
    expect(r.remove(0x1234, 1, 7)).toBe(true);
    expect(r.count(0x1234, 1)).toBe(0);
  });

  it('huge levels share one head per huge page', () => {
    const r = new Rmap();
    r.add(0x200, 2, 1);
    r.add(0x3ff, 2, 2);
    expect(list(r, 0x200, 2)).toEqual([1, 2]);
    expect(list(r, 0x400, 2)).toEqual([]);
  });

  it('addRun writes single-SPTE heads and falls back to descriptors for taken ones', () => {
    const r = new Rmap();
    r.add(0x1005, 1, 9);
    expect(r.addRun(0x1000, 1, 512, 512)).toBe(1);
    expect(list(r, 0x1005, 1)).toEqual([9, 517]);
    expect(list(r, 0x11ff, 1)).toEqual([1023]);
  });
});
