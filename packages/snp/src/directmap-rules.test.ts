/**
 * The direct map's rules one at a time, at their boundaries: which frames exist (pfn_valid()),
 * adjust_direct_map()'s input checks and what it splits (arch/x86/virt/svm/sev.c), what
 * set_direct_map_invalid_noflush() / set_direct_map_default_noflush() do to the mappings, and
 * the RMP check of a host write at the page size of the mapping (APM vol. 2 "RMP and VMPL
 * access checks"; the comment above adjust_direct_map()). Found missing by mutation testing
 * (docs/testing.md).
 */
import { describe, expect, it } from 'vitest';
import { ERRNO, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { DirectMap, PAGES_PER_1G, PAGES_PER_2M, rmpCheckHostWrite } from './directmap.js';
import { rmpupdateInsn } from './instructions.js';
import { Rmp } from './rmp.js';

const assign = (rmp: Rmp, pfn: number): void => {
  expect(rmpupdateInsn(rmp, pfn, { gpa: 0x1000, assigned: true, pagesize: 0, immutable: false, asid: 1 })).toBe(0);
};

describe('pfn_valid() of the direct map', () => {
  it('holds frames 0 .. maxPfn - 1 and nothing else', () => {
    const dm = new DirectMap({ maxPfn: 1000 });
    expect(dm.pfnValid(0)).toBe(true);
    expect(dm.pfnValid(999)).toBe(true);
    expect(dm.pfnValid(1000)).toBe(false);
    expect(dm.pfnValid(-1)).toBe(false);
    expect(dm.pfnValid(1.5)).toBe(false);
    expect(dm.isPresent(-1)).toBe(false);
    expect(dm.isPresent(1000)).toBe(false);
    expect(dm.isPresent(0)).toBe(true);
    expect(dm.mappingLevel(1000)).toBe(0);
    expect(dm.mappingLevel(0)).toBe(PG_LEVEL_1G);
  });
});

describe('adjust_direct_map()', () => {
  it('refuses a frame outside the map and a 2M page whose last frame is outside', () => {
    const dm = new DirectMap({ maxPfn: 1536 });
    expect(dm.adjustDirectMap(-1, PG_LEVEL_4K)).toBe(-ERRNO.EINVAL);
    expect(dm.adjustDirectMap(1536, PG_LEVEL_4K)).toBe(-ERRNO.EINVAL);
    expect(dm.adjustDirectMap(1535, PG_LEVEL_4K)).toBe(0);
    // [1024, 1535] is the last whole 2M page
    expect(dm.adjustDirectMap(1024, PG_LEVEL_2M)).toBe(0);
    const short = new DirectMap({ maxPfn: 1535 });
    expect(short.adjustDirectMap(1024, PG_LEVEL_2M)).toBe(-ERRNO.EINVAL);
    expect(short.adjustDirectMap(512, PG_LEVEL_2M)).toBe(0);
    // a 2M transition splits nothing
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(short.stats).toMatchObject({ splits1G: 0, splits2M: 0 });
  });

  it('splits nothing for a frame that has no mapping', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    // the whole 2M block goes: only the 1G mapping above it is split
    expect(dm.unmap(PAGES_PER_2M, PAGES_PER_2M)).toBe(PAGES_PER_2M);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 0 });
    expect(dm.adjustDirectMap(PAGES_PER_2M + 3, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 0 });
    expect(dm.split2MCount).toBe(0);
    // a frame still mapped at 2M in the same 1G region is split
    expect(dm.adjustDirectMap(2 * PAGES_PER_2M, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(dm.split2MCount).toBe(1);
  });
});

describe('set_direct_map_invalid_noflush() (the unmap policy)', () => {
  it('a 2M block that is not whole in the range is split to 4K, whatever side it is cut on', () => {
    const cutEnd = new DirectMap({ maxPfn: 1 << 20 });
    expect(cutEnd.unmap(PAGES_PER_2M, PAGES_PER_2M - 1)).toBe(PAGES_PER_2M - 1);
    expect(cutEnd.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(cutEnd.mappingLevel(2 * PAGES_PER_2M - 1)).toBe(PG_LEVEL_4K);
    const cutStart = new DirectMap({ maxPfn: 1 << 20 });
    expect(cutStart.unmap(PAGES_PER_2M + 1, PAGES_PER_2M - 1)).toBe(PAGES_PER_2M - 1);
    expect(cutStart.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(cutStart.mappingLevel(PAGES_PER_2M)).toBe(PG_LEVEL_4K);
    // one frame wider on both sides: the whole block and two pieces of its neighbours
    const wide = new DirectMap({ maxPfn: 1 << 20 });
    expect(wide.unmap(PAGES_PER_2M - 1, PAGES_PER_2M + 2)).toBe(PAGES_PER_2M + 2);
    expect(wide.stats).toMatchObject({ splits1G: 1, splits2M: 2 });
    expect(wide.mappingLevel(PAGES_PER_2M - 2)).toBe(PG_LEVEL_4K);
    expect(wide.mappingLevel(2 * PAGES_PER_2M + 1)).toBe(PG_LEVEL_4K);
    expect(wide.unmappedPages).toBe(PAGES_PER_2M + 2);
  });

  it('splits each 1G mapping once, however many 2M blocks go', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    dm.unmap(0, PAGES_PER_2M);
    dm.unmap(PAGES_PER_2M, PAGES_PER_2M);
    expect(dm.stats.splits1G).toBe(1);
    dm.unmap(PAGES_PER_1G, PAGES_PER_2M);
    expect(dm.stats.splits1G).toBe(2);
    expect(dm.stats.unmaps).toBe(3 * PAGES_PER_2M);
  });

  it('counts every unmapped frame, in every bit of the bitmap', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    const frames = [0, 1, 30, 31, 32, 63, 64, 200, 255, 256, 480, 510, 511];
    for (const f of frames) dm.unmap(f, 1);
    expect(dm.unmappedPages).toBe(frames.length);
    for (const f of frames) expect(dm.isPresent(f)).toBe(false);
    for (const f of [2, 29, 33, 62, 65, 257, 509]) expect(dm.isPresent(f)).toBe(true);
    dm.unmap(0, PAGES_PER_2M);
    expect(dm.unmappedPages).toBe(PAGES_PER_2M);
    dm.unmap(PAGES_PER_2M + 7, 0x55);
    expect(dm.unmappedPages).toBe(PAGES_PER_2M + 0x55);
  });
});

describe('set_direct_map_default_noflush()', () => {
  it('puts back only frames that were removed, inside the map', () => {
    const dm = new DirectMap({ maxPfn: 1024 });
    dm.unmap(1020, 4);
    expect(dm.restore(1018, 10)).toBe(4); // 1018, 1019 were present; 1024.. are not frames
    expect(dm.stats.restores).toBe(4);
    expect(dm.unmappedPages).toBe(0);
    expect(dm.isPresent(1021)).toBe(true);
    // a frame comes back at 4K: the split is not undone
    expect(dm.mappingLevel(1021)).toBe(PG_LEVEL_4K);
    expect(dm.restore(1020, 1)).toBe(0);
    expect(dm.stats.restores).toBe(4);
  });

  it('keeps the other holes of a 2M region when one frame comes back', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    dm.unmap(10, 2);
    expect(dm.restore(10, 1)).toBe(1);
    expect(dm.isPresent(10)).toBe(true);
    expect(dm.isPresent(11)).toBe(false);
    expect(dm.unmappedPages).toBe(1);
  });
});

describe('host accesses through the direct map', () => {
  it('a frame with no mapping faults on read and on write (kernel oops), a mapped one does not', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    dm.unmap(5, 1);
    expect(dm.checkHostRead(5)).toMatch(/^#PF/);
    expect(dm.checkHostWrite(5, rmp)).toMatch(/^#PF/);
    expect(dm.checkHostRead(6)).toBeNull();
    expect(dm.checkHostWrite(6, rmp)).toBeNull();
  });

  it('a 4K mapping is checked at 4K: a shared neighbour of an assigned frame is writable', () => {
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    assign(rmp, 0x207);
    expect(rmpCheckHostWrite(rmp, 0x208, PG_LEVEL_4K, 'user')).toBeNull();
    expect(rmpCheckHostWrite(rmp, 0x207, PG_LEVEL_4K, 'user')).toMatch(/^RMP #PF/);
    // at 2M and 1G the same shared neighbour faults: the 2M region holds an assigned frame
    expect(rmpCheckHostWrite(rmp, 0x208, PG_LEVEL_2M, 'user')).toMatch(/^RMP #PF.* 2M /);
    expect(rmpCheckHostWrite(rmp, 0x208, PG_LEVEL_1G, 'user')).toMatch(/^RMP #PF.* 1G /);
    // another 2M region is clean
    expect(rmpCheckHostWrite(rmp, 0x400, PG_LEVEL_2M, 'user')).toBeNull();
  });

  it('inspect names the mapping level', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    dm.unmap(PAGES_PER_2M, 1);
    expect(dm.inspect(PAGES_PER_1G)).toEqual({ pfn: PAGES_PER_1G, present: true, level: PG_LEVEL_1G, levelName: '1G' });
    expect(dm.inspect(2 * PAGES_PER_2M)).toEqual({ pfn: 2 * PAGES_PER_2M, present: true, level: PG_LEVEL_2M, levelName: '2M' });
    expect(dm.inspect(PAGES_PER_2M + 1)).toEqual({ pfn: PAGES_PER_2M + 1, present: true, level: PG_LEVEL_4K, levelName: '4K' });
    expect(dm.inspect(PAGES_PER_2M)).toEqual({ pfn: PAGES_PER_2M, present: false, level: 0, levelName: 'none' });
  });
});
