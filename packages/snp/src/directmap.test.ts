import { describe, expect, it } from 'vitest';
import { ERRNO, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { DirectMap, rmpCheckHostWrite } from './directmap.js';
import { rmpupdateInsn } from './instructions.js';
import { Rmp } from './rmp.js';

describe('DirectMap', () => {
  it('starts with 1G mappings and splits 1G→2M→4K on set_memory_4k', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    expect(dm.mappingLevel(12345)).toBe(PG_LEVEL_1G);
    expect(dm.adjustDirectMap(0x40000 + 5, PG_LEVEL_4K)).toBe(0);
    expect(dm.mappingLevel(0x40000 + 5)).toBe(PG_LEVEL_4K);
    expect(dm.mappingLevel(0x40000 + 512)).toBe(PG_LEVEL_2M);
    expect(dm.mappingLevel(0)).toBe(PG_LEVEL_1G);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    expect(dm.adjustDirectMap(0x40000 + 6, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
  });

  it('a run of 4K adjustments in one split 2M region splits nothing more, in any region order', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    const a = 0x40000;
    const b = 0x40000 + 512; // the next 2M region of the same 1G
    expect(dm.adjustDirectMap(a + 1, PG_LEVEL_4K)).toBe(0);
    expect(dm.adjustDirectMap(a + 2, PG_LEVEL_4K)).toBe(0); // the region just split answers at once
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 1 });
    // another region of the same 1G is still a 2M mapping: it is split, not taken for the last one
    expect(dm.mappingLevel(b)).toBe(PG_LEVEL_2M);
    expect(dm.adjustDirectMap(b + 3, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 2 });
    expect(dm.mappingLevel(b + 3)).toBe(PG_LEVEL_4K);
    // back to the first region, and an unmapped frame in it: still nothing to split
    dm.unmap(a + 4, 1);
    expect(dm.adjustDirectMap(a + 4, PG_LEVEL_4K)).toBe(0);
    expect(dm.adjustDirectMap(a + 5, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 1, splits2M: 2 });
    expect(dm.mappingLevel(a + 4)).toBe(0);
    expect(dm.mappingLevel(a + 5)).toBe(PG_LEVEL_4K);
    // and the region of another 1G is split on its own first 4K adjustment
    expect(dm.adjustDirectMap(0x80000 + 9, PG_LEVEL_4K)).toBe(0);
    expect(dm.stats).toMatchObject({ splits1G: 2, splits2M: 3 });
  });

  it('follows adjust_direct_map input checks', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    expect(dm.adjustDirectMap(1 << 20, PG_LEVEL_4K)).toBe(-ERRNO.EINVAL);
    expect(dm.adjustDirectMap(513, PG_LEVEL_2M)).toBe(-ERRNO.EINVAL);
    expect(dm.adjustDirectMap(512, PG_LEVEL_1G)).toBe(-ERRNO.EINVAL);
    expect(dm.adjustDirectMap(512, PG_LEVEL_2M)).toBe(0);
    expect(dm.mappingLevel(512)).toBe(PG_LEVEL_1G);
  });

  it('a host write faults at the granularity of the mapping (1G checked as 2M)', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    const rmp = new Rmp({ maxPfn: 1 << 20 });
    rmpupdateInsn(rmp, 1024 + 7, { gpa: 0x7000, assigned: true, pagesize: 0, immutable: false, asid: 1 });
    // neighbour in the same 2M, through the 1G mapping → RMP #PF
    expect(dm.checkHostWrite(1024 + 8, rmp)).toMatch(/RMP #PF.*1G/);
    // another 2M region of the same 1G mapping is fine: the check is at 2M
    expect(dm.checkHostWrite(2048, rmp)).toBeNull();
    dm.adjustDirectMap(1024 + 7, PG_LEVEL_4K);
    expect(dm.checkHostWrite(1024 + 8, rmp)).toBeNull();
    expect(dm.checkHostWrite(1024 + 7, rmp)).toMatch(/RMP #PF.*4K/);
    expect(dm.checkHostRead(1024 + 7)).toBeNull();
    expect(rmpCheckHostWrite(rmp, 1024 + 9, PG_LEVEL_2M, 'user')).toMatch(/2M user/);
  });

  it('unmaps and restores 4K frames', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    expect(dm.unmap(100, 3)).toBe(3);
    expect(dm.unmap(100, 1)).toBe(0);
    expect(dm.unmappedPages).toBe(3);
    expect(dm.mappingLevel(101)).toBe(0);
    expect(dm.mappingLevel(99)).toBe(PG_LEVEL_4K);
    expect(dm.restore(100, 3)).toBe(3);
    expect(dm.unmappedPages).toBe(0);
    expect(dm.inspect(101)).toEqual({ pfn: 101, present: true, level: PG_LEVEL_4K, levelName: '4K' });
  });

  it('unmapping a whole aligned 2M block under a 1G mapping splits only the 1G mapping', () => {
    const dm = new DirectMap({ maxPfn: 1 << 20 });
    expect(dm.unmap(512, 512)).toBe(512);
    expect(dm.stats.splits1G).toBe(1);
    expect(dm.stats.splits2M).toBe(0);
    expect(dm.mappingLevel(1024)).toBe(PG_LEVEL_2M); // the neighbouring 2M page stays 2M
    expect(dm.mappingLevel(512)).toBe(0);
  });
});
