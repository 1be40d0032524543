import { describe, expect, it } from 'vitest';
import { MemslotGfnIndex } from './gfn-index.js';
import { MemslotEngine } from './set-memory-region.js';
import { memslotHooks } from '../testing/memslot-hooks.js';
import { KvmMemorySlot } from './memslot.js';

const HVA = 0x7e0000000000;

function slotOf(i: number, [b, e]: [number, number]): KvmMemorySlot {
  return new KvmMemorySlot(0, i, b, e - b, HVA + b * 4096, 0);
}

function indexOf(ranges: [number, number][], slots = ranges.map((r, i) => slotOf(i, r))): MemslotGfnIndex {
  const ix = new MemslotGfnIndex();
  ix.rebuild(ranges.length, (add) => ranges.forEach(([b, e], i) => add(b, e, 100 + i, slots[i]!)));
  return ix;
}

describe('MemslotGfnIndex', () => {
  it('finds the record holding a gfn, and nothing in gaps, below the first or past the last slot', () => {
    // uneven sizes and gaps: the interpolation guess is off and the gallop has to correct it
    const ranges: [number, number][] = [[10, 11], [11, 20], [40, 41], [1000, 5000], [5000, 5001], [9000, 9512]];
    const slots = ranges.map((r, i) => slotOf(i, r));
    const ix = indexOf(ranges, slots);
    const got: string[] = [];
    const want: string[] = [];
    for (let gfn = 0; gfn < 10000; gfn++) {
      const w = ranges.findIndex(([b, e]) => gfn >= b && gfn < e);
      want.push(w < 0 ? `${gfn}: none` : `${gfn}: ${w} [${ranges[w]![0]}, ${ranges[w]![1]}) -> ${100 + w} slot ${w}`);
      const k = ix.find(gfn);
      const s = ix.findSlot(gfn);
      got.push(k < 0 ? `${gfn}: none${s === null ? '' : ` but findSlot gave slot ${s.id}`}` : `${gfn}: ${k} [${ix.baseAt(k)}, ${ix.endAt(k)}) -> ${ix.indexAt(k)} slot ${s?.id}`);
    }
    expect(got).toEqual(want);
  });

  it('is empty with no slots, and refuses records out of order or miscounted', () => {
    expect(indexOf([]).find(0)).toBe(-1);
    expect(indexOf([]).findSlot(0)).toBeNull();
    const one = indexOf([[7, 9]]);
    expect([6, 7, 8, 9].map((g) => one.findSlot(g)?.baseGfn ?? null)).toEqual([null, 7, 7, null]);
    const ix = new MemslotGfnIndex();
    const s = slotOf(0, [5, 6]);
    expect(() => ix.rebuild(2, (add) => (add(5, 6, 0, s), add(5, 7, 1, s)))).toThrow(/increasing base_gfn/);
    expect(() => ix.rebuild(2, (add) => add(5, 6, 0, s))).toThrow(/1 slots given, 2 announced/);
    expect(ix.valid).toBe(false);
    expect(ix.findSlot(5)).toBeNull();
  });
});

describe('KvmMemslots gfn lookups through the flat index', () => {
  const region = (slot: number, gfn: number, npages: number) => ({
    slot,
    flags: 0,
    guest_phys_addr: gfn * 4096,
    memory_size: npages * 4096,
    userspace_addr: HVA + gfn * 4096,
  });

  /** every gfn of [0, limit) against the slots' own ranges */
  function expectLookups(slots: KvmMemorySlot[], lookup: (gfn: number) => KvmMemorySlot | null, limit: number): void {
    for (let gfn = 0; gfn < limit; gfn++) {
      const want = slots.find((s) => gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) ?? null;
      const got = lookup(gfn);
      if (got !== want) expect({ gfn, got: got?.id, want: want?.id }).toEqual({ gfn, got: want?.id, want: want?.id });
    }
  }

  it('is built after as many lookups as slots, dropped by every change, and answers like the tree', () => {
    const engine = new MemslotEngine(memslotHooks());
    const space = engine.slots.memslots(0);
    const sizes = [1, 3, 512, 7, 64, 2, 100, 9];
    let gfn = 5;
    for (let id = 0; id < 40; id++) {
      const n = sizes[id % sizes.length]!;
      engine.setUserMemoryRegion(region(id, gfn, n), { v2: true });
      gfn += n + (id % 3); // some slots back to back, some with a gap
    }
    const limit = gfn + 10;
    expect(space.gfnIndexValid).toBe(false);
    // the first pass uses the tree and, past the slot count, builds the index
    expectLookups(space.slots(), (g) => space.gfnToMemslot(g), limit);
    expect(space.gfnIndexValid).toBe(true);
    expectLookups(space.slots(), (g) => space.gfnToMemslot(g), limit);

    // delete: the index is dropped at once, and the deleted range is a hole
    engine.setUserMemoryRegion({ ...region(7, 0, 0), memory_size: 0 }, { v2: true });
    expect(space.gfnIndexValid).toBe(false);
    expectLookups(space.slots(), (g) => space.gfnToMemslot(g), limit);
    expect(space.gfnIndexValid).toBe(true);
    expect(space.slots().some((s) => s.id === 7)).toBe(false);

    // create in a hole and past the end
    engine.setUserMemoryRegion(region(100, limit + 3, 4), { v2: true });
    expect(space.gfnIndexValid).toBe(false);
    expectLookups(space.slots(), (g) => space.gfnToMemslot(g), limit + 20);
    expect(space.gfnIndexValid).toBe(true);
    expect(space.gfnToMemslot(limit + 3)?.id).toBe(100);

    // a flags-only change swaps the slot object: the index must hand out the new one
    const before = space.gfnToMemslot(limit + 3)!;
    engine.setUserMemoryRegion({ ...region(100, limit + 3, 4), flags: 1 /* KVM_MEM_LOG_DIRTY_PAGES */ }, { v2: true });
    expect(space.gfnIndexValid).toBe(false);
    expectLookups(space.slots(), (g) => space.gfnToMemslot(g), limit + 20);
    const after = space.gfnToMemslot(limit + 3)!;
    expect(after).not.toBe(before);
    expect(after).toBe(space.idToMemslot(100));
    expect(after.flags & 1).toBe(1);
  });
});
