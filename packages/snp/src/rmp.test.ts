import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import { Rmp, RMPW_ASSIGNED, RMPW_PAGESIZE, RMPW_VALIDATED, packRmpWord, vmplPerms } from './rmp.js';

describe('Rmp', () => {
  it('costs nothing for a 1 TiB host with nothing assigned', () => {
    const rmp = new Rmp({ maxPfn: 2 ** 28 });
    expect(rmp.bytes).toBe(0);
    expect(rmp.bytesPerAssignedPage).toBe(0);
    expect(rmp.lookup(2 ** 28 - 1)).toEqual({ assigned: false, level: PG_LEVEL_4K });
    expect(rmp.lookup(2 ** 28)).toBeNull();
  });

  it('creates a chunk on the first non-default entry and frees it when all are default again', () => {
    const rmp = new Rmp({ maxPfn: 2 ** 20 });
    rmp.writeEntry(1000, packRmpWord({ assigned: true, pagesize: 0, immutable: false, asid: 3 }), 77);
    expect(rmp.chunkCount).toBe(1);
    expect(rmp.assignedPages).toBe(1);
    const e = rmp.inspect(1000);
    expect(e).toMatchObject({ assigned: true, asid: 3, gpa: 77 * 4096, pagesize: 0, validated: false, level: PG_LEVEL_4K });
    expect(Object.isFrozen(e)).toBe(true);
    rmp.writeEntry(1000, 0, 0);
    expect(rmp.chunkCount).toBe(0);
    expect(rmp.assignedPages).toBe(0);
  });

  it('takes the level from the 2M-aligned entry', () => {
    const rmp = new Rmp({ maxPfn: 4096 });
    rmp.writeEntry(512, RMPW_ASSIGNED | RMPW_PAGESIZE, 0);
    rmp.writeEntry(700, RMPW_ASSIGNED, 188);
    expect(rmp.lookup(700)).toEqual({ assigned: true, level: PG_LEVEL_2M });
    expect(rmp.lookup(1024)).toEqual({ assigned: false, level: PG_LEVEL_4K });
  });

  it('a negative pfn has no entry and no 2M head: level 4K even when frame 0 is a 2M page', () => {
    const rmp = new Rmp({ maxPfn: 4096 });
    rmp.writeEntry(0, RMPW_ASSIGNED | RMPW_PAGESIZE, 0);
    expect(rmp.level(0)).toBe(PG_LEVEL_2M);
    expect(rmp.level(-1)).toBe(PG_LEVEL_4K);
    expect(rmp.level(-511)).toBe(PG_LEVEL_4K);
    expect(rmp.lookup(-1)).toBeNull();
  });

  it('refuses an RMP without frames', () => {
    for (const maxPfn of [0, -1, 1.5, 2 ** 53]) expect(() => new Rmp({ maxPfn })).toThrow('Rmp: maxPfn must be a positive integer');
  });

  it('keeps VMPL permission nibbles apart', () => {
    const w = (0x5 << 15) | (0xa << 19) | (0xf << 23) | RMPW_VALIDATED;
    expect([vmplPerms(w, 1), vmplPerms(w, 2), vmplPerms(w, 3)]).toEqual([0x5, 0xa, 0xf]);
  });

  it('accounting matches a naive model under random writes (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.boolean(), fc.integer({ min: 0, max: 3 })), { maxLength: 200 }),
        (ops) => {
          const rmp = new Rmp({ maxPfn: 4096 });
          const naive = new Map<number, { w: number; g: number }>();
          for (const [pfn, assigned, g] of ops) {
            const w = assigned ? RMPW_ASSIGNED : 0;
            rmp.writeEntry(pfn, w, g);
            if (w === 0 && g === 0) naive.delete(pfn);
            else naive.set(pfn, { w, g });
          }
          let assigned = 0;
          const regions = new Set<number>();
          for (const [pfn, e] of naive) {
            if (e.w & RMPW_ASSIGNED) assigned++;
            regions.add(Math.floor(pfn / 512));
            expect(rmp.word(pfn)).toBe(e.w);
            expect(rmp.gfn(pfn)).toBe(e.g);
          }
          expect(rmp.assignedPages).toBe(assigned);
          expect(rmp.chunkCount).toBe(regions.size);
        },
      ),
    );
  });

  it('stays at or under 16 bytes per assigned page for dense assignment', () => {
    const rmp = new Rmp({ maxPfn: 2 ** 28 });
    for (let p = 0; p < 512 * 64; p++) rmp.writeEntry(2 ** 27 + p, RMPW_ASSIGNED, p);
    expect(rmp.bytesPerAssignedPage).toBeLessThanOrEqual(16);
    let n = 0;
    rmp.forEachAssigned(() => n++);
    expect(n).toBe(512 * 64);
  });
});
