import { PAGE_SIZE } from '@ccmem/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { guestMemfdFactory } from './guest-memfd.js';
import { FakeVm, fakeSlot } from './testing/fake-vm.js';
import { GmemBindings } from './bindings.js';

const NPAGES = 64;

describe('guest_memfd bindings and page cache against a per-page reference', () => {
  it('random bind / unbind / punch / fault sequences agree with a naive model', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('bind' as const), id: fc.integer({ min: 0, max: 5 }), start: fc.integer({ min: 0, max: NPAGES - 1 }), n: fc.integer({ min: 1, max: 16 }) }),
      fc.record({ k: fc.constant('unbind' as const), id: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ k: fc.constant('punch' as const), start: fc.integer({ min: 0, max: NPAGES + 4 }), n: fc.integer({ min: 1, max: 16 }) }),
      fc.record({ k: fc.constant('fault' as const), id: fc.integer({ min: 0, max: 5 }), i: fc.integer({ min: 0, max: 15 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const vm = new FakeVm({ vmType: 4, hasPrivateMem: true });
        const f = guestMemfdFactory.create(vm, { size: NPAGES * PAGE_SIZE, flags: 0 });
        const owner: (number | null)[] = new Array(NPAGES).fill(null);
        const present: boolean[] = new Array(NPAGES).fill(false);
        const slots = new Map<number, ReturnType<typeof fakeSlot>>();
        for (const o of ops) {
          if (o.k === 'bind') {
            if (slots.has(o.id)) continue; // the memslot engine never binds a live slot twice
            const slot = fakeSlot({ id: o.id, baseGfn: 0x1000 * (o.id + 1), npages: o.n, file: f, offset: o.start * PAGE_SIZE });
            const fits = o.start + o.n <= NPAGES;
            const free = fits && owner.slice(o.start, o.start + o.n).every((x) => x === null);
            let ok = true;
            try {
              f.bind(slot, o.start * PAGE_SIZE);
            } catch {
              ok = false;
            }
            expect(ok).toBe(free);
            if (ok) {
              slots.set(o.id, slot);
              for (let p = o.start; p < o.start + o.n; p++) owner[p] = o.id;
            }
          } else if (o.k === 'unbind') {
            const s = slots.get(o.id);
            if (!s) continue;
            f.unbind(s);
            slots.delete(o.id);
            for (let p = 0; p < NPAGES; p++) if (owner[p] === o.id) owner[p] = null;
          } else if (o.k === 'punch') {
            vm.clearCalls();
            f.fallocate(3, o.start * PAGE_SIZE, o.n * PAGE_SIZE);
            const hit = owner.slice(o.start, o.start + o.n).some((x) => x !== null);
            expect(vm.calls.filter((c) => c.op === 'begin').length).toBe(hit ? 1 : 0);
            expect(vm.calls.filter((c) => c.op === 'end').length).toBe(hit ? 1 : 0);
            for (let p = o.start; p < Math.min(o.start + o.n, NPAGES); p++) present[p] = false;
          } else {
            const s = slots.get(o.id);
            if (!s || o.i >= s.npages) continue;
            expect(f.getPfn(s, s.baseGfn + o.i, { pfn: 0, maxOrder: 0 })).toBe(0);
            present[s.gmemPgoff + o.i] = true;
          }
          for (let p = 0; p < NPAGES; p++) expect(f.pfnAt(p) >= 0).toBe(present[p]);
        }
        expect(f.stats.allocatedPages).toBe(present.filter(Boolean).length);
        expect(vm.phys.allocatedPages).toBe(f.stats.allocatedPages);
        expect(vm.mmuInvalidateInProgress).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});

describe('GmemBindings.isBoundTo', () => {
  it('follows add / remove / clear for the same slot object (the last-slot cache)', () => {
    const b = new GmemBindings();
    const s1 = fakeSlot({ id: 1, baseGfn: 0, npages: 8, file: null });
    const s2 = fakeSlot({ id: 2, baseGfn: 100, npages: 8, file: null });
    expect(b.isBoundTo(0, s1)).toBe(false);
    b.add(s1, 0, 8);
    expect(b.isBoundTo(0, s1)).toBe(true);
    expect(b.isBoundTo(8, s1)).toBe(false);
    expect(b.isBoundTo(0, s2)).toBe(false);
    b.remove(s1);
    expect(b.isBoundTo(0, s1)).toBe(false);
    b.add(s1, 16, 24);
    expect(b.isBoundTo(0, s1)).toBe(false);
    expect(b.isBoundTo(20, s1)).toBe(true);
    b.add(s2, 0, 8);
    expect(b.isBoundTo(4, s2)).toBe(true);
    b.clear();
    expect(b.isBoundTo(20, s1)).toBe(false);
    expect(b.isBoundTo(4, s2)).toBe(false);
  });
});

describe('GmemBindings.remove and clear', () => {
  it('removing a slot that has no binding returns undefined and keeps every other binding', () => {
    const b = new GmemBindings();
    const s1 = fakeSlot({ id: 1, baseGfn: 0, npages: 8, file: null });
    const s2 = fakeSlot({ id: 2, baseGfn: 100, npages: 8, file: null });
    const s3 = fakeSlot({ id: 3, baseGfn: 200, npages: 8, file: null });
    b.add(s1, 0, 8);
    b.add(s2, 8, 16);
    expect(b.remove(s3)).toBeUndefined();
    expect(b.size).toBe(2);
    expect(b.all().map((x) => x.slot.id)).toEqual([1, 2]);
    expect(b.isBoundTo(4, s1)).toBe(true);
    expect(b.isBoundTo(12, s2)).toBe(true);
    expect(b.remove(s1)?.start).toBe(0);
    expect(b.all().map((x) => x.slot.id)).toEqual([2]);
  });

  it('clear leaves no binding at all (xa_destroy)', () => {
    const b = new GmemBindings();
    const s1 = fakeSlot({ id: 1, baseGfn: 0, npages: 8, file: null });
    b.add(s1, 0, 8);
    b.clear();
    expect(b.size).toBe(0);
    expect(b.all()).toEqual([]);
    expect(b.anyIn(0, 1 << 30)).toBe(false);
    expect(b.in(0, 1 << 30)).toEqual([]);
  });
});
