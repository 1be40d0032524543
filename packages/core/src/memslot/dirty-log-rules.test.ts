/**
 * KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG / KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 rules pinned one
 * by one (virt/kvm/kvm_main.c: kvm_get_dirty_log_protect(), kvm_clear_dirty_log_protect(),
 * mark_page_dirty_in_slot(), kvm_vm_ioctl_enable_cap_generic()), including the whole-chunk
 * paths of the sparse bitmap: each case fails if the model drops or bends one rule.
 */
import { describe, expect, it } from 'vitest';
import { KvmError } from '../errno.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_MEM_LOG_DIRTY_PAGES } from '../uapi.js';
import { memslotHooks } from '../testing/memslot-hooks.js';
import { MemslotEngine } from './set-memory-region.js';
import { DirtyLog, markPageDirtyInSlot, testDirtyBit } from './dirty-log.js';
import { DIRTY_CHUNK_PAGES, DirtyBitmap } from './dirty-bitmap.js';

const BOTH = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

function setup(opts: { rangeHook?: boolean } = {}) {
  const masked: [number, number][] = [];
  const ranges: [number, number][] = [];
  let flushes = 0;
  const hooks = memslotHooks({
    enableDirtyLogPtMasked: (_slot, off, mask) => void masked.push([off, mask]),
    flushRemoteTlbs: () => void flushes++,
  });
  const engine = new MemslotEngine(hooks);
  const log = new DirtyLog(engine, {
    ...hooks,
    ...(opts.rangeHook ? { enableDirtyLogPtRange: (_slot: unknown, off: number, n: number) => void ranges.push([off, n]) } : {}),
  });
  const create = (npages: number, flags = KVM_MEM_LOG_DIRTY_PAGES) =>
    engine.setUserMemoryRegion(
      { slot: 0, flags, guest_phys_addr: 0x100000000, memory_size: npages * 4096, userspace_addr: 0x100000000000 },
      { v2: true },
    );
  return { engine, log, masked, ranges, flushes: () => flushes, create, slot: () => engine.idToMemslot(0, 0)! };
}

describe('mark_page_dirty_in_slot() and test_bit_le()', () => {
  it('a logging slot without a bitmap (dirty ring only) records nothing and reads clean', () => {
    const env = setup();
    env.engine.slots.dirtyRingOnly = true;
    env.create(64);
    const s = env.slot();
    expect(s.dirtyBitmap).toBeNull();
    markPageDirtyInSlot(s, s.baseGfn + 1);
    expect(testDirtyBit(s, s.baseGfn + 1)).toBe(false);
  });

  it('a gfn outside the slot is a model bug (RangeError), the slot edges are not', () => {
    const env = setup();
    env.create(64);
    const s = env.slot();
    expect(() => markPageDirtyInSlot(s, s.baseGfn - 1)).toThrow(RangeError);
    expect(() => markPageDirtyInSlot(s, s.baseGfn + 64)).toThrow(RangeError);
    markPageDirtyInSlot(s, s.baseGfn);
    markPageDirtyInSlot(s, s.baseGfn + 63);
    expect([0, 1, 62, 63].map((p) => testDirtyBit(s, s.baseGfn + p))).toEqual([true, false, false, true]);
  });
});

describe('KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): args[0] is a u64', () => {
  it('2^32, a fraction or a negative number is EINVAL and changes nothing', () => {
    const env = setup();
    for (const bad of [2 ** 32, 2 ** 32 + 3, 1.5, -(2 ** 32), -1]) {
      let err: unknown = null;
      try {
        env.log.enableManualDirtyLogProtect(bad, 0);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KvmError);
      expect((err as KvmError).code).toBe('EINVAL');
      expect(env.engine.slots.manualDirtyLogProtect).toBe(0);
    }
    env.log.enableManualDirtyLogProtect(BOTH, 0);
    expect(env.engine.slots.manualDirtyLogProtect).toBe(BOTH);
  });
});

describe('KVM_GET_DIRTY_LOG without manual protect', () => {
  it('nothing dirty: nothing re-armed, no TLB flush, an all-zero copy', () => {
    const env = setup();
    env.create(100);
    expect(Array.from(env.log.getDirtyLog({ slot: 0 }))).toEqual(new Array(16).fill(0));
    expect(env.masked).toEqual([]);
    expect(env.flushes()).toBe(0);
  });

  it('full chunks are taken whole: every page reported, re-armed word by word, one flush', () => {
    const env = setup();
    const npages = DIRTY_CHUNK_PAGES + 40;
    env.log.enableManualDirtyLogProtect(BOTH, 0);
    env.create(npages); // the bitmap starts all set
    env.log.enableManualDirtyLogProtect(0, 0);
    const out = env.log.getDirtyLogBitmap({ slot: 0 });
    expect(out.count()).toBe(npages);
    expect(env.flushes()).toBe(1);
    expect(env.masked).toHaveLength(Math.ceil(npages / 32));
    expect(env.masked[0]).toEqual([0, 0xffffffff]);
    expect(env.masked.at(-1)).toEqual([DIRTY_CHUNK_PAGES + 32, 0xff]);
    expect(env.slot().dirtyBitmap!.count()).toBe(0);
    // taken: the next call finds nothing
    expect(env.log.getDirtyLogBitmap({ slot: 0 }).count()).toBe(0);
    expect(env.flushes()).toBe(1);
  });

  it('with a range re-arm hook each full chunk is re-armed in one call, up to the slot end', () => {
    const env = setup({ rangeHook: true });
    const npages = DIRTY_CHUNK_PAGES + 40;
    env.log.enableManualDirtyLogProtect(BOTH, 0);
    env.create(npages);
    env.log.enableManualDirtyLogProtect(0, 0);
    env.log.getDirtyLogBitmap({ slot: 0 });
    expect(env.ranges).toEqual([
      [0, DIRTY_CHUNK_PAGES],
      [DIRTY_CHUNK_PAGES, 40],
    ]);
    expect(env.masked).toEqual([]);
  });
});

describe('KVM_CLEAR_DIRTY_LOG with a sparse user bitmap', () => {
  it('a user bitmap covering a full chunk clears it whole and re-arms it in one call', () => {
    const env = setup({ rangeHook: true });
    const npages = 2 * DIRTY_CHUNK_PAGES;
    env.log.enableManualDirtyLogProtect(BOTH, 0);
    env.create(npages);
    const user = new DirtyBitmap(npages, true);
    env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: npages, dirty_bitmap: user });
    expect(env.ranges).toEqual([
      [0, DIRTY_CHUNK_PAGES],
      [DIRTY_CHUNK_PAGES, DIRTY_CHUNK_PAGES],
    ]);
    expect(env.slot().dirtyBitmap!.count()).toBe(0);
    expect(env.flushes()).toBe(1);
  });

  it('a full chunk the user bitmap only partly covers is cleared bit by bit', () => {
    const env = setup({ rangeHook: true });
    const npages = DIRTY_CHUNK_PAGES;
    env.log.enableManualDirtyLogProtect(BOTH, 0);
    env.create(npages);
    const user = new DirtyBitmap(npages);
    user.set(5);
    user.set(npages - 1);
    env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: npages, dirty_bitmap: user });
    expect(env.ranges).toEqual([]);
    expect(env.masked).toEqual([
      [0, 1 << 5],
      [npages - 32, 0x80000000],
    ]);
    const b = env.slot().dirtyBitmap!;
    expect(b.count()).toBe(npages - 2);
    expect([b.test(5), b.test(6), b.test(npages - 1)]).toEqual([false, true, false]);
  });

  it('zero chunks of the user bitmap are skipped; a range starting past the first chunk reaches its own chunk', () => {
    const env = setup();
    const npages = 3 * DIRTY_CHUNK_PAGES;
    env.log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 0);
    env.create(npages);
    const s = env.slot();
    for (const p of [1, DIRTY_CHUNK_PAGES + 1, 2 * DIRTY_CHUNK_PAGES + 7]) markPageDirtyInSlot(s, s.baseGfn + p);
    // the user bitmap for [C, 3C): its first chunk is all zero, its second selects page 7
    const user = new DirtyBitmap(2 * DIRTY_CHUNK_PAGES);
    user.set(DIRTY_CHUNK_PAGES + 7);
    env.log.clearDirtyLog({ slot: 0, first_page: DIRTY_CHUNK_PAGES, num_pages: 2 * DIRTY_CHUNK_PAGES, dirty_bitmap: user });
    expect(env.masked).toEqual([[2 * DIRTY_CHUNK_PAGES, 1 << 7]]);
    expect([1, DIRTY_CHUNK_PAGES + 1, 2 * DIRTY_CHUNK_PAGES + 7].map((p) => testDirtyBit(s, s.baseGfn + p))).toEqual([true, true, false]);
  });

  it('a byte buffer longer than needed is read only for num_pages', () => {
    const env = setup();
    env.log.enableManualDirtyLogProtect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 0);
    env.create(128);
    const s = env.slot();
    for (const p of [0, 64, 65]) markPageDirtyInSlot(s, s.baseGfn + p);
    env.log.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 64, dirty_bitmap: new Uint8Array(32).fill(0xff) });
    expect(env.masked).toEqual([[0, 1]]);
    expect([0, 64, 65].map((p) => testDirtyBit(s, s.baseGfn + p))).toEqual([false, true, true]);
  });
});
