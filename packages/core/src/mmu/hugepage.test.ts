import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { disallowLpage } from './hugepage.js';
import { RangeMap } from '../range-map.js';
import { KvmMemorySlot } from '../memslot/memslot.js';
import { KVM_MEM_PCI_HOLE, pagesPerHpage } from '../uapi.js';

/** The kernel's way: per-huge-page disallow_lpage flags computed page by page. */
function referenceDisallow(slot: KvmMemorySlot, gfn: number, level: number, attrs: number[] | null): boolean {
  const n = pagesPerHpage(level);
  const start = gfn - (gfn % n);
  if (start < slot.baseGfn || start + n > slot.baseGfn + slot.npages) return true;
  if (((slot.baseGfn ^ slot.userspaceAddr / 4096) & (n - 1)) !== 0) return true;
  if (slot.flags & KVM_MEM_PCI_HOLE) return true;
  if (attrs) for (let g = start + 1; g < start + n; g++) if (attrs[g] !== attrs[start]) return true;
  return false;
}

describe('disallow_lpage', () => {
  it('slot edges: head and tail huge pages that stick out are 4K-only', () => {
    const slot = new KvmMemorySlot(0, 0, 0x100, 0x400, 0x7f0000100000, 0);
    expect(disallowLpage(slot, 0x100, 2, null)).toBe(true); // 0x000..0x1ff sticks out below
    expect(disallowLpage(slot, 0x200, 2, null)).toBe(false);
    expect(disallowLpage(slot, 0x4ff, 2, null)).toBe(true); // 0x400..0x5ff sticks out above
  });

  it('gfn/hva misalignment disallows every huge page of the slot', () => {
    const slot = new KvmMemorySlot(0, 0, 0x200, 0x400, 0x7f0000101000, 0);
    expect(disallowLpage(slot, 0x200, 2, null)).toBe(true);
    expect(disallowLpage(slot, 0x400, 2, null)).toBe(true);
  });

  it('mixed attributes disallow the huge page that holds a boundary (MIXED flag)', () => {
    const slot = new KvmMemorySlot(0, 0, 0, 0x40000, 0x7f0000000000, 0);
    const attrs = new RangeMap();
    attrs.set(0x210, 0x211, 8);
    expect(disallowLpage(slot, 0x200, 2, attrs)).toBe(true);
    expect(disallowLpage(slot, 0x400, 2, attrs)).toBe(false);
    expect(disallowLpage(slot, 0x400, 3, attrs)).toBe(true); // the 1G page holds the 2M one
    attrs.set(0x200, 0x400, 8);
    expect(disallowLpage(slot, 0x200, 2, attrs)).toBe(false); // whole 2M uniformly private
  });

  it('agrees with a page-by-page reference on random slots and attributes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2048 }),
        fc.integer({ min: 1, max: 4096 }),
        fc.integer({ min: 0, max: 1023 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 6000 }), fc.integer({ min: 1, max: 700 }), fc.constantFrom(0, 8)), { maxLength: 6 }),
        fc.integer({ min: 0, max: 6000 }),
        (base, npages, hvaPage, sets, probe) => {
          const slot = new KvmMemorySlot(0, 0, base, npages, 0x7f0000000000 + hvaPage * 4096, 0);
          const attrs = new RangeMap();
          const ref = new Array<number>(8192).fill(0);
          for (const [s, len, v] of sets) {
            attrs.set(s, s + len, v);
            for (let g = s; g < s + len && g < ref.length; g++) ref[g] = v;
          }
          const gfn = Math.min(probe, base + npages - 1);
          expect(disallowLpage(slot, gfn, 2, attrs)).toBe(referenceDisallow(slot, gfn, 2, ref));
        },
      ),
      { numRuns: 300 },
    );
  });
});
