import { describe, expect, it } from 'vitest';
import { KvmError } from '../errno.js';
import type { ErrnoName } from '../errno.js';
import {
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_USER_MEM_SLOTS,
} from '../uapi.js';
import { memslotsSnapshot } from './memslots.js';
import { MemslotEngine } from './set-memory-region.js';
import { memslotHooks } from '../testing/memslot-hooks.js';
import { DirtyLog, markPageDirtyInSlot, testDirtyBit } from './dirty-log.js';
import type { KvmMemorySlot } from './memslot.js';

function setup(nrAsIds = 2) {
  const rearmed: [number, number, number][] = [];
  let flushes = 0;
  const hooks = memslotHooks({
    nrAsIds: () => nrAsIds,
    enableDirtyLogPtMasked: (slot, off, mask) => void rearmed.push([slot.id, off, mask]),
    flushRemoteTlbs: () => void flushes++,
  });
  const engine = new MemslotEngine(hooks);
  const log = new DirtyLog(engine, hooks);
  const create = (id: number, npages: number, flags = KVM_MEM_LOG_DIRTY_PAGES, gfn = id * 0x10000) =>
    engine.setUserMemoryRegion(
      { slot: id, flags, guest_phys_addr: gfn * 4096, memory_size: npages * 4096, userspace_addr: 0x100000000000 + gfn * 4096 },
      { v2: true },
    );
  return { engine, log, rearmed, flushes: () => flushes, create, slot: (id: number) => engine.idToMemslot(0, id)! };
}

function expectFail(env: ReturnType<typeof setup>, fn: () => unknown, code: ErrnoName, check?: RegExp) {
  const before = memslotsSnapshot(env.engine.slots);
  const rearmed = env.rearmed.length;
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvmError);
  expect((err as KvmError).code).toBe(code);
  if (check) expect((err as KvmError).check).toMatch(check);
  expect(memslotsSnapshot(env.engine.slots)).toEqual(before);
  expect(env.rearmed.length).toBe(rearmed);
}

function dirty(slot: KvmMemorySlot, ...pages: number[]) {
  for (const p of pages) markPageDirtyInSlot(slot, slot.baseGfn + p);
}

function bitsOf(bitmap: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bitmap.length * 8; i++) if ((bitmap[i >> 3]! >> (i & 7)) & 1) out.push(i);
  return out;
}

describe('KVM_GET_DIRTY_LOG', () => {
  it('layout: ALIGN(npages, 64)/8 bytes, bit i = page i, little-endian', () => {
    const env = setup();
    env.create(0, 100);
    const s = env.slot(0);
    dirty(s, 0, 9, 63, 64, 99);
    const bm = env.log.getDirtyLog({ slot: 0 });
    expect(bm.length).toBe(16);
    expect(bm[0]).toBe(0b1);
    expect(bm[1]).toBe(0b10); // page 9
    expect(bm[7]).toBe(0x80); // page 63
    expect(bm[8]).toBe(0b1); // page 64
    expect(bitsOf(bm)).toEqual([0, 9, 63, 64, 99]);
  });

  it('without manual protect: takes and zeroes the bits, re-arms exactly those, flushes once', () => {
    const env = setup();
    env.create(0, 128);
    const s = env.slot(0);
    dirty(s, 1, 33, 70);
    const bm = env.log.getDirtyLog({ slot: 0 });
    expect(bitsOf(bm)).toEqual([1, 33, 70]);
    expect(env.rearmed).toEqual([
      [0, 0, 0b10],
      [0, 32, 0b10],
      [0, 64, 0b1000000],
    ]);
    expect(env.flushes()).toBe(1);
    expect(Array.from(s.dirtyBitmap!.toUint32Array())).toEqual([0, 0, 0, 0]);
    expect(bitsOf(env.log.getDirtyLog({ slot: 0 }))).toEqual([]);
    expect(env.flushes()).toBe(1); // nothing taken: no flush
  });

  it('with manual protect: copies the live bitmap unchanged, no re-arm', () => {
    const env = setup();
    env.log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 0);
    env.create(0, 64);
    dirty(env.slot(0), 5);
    expect(bitsOf(env.log.getDirtyLog({ slot: 0 }))).toEqual([5]);
    expect(bitsOf(env.log.getDirtyLog({ slot: 0 }))).toEqual([5]);
    expect(env.rearmed).toEqual([]);
  });

  it('errors: ENXIO (dirty ring only), EINVAL (as_id / id), ENOENT (no slot / no bitmap)', () => {
    const env = setup(1);
    env.create(0, 64, 0);
    env.create(1, 64);
    expectFail(env, () => env.log.getDirtyLog({ slot: 1 << 16 }), 'EINVAL');
    expectFail(env, () => env.log.getDirtyLog({ slot: KVM_USER_MEM_SLOTS }), 'EINVAL');
    expectFail(env, () => env.log.getDirtyLog({ slot: 7 }), 'ENOENT');
    expectFail(env, () => env.log.getDirtyLog({ slot: 0 }), 'ENOENT');
    env.engine.slots.dirtyRingOnly = true;
    expectFail(env, () => env.log.getDirtyLog({ slot: 1 << 16 }), 'ENXIO');
  });
});

describe('KVM_CLEAR_DIRTY_LOG', () => {
  it('clears user-selected bits, re-arms only bits that were set, bits beyond the slot are harmless', () => {
    const env = setup();
    env.log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 0);
    env.create(0, 100);
    const s = env.slot(0);
    dirty(s, 3, 64, 65, 99);
    const user = new Uint8Array(8);
    user[0] = 0b1100; // pages 66, 67: 66 not dirty (only 64+2)
    user[7] = 0xff; // pages 120..127: beyond the slot
    env.log.clearDirtyLog({ slot: 0, first_page: 64, num_pages: 36, dirty_bitmap: user });
    expect(env.rearmed).toEqual([]); // 66, 67 were not dirty
    user[0] = 0b11; // 64, 65
    env.log.clearDirtyLog({ slot: 0, first_page: 64, num_pages: 36, dirty_bitmap: user });
    expect(env.rearmed).toEqual([[0, 64, 0b11]]);
    expect(env.flushes()).toBe(1);
    expect(testDirtyBit(s, s.baseGfn + 3)).toBe(true);
    expect(testDirtyBit(s, s.baseGfn + 99)).toBe(true);
    expect(testDirtyBit(s, s.baseGfn + 64)).toBe(false);
  });

  it('checks in order: ENXIO, EINVAL ids, first_page % 64 before slot lookup, ENOENT, range, EFAULT', () => {
    const env = setup(1);
    env.create(0, 192);
    env.create(1, 64, 0);
    const buf = new Uint8Array(64);
    const c = (o: { slot?: number; first_page?: number; num_pages?: number; dirty_bitmap?: Uint8Array | null }) => () =>
      env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 192, dirty_bitmap: buf, ...o });
    expectFail(env, c({ slot: 1 << 16 }), 'EINVAL', /bad address space/);
    expectFail(env, c({ slot: 9, first_page: 1 }), 'EINVAL', /multiple of 64/);
    expectFail(env, c({ slot: 9 }), 'ENOENT');
    expectFail(env, c({ slot: 1 }), 'ENOENT');
    expectFail(env, c({ first_page: 256, num_pages: 0 }), 'EINVAL', /range/);
    expectFail(env, c({ first_page: 64, num_pages: 129 }), 'EINVAL', /range/);
    expectFail(env, c({ first_page: 0, num_pages: 100 }), 'EINVAL', /range/); // not a multiple of 64, not to the end
    expectFail(env, c({ dirty_bitmap: null }), 'EFAULT');
    expectFail(env, c({ dirty_bitmap: new Uint8Array(23) }), 'EFAULT');
    env.engine.slots.dirtyRingOnly = true;
    expectFail(env, c({ slot: 1 << 16 }), 'ENXIO');
    env.engine.slots.dirtyRingOnly = false;
    // accepted: multiple of 64, or exactly to the end, or empty at the end
    env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 64, dirty_bitmap: buf });
    env.log.clearDirtyLog({ slot: 0, first_page: 128, num_pages: 64, dirty_bitmap: buf });
    env.log.clearDirtyLog({ slot: 0, first_page: 192, num_pages: 0, dirty_bitmap: null });
  });
});

describe('manual protect capability and markPageDirtyInSlot', () => {
  it('KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) argument rules', () => {
    const env = setup();
    expectFail(env, () => env.log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_INITIALLY_SET, 0), 'EINVAL');
    expectFail(env, () => env.log.enableManualDirtyLogProtect(4 | 1, 0), 'EINVAL');
    expectFail(env, () => env.log.enableManualDirtyLogProtect(1, 1), 'EINVAL');
    expectFail(env, () => env.log.enableManualDirtyLogProtect(2 ** 32 + 1, 0), 'EINVAL');
    env.log.enableManualDirtyLogProtect(3, 0);
    expect(env.log.initiallySet).toBe(true);
    env.log.enableManualDirtyLogProtect(0, 0);
    expect(env.log.manualProtect).toBe(false);
    env.log.enableManualDirtyLogProtect(1, 0);
    expect(env.log.manualProtect).toBe(true);
    expect(env.log.initiallySet).toBe(false);
  });

  it('INITIALLY_SET slots report every page dirty until cleared', () => {
    const env = setup();
    env.log.enableManualDirtyLogProtect(3, 0);
    env.create(0, 70);
    expect(bitsOf(env.log.getDirtyLog({ slot: 0 }))).toEqual(Array.from({ length: 70 }, (_, i) => i));
    env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 70, dirty_bitmap: new Uint8Array(16).fill(0xff) });
    expect(env.rearmed).toEqual([
      [0, 0, 0xffffffff],
      [0, 32, 0xffffffff],
      [0, 64, 0x3f],
    ]);
    expect(bitsOf(env.log.getDirtyLog({ slot: 0 }))).toEqual([]);
  });

  it('mark_page_dirty_in_slot only logs for LOG_DIRTY_PAGES slots; the INVALID copy shares the bitmap', () => {
    const env = setup();
    env.create(0, 64, 0);
    env.create(1, 64);
    markPageDirtyInSlot(env.slot(0), env.slot(0).baseGfn + 1);
    markPageDirtyInSlot(null, 5);
    expect(env.slot(0).dirtyBitmap).toBeNull();
    const op = env.engine.beginSetUserMemoryRegion(
      { slot: 1, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x7000000 * 4096, memory_size: 64 * 4096, userspace_addr: 0x100000000000 + 0x10000 * 4096 },
      { v2: true },
    );
    op.step();
    const inv = env.engine.gfnToMemslot(0, 0x10000)!;
    markPageDirtyInSlot(inv, 0x10000 + 7);
    expect(() => env.log.getDirtyLog({ slot: 1 })).toThrow(/slots_lock/);
    op.step();
    op.step();
    expect(bitsOf(env.log.getDirtyLog({ slot: 1 }))).toEqual([7]);
  });
});
