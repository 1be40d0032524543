import { describe, expect, it } from 'vitest';
import type { ErrnoName } from '../errno.js';
import type { KvmFile } from '../backend.js';
import { FakeGmem } from '../testing/fake-gmem.js';
import { memslotFailure } from '../testing/memslot-failure.js';
import { Tracer, recordTrace } from '../trace.js';
import {
  KVM_DIRTY_LOG_INITIALLY_SET,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
  KVM_MEMSLOT_GMEM_ONLY,
  KVM_MEMSLOT_INVALID,
  KVM_USER_MEM_SLOTS,
} from '../uapi.js';
import { TASK_SIZE_MAX } from '../host/address-space.js';
import { KvmMemorySlot } from './memslot.js';
import { memslotsSnapshot } from './memslots.js';
import {
  MemslotEngine,
  type KvmUserspaceMemoryRegion2,
  type MemslotChange,
  type MemslotHooks,
} from './set-memory-region.js';

const MiB = 1 << 20;
const HVA = 0x7f0000000000;

interface Calls {
  prepare: [MemslotChange, KvmMemorySlot | null, KvmMemorySlot | null][];
  flush: KvmMemorySlot[];
  commit: [MemslotChange, KvmMemorySlot | null, KvmMemorySlot | null][];
}

function setup(opts: { nrAsIds?: number; readonly?: boolean; pciHole?: boolean; prepareErr?: ErrnoName | null } = {}) {
  const files = new Map<number, KvmFile>();
  const vm = { name: 'vm' };
  const calls: Calls = { prepare: [], flush: [], commit: [] };
  const tracer = new Tracer();
  let prepareErr = opts.prepareErr ?? null;
  const hooks: MemslotHooks = {
    nrAsIds: () => opts.nrAsIds ?? 2,
    hasReadonlyMem: () => opts.readonly ?? true,
    pciHoleSupported: () => opts.pciHole ?? false,
    getFile: (fd) => files.get(fd),
    ownerVm: vm,
    archPrepareMemoryRegion: (c, o, n) => {
      calls.prepare.push([c, o, n]);
      return prepareErr;
    },
    flushShadowMemslot: (s) => void calls.flush.push(s),
    archCommitMemoryRegion: (c, o, n) => void calls.commit.push([c, o, n]),
    enableDirtyLogPtMasked: () => {},
    flushRemoteTlbs: () => {},
    tracer,
  };
  const engine = new MemslotEngine(hooks);
  return {
    engine,
    files,
    vm,
    calls,
    tracer,
    setPrepareErr: (e: ErrnoName | null) => (prepareErr = e),
    set: (r: Partial<KvmUserspaceMemoryRegion2>, v2 = true) => engine.setUserMemoryRegion(region(r), { v2 }),
  };
}

function region(r: Partial<KvmUserspaceMemoryRegion2>): KvmUserspaceMemoryRegion2 {
  return { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: HVA, ...r };
}

/** asserts the call fails with `code` and leaves every piece of memslot state unchanged */
function expectFail(env: ReturnType<typeof setup>, r: Partial<KvmUserspaceMemoryRegion2>, code: ErrnoName, v2 = true, check?: RegExp) {
  const err = memslotFailure(env.engine.slots, () => env.set(r, v2));
  expect(err.code).toBe(code);
  if (check) expect(err.check).toMatch(check);
  return err;
}

describe('KVM_SET_USER_MEMORY_REGION: u64 fields are checked exactly', () => {
  it('bigints keep the bits a double would round away; wraps are computed on u64', () => {
    const env = setup();
    // 2^56 + 4096 + 1 rounds to an aligned double, but is not page aligned
    expectFail(env, { guest_phys_addr: 2n ** 56n + 4097n, memory_size: 0x1000n }, 'EINVAL', true, /guest_phys_addr not page aligned/);
    expectFail(env, { memory_size: 2n ** 56n + 1n }, 'EINVAL', true, /memory_size not page aligned/);
    expectFail(env, { guest_phys_addr: 0xfffffffffffff000n, memory_size: 0x1000n }, 'EINVAL', true, /wraps/);
    expectFail(
      env,
      { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 3, guest_memfd_offset: 0xfffffffffffff000n, memory_size: 0x1000n },
      'EINVAL',
      true,
      /offset\+size wraps/,
    );
    expect(() => env.set({ guest_phys_addr: 2n ** 64n })).toThrow(RangeError);
    env.set({ guest_phys_addr: 0x100000n, memory_size: 0x200000n });
  });

  it('numbers below 2^53 are checked as numbers, larger or odd ones exactly', () => {
    const env = setup();
    // 2^53 - 4096 is the last safe page-aligned number; 2^53 + 4096 is exact too, but only as a u64
    expectFail(env, { guest_phys_addr: 2 ** 53 - 4095, memory_size: 0x1000 }, 'EINVAL', true, /guest_phys_addr not page aligned/);
    expectFail(env, { memory_size: 2 ** 53 - 1 }, 'EINVAL', true, /memory_size not page aligned/);
    expect(() => env.set({ guest_phys_addr: -4096 })).toThrow(RangeError);
    expect(() => env.set({ memory_size: 4096.5 })).toThrow(RangeError);
    env.set({ slot: 1, guest_phys_addr: 2 ** 53 - 0x200000, memory_size: 0x200000 });
    env.set({ slot: 2, guest_phys_addr: 2 ** 53 + 0x200000, memory_size: 0x200000 });
    expect(env.engine.gfnToMemslot(0, (2 ** 53 - 0x1000) / 4096)?.id).toBe(1);
    expect(env.engine.gfnToMemslot(0, (2 ** 53 + 0x200000) / 4096)?.id).toBe(2);
  });
});

describe('KVM_SET_USER_MEMORY_REGION checks (kvm-uapi.md §2, in order)', () => {
  it('legacy ioctl: flags beyond LOG_DIRTY_PAGES|READONLY → EINVAL before the slot check', () => {
    const env = setup();
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD }, 'EINVAL', false, /beyond v1/);
    expectFail(env, { flags: 1 << 3 }, 'EINVAL', false, /beyond v1/);
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, slot: KVM_USER_MEM_SLOTS }, 'EINVAL', false, /beyond v1/);
    // v1 ignores guest_memfd fields entirely
    env.set({ guest_memfd: 99, guest_memfd_offset: 123 }, false);
    expect(env.engine.idToMemslot(0, 0)?.gmemFile).toBeNull();
  });

  it('(u16)slot >= KVM_USER_MEM_SLOTS → EINVAL, as_id bits ignored there', () => {
    const env = setup();
    expectFail(env, { slot: KVM_USER_MEM_SLOTS }, 'EINVAL', true, /KVM_USER_MEM_SLOTS/);
    expectFail(env, { slot: (1 << 16) | 0xffff }, 'EINVAL', true, /KVM_USER_MEM_SLOTS/);
    // the slot check precedes the flag check
    expectFail(env, { slot: KVM_USER_MEM_SLOTS, flags: 1 << 9 }, 'EINVAL', true, /KVM_USER_MEM_SLOTS/);
    env.set({ slot: KVM_USER_MEM_SLOTS - 1 });
    expect(env.engine.idToMemslot(0, KVM_USER_MEM_SLOTS - 1)).not.toBeNull();
  });

  it('check_memory_region_flags()', () => {
    const env = setup();
    expectFail(env, { flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD }, 'EINVAL', true, /check_memory_region_flags/);
    expectFail(env, { flags: KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD }, 'EINVAL', true, /check_memory_region_flags/);
    expectFail(env, { flags: 1 << 3 }, 'EINVAL', true, /check_memory_region_flags/);
    expectFail(env, { flags: KVM_MEMSLOT_INVALID }, 'EINVAL', true, /check_memory_region_flags/);
    expectFail(env, { flags: KVM_MEM_PCI_HOLE, userspace_addr: 0 }, 'EINVAL', true, /check_memory_region_flags/);
    // the flag check precedes the size check
    expectFail(env, { flags: 1 << 3, memory_size: 1 }, 'EINVAL', true, /check_memory_region_flags/);
    const noRo = setup({ readonly: false });
    expectFail(noRo, { flags: KVM_MEM_READONLY }, 'EINVAL', true, /check_memory_region_flags/);
    env.set({ flags: KVM_MEM_READONLY });
    expect(env.engine.idToMemslot(0, 0)!.flags).toBe(KVM_MEM_READONLY);
  });

  it('sizes and addresses must be page aligned; hva must pass access_ok (also on DELETE)', () => {
    const env = setup();
    expectFail(env, { memory_size: 4097 }, 'EINVAL', true, /memory_size not page aligned/);
    expectFail(env, { guest_phys_addr: 0x800 }, 'EINVAL', true, /guest_phys_addr not page aligned/);
    expectFail(env, { userspace_addr: HVA + 8 }, 'EINVAL', true, /access_ok/);
    expectFail(env, { userspace_addr: TASK_SIZE_MAX }, 'EINVAL', true, /access_ok/);
    expectFail(env, { userspace_addr: TASK_SIZE_MAX - MiB }, 'EINVAL', true, /access_ok/);
    env.set({ userspace_addr: TASK_SIZE_MAX - 2 * MiB }); // ends exactly at TASK_SIZE_MAX
    expectFail(env, { memory_size: 0, userspace_addr: 1 }, 'EINVAL', true, /access_ok/);
    env.set({ memory_size: 0, userspace_addr: 0x1000 }); // DELETE ignores the (valid) hva value
    expect(env.engine.idToMemslot(0, 0)).toBeNull();
  });

  it('guest_memfd_offset must be aligned and not wrap', () => {
    const env = setup();
    const f = new FakeGmem(env.vm, 16 * MiB);
    env.files.set(5, f);
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 5, guest_memfd_offset: 100 }, 'EINVAL', true, /guest_memfd_offset/);
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 5, guest_memfd_offset: 2 ** 64 - 4096 }, 'EINVAL', true, /guest_memfd_offset/);
    // an unaligned offset is ignored without the flag
    env.set({ guest_memfd_offset: 100 });
  });

  it('as_id >= kvm_arch_nr_memslot_as_ids → EINVAL', () => {
    const one = setup({ nrAsIds: 1 });
    expectFail(one, { slot: 1 << 16 }, 'EINVAL', true, /as_id/);
    const two = setup({ nrAsIds: 2 });
    two.set({ slot: 1 << 16 });
    expect(two.engine.idToMemslot(1, 0)).not.toBeNull();
    expectFail(two, { slot: 2 << 16 }, 'EINVAL', true, /as_id/);
  });

  it('guest_phys_addr + memory_size wrapping u64 → EINVAL', () => {
    const env = setup();
    expectFail(env, { guest_phys_addr: 2 ** 64 - 4096, memory_size: 8192 }, 'EINVAL', true, /wraps/);
  });

  it('more than KVM_MEM_MAX_NR_PAGES pages → EINVAL; exactly the maximum is accepted', () => {
    const env = setup();
    expectFail(env, { memory_size: 2 ** 31 * 4096, userspace_addr: 0x1000 }, 'EINVAL', true, /KVM_MEM_MAX_NR_PAGES/);
    env.set({ memory_size: (2 ** 31 - 1) * 4096, userspace_addr: 0x1000 });
    expect(env.engine.slots.nrMemslotPages).toBe(2 ** 31 - 1);
  });

  it('DELETE of a missing slot → EINVAL', () => {
    const env = setup();
    expectFail(env, { memory_size: 0 }, 'EINVAL', true, /DELETE/);
  });

  it('modifying a slot: no GUEST_MEMFD, same hva, same size, same READONLY', () => {
    const env = setup();
    env.set({ flags: KVM_MEM_READONLY });
    expectFail(env, { flags: KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD }, 'EINVAL');
    expectFail(env, { flags: KVM_MEM_READONLY, userspace_addr: HVA + 2 * MiB }, 'EINVAL', true, /differ/);
    expectFail(env, { flags: KVM_MEM_READONLY, memory_size: 4 * MiB }, 'EINVAL', true, /differ/);
    expectFail(env, { flags: 0 }, 'EINVAL', true, /differ/);
  });

  it('a guest_memfd slot can only be deleted', () => {
    const env = setup();
    const f = new FakeGmem(env.vm, 16 * MiB);
    env.files.set(5, f);
    env.set({ flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 5 });
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 5, guest_phys_addr: 64 * MiB }, 'EINVAL', true, /immutable/);
    expectFail(env, { flags: 0, guest_phys_addr: 64 * MiB }, 'EINVAL', true, /differ/);
    expectFail(env, { flags: KVM_MEM_LOG_DIRTY_PAGES }, 'EINVAL', true, /differ/);
  });

  it('same slot, same flags: returns 0 and changes nothing (no generation bump)', () => {
    const env = setup();
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    const before = memslotsSnapshot(env.engine.slots);
    const op = env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(op.change).toBeNull();
    expect(memslotsSnapshot(env.engine.slots)).toEqual(before);
    expect(env.calls.prepare).toHaveLength(1);
  });

  it('overlap in the same address space → EEXIST; other address spaces and hva overlap are fine', () => {
    const env = setup();
    env.set({ slot: 0, guest_phys_addr: 0 });
    expectFail(env, { slot: 1, guest_phys_addr: MiB }, 'EEXIST');
    expectFail(env, { slot: 1, guest_phys_addr: 0, memory_size: 4096 }, 'EEXIST');
    env.set({ slot: 1, guest_phys_addr: 2 * MiB }); // adjacent, same hva
    env.set({ slot: (1 << 16) | 2, guest_phys_addr: 0 }); // as 1
    expect(env.engine.gfnToMemslot(1, 0)!.id).toBe(2);
    // MOVE may overlap itself, not others
    env.set({ slot: 0, guest_phys_addr: MiB * 100 });
    env.set({ slot: 0, guest_phys_addr: MiB * 101 });
    expectFail(env, { slot: 0, guest_phys_addr: 3 * MiB }, 'EEXIST');
    expect(env.engine.idToMemslot(0, 0)!.baseGfn).toBe((101 * MiB) / 4096);
  });

  it('guest_memfd binding: EBADF, not a gmem file, other VM, bind errors, GMEM_ONLY, unbind on delete', () => {
    const env = setup();
    const mine = new FakeGmem(env.vm, 4 * MiB);
    const theirs = new FakeGmem({ other: true }, 4 * MiB);
    const onlyFile = new FakeGmem(env.vm, 4 * MiB, null, true);
    env.files.set(3, { kind: 'kvm-vm', release() {} });
    env.files.set(4, theirs);
    env.files.set(5, mine);
    env.files.set(6, onlyFile);
    const g = { flags: KVM_MEM_GUEST_MEMFD };
    expectFail(env, { ...g, guest_memfd: 77 }, 'EBADF');
    expectFail(env, { ...g, guest_memfd: -1 }, 'EBADF');
    expectFail(env, { ...g, guest_memfd: 3 }, 'EINVAL', true, /not a guest_memfd/);
    expectFail(env, { ...g, guest_memfd: 4 }, 'EINVAL', true, /another VM/);
    expectFail(env, { ...g, guest_memfd: 5, guest_memfd_offset: 4 * MiB }, 'EINVAL', true, /offset/);
    expect(mine.bindings.size).toBe(0);
    env.set({ ...g, guest_memfd: 5, guest_memfd_offset: 2 * MiB });
    const slot = env.engine.idToMemslot(0, 0)!;
    expect(slot.gmemFile).toBe(mine);
    expect(slot.gmemPgoff).toBe(512);
    expect(slot.flags).toBe(KVM_MEM_GUEST_MEMFD);
    expect(mine.bindings.get(512)).toBe(slot);
    expectFail(env, { ...g, slot: 1, guest_phys_addr: 8 * MiB, guest_memfd: 5, guest_memfd_offset: 2 * MiB }, 'EEXIST', true, /bound/);
    env.set({ ...g, slot: 2, guest_phys_addr: 16 * MiB, guest_memfd: 6 });
    expect(env.engine.idToMemslot(0, 2)!.flags).toBe(KVM_MEM_GUEST_MEMFD | KVM_MEMSLOT_GMEM_ONLY);
    env.set({ slot: 0, memory_size: 0 });
    expect(mine.bindings.size).toBe(0);
    expect(mine.unbinds).toBe(1);
  });

  it('arch prepare failure: errno returned, nothing changed, gmem binding undone', () => {
    const env = setup();
    const f = new FakeGmem(env.vm, 4 * MiB);
    env.files.set(5, f);
    env.set({ slot: 1, guest_phys_addr: 64 * MiB, flags: KVM_MEM_LOG_DIRTY_PAGES });
    env.setPrepareErr('EINVAL');
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 5 }, 'EINVAL', true, /kvm_arch_prepare_memory_region/);
    expect(f.bindings.size).toBe(0);
    expectFail(env, { slot: 1, memory_size: 0 }, 'EINVAL', true, /kvm_arch_prepare/);
    expectFail(env, { slot: 1, guest_phys_addr: 0, flags: KVM_MEM_LOG_DIRTY_PAGES }, 'EINVAL', true, /kvm_arch_prepare/);
    expect(env.calls.flush).toHaveLength(0);
    expect(env.engine.idToMemslot(0, 1)!.dirtyBitmap).not.toBeNull();
  });
});

describe('memslot changes: generations, phases, accounting', () => {
  it('generation starts at as_id and advances by nr_as_ids per swap (DELETE/MOVE swap twice)', () => {
    const env = setup({ nrAsIds: 2 });
    const s = env.engine.slots;
    expect(s.memslots(0).generation).toBe(0);
    expect(s.memslots(1).generation).toBe(1);
    env.set({});
    expect(s.memslots(0).generation).toBe(2);
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES }); // FLAGS_ONLY: 1 swap
    expect(s.memslots(0).generation).toBe(4);
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 4 * MiB }); // MOVE: 2 swaps
    expect(s.memslots(0).generation).toBe(8);
    env.set({ memory_size: 0 }); // DELETE: 2 swaps
    expect(s.memslots(0).generation).toBe(12);
    expect(s.memslots(1).generation).toBe(1);
    expect(s.memslots(0).updateInProgress).toBe(false);
  });

  it('DELETE runs invalidate → zap → commit; the INVALID copy stays visible to gfn lookups', () => {
    const env = setup();
    env.set({ guest_phys_addr: 0 });
    const old = env.engine.idToMemslot(0, 0)!;
    const op = env.engine.beginSetUserMemoryRegion(region({ memory_size: 0 }), { v2: true });
    expect(op.change).toBe('DELETE');
    expect(op.phase).toBe('invalidate');
    expect(env.engine.slots.slotsLockHeld).toBe(true);
    expect(() => env.engine.beginSetUserMemoryRegion(region({ slot: 3, guest_phys_addr: 64 * MiB }), { v2: true })).toThrow(/slots_lock/);
    expect(op.step()).toBe(false);
    expect(op.phase).toBe('zap');
    const inv = env.engine.gfnToMemslot(0, 5)!;
    expect(inv).not.toBe(old);
    expect(inv.flags & KVM_MEMSLOT_INVALID).toBe(KVM_MEMSLOT_INVALID);
    expect(env.calls.flush).toHaveLength(0);
    expect(env.engine.slots.memslots(0).generation).toBe(4);
    expect(op.step()).toBe(false);
    expect(env.calls.flush).toEqual([old]);
    expect(op.phase).toBe('commit');
    expect(env.engine.slots.nrMemslotPages).toBe(512);
    expect(op.step()).toBe(true);
    expect(op.phase).toBe('done');
    expect(env.engine.gfnToMemslot(0, 5)).toBeNull();
    expect(env.engine.slots.nrMemslotPages).toBe(0);
    expect(env.calls.commit.at(-1)).toEqual(['DELETE', old, null]);
    expect(env.engine.slots.slotsLockHeld).toBe(false);
  });

  it('MOVE: new base, zap of the old slot, same dirty bitmap', () => {
    const env = setup();
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    const old = env.engine.idToMemslot(0, 0)!;
    const bitmap = old.dirtyBitmap;
    const op = env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 8 * MiB });
    expect(op.change).toBe('MOVE');
    expect(env.calls.flush).toEqual([old]);
    const moved = env.engine.idToMemslot(0, 0)!;
    expect(moved.baseGfn).toBe(2048);
    expect(moved.dirtyBitmap).toBe(bitmap);
    expect(env.engine.gfnToMemslot(0, 0)).toBeNull();
    expect(env.engine.gfnToMemslot(0, 2048)).toBe(moved);
    expect(env.engine.slots.nrMemslotPages).toBe(512);
  });

  it('CREATE and FLAGS_ONLY run only commit; dirty bitmaps follow LOG_DIRTY_PAGES', () => {
    const env = setup();
    const c = env.engine.beginSetUserMemoryRegion(region({ memory_size: 100 * 4096 }), { v2: true });
    expect(c.phase).toBe('commit');
    expect(env.engine.gfnToMemslot(0, 0)).toBeNull();
    expect(c.step()).toBe(true);
    expect(env.engine.idToMemslot(0, 0)!.dirtyBitmap).toBeNull();
    env.set({ memory_size: 100 * 4096, flags: KVM_MEM_LOG_DIRTY_PAGES });
    const s = env.engine.idToMemslot(0, 0)!;
    expect(s.dirtyBitmap!.nwords).toBe(4); // ALIGN(100, 64) / 32
    expect(Array.from(s.dirtyBitmap!.toUint32Array())).toEqual([0, 0, 0, 0]);
    expect(env.engine.slots.nrMemslotsDirtyLogging).toBe(1);
    expect(env.calls.flush).toHaveLength(0);
    env.set({ memory_size: 100 * 4096, flags: 0 });
    expect(env.engine.idToMemslot(0, 0)!.dirtyBitmap).toBeNull();
    expect(s.dirtyBitmap).toBeNull(); // the old slot's bitmap is freed
    expect(env.engine.slots.nrMemslotsDirtyLogging).toBe(0);
  });

  it('KVM_DIRTY_LOG_INITIALLY_SET: new bitmaps start with exactly npages bits set', () => {
    const env = setup();
    env.engine.slots.manualDirtyLogProtect = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
    env.set({ memory_size: 100 * 4096, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(Array.from(env.engine.idToMemslot(0, 0)!.dirtyBitmap!.toUint32Array())).toEqual([0xffffffff, 0xffffffff, 0xffffffff, 0xf]);
  });

  it('32764 user slots can coexist', () => {
    const env = setup();
    for (let id = 0; id < KVM_USER_MEM_SLOTS; id++) env.set({ slot: id, guest_phys_addr: id * 8192, memory_size: 8192 });
    expect(env.engine.slots.memslots(0).size).toBe(KVM_USER_MEM_SLOTS);
    expect(env.engine.gfnToMemslot(0, 2 * 32763 + 1)!.id).toBe(32763);
    expect(env.engine.slots.nrMemslotPages).toBe(2 * KVM_USER_MEM_SLOTS);
  });

  it('emits kvm_userspace_memory_region and kvm_memslot_change', () => {
    const env = setup();
    const { events } = recordTrace(env.tracer);
    env.set({ slot: 3, guest_phys_addr: 4 * MiB });
    env.set({ slot: 3, memory_size: 0 });
    expect(events.map((e) => [e.name, e.fields.change, e.fields.phase ?? null])).toEqual([
      ['kvm_userspace_memory_region', 'KVM_MR_CREATE', null],
      ['kvm_memslot_change', 'KVM_MR_CREATE', 'commit'],
      ['kvm_userspace_memory_region', 'KVM_MR_DELETE', null],
      ['kvm_memslot_change', 'KVM_MR_DELETE', 'invalidate'],
      ['kvm_memslot_change', 'KVM_MR_DELETE', 'zap'],
      ['kvm_memslot_change', 'KVM_MR_DELETE', 'commit'],
    ]);
    expect(events[0]!.fields).toMatchObject({ slot: 3, flags: 0, guest_phys_addr: 4 * MiB, memory_size: 2 * MiB, userspace_addr: HVA });
  });
});

describe('KVM_MEM_PCI_HOLE (RFC rules)', () => {
  it('only when offered; userspace_addr 0; exclusive with READONLY, LOG_DIRTY_PAGES, GUEST_MEMFD; immutable', () => {
    const env = setup({ pciHole: true });
    const P = KVM_MEM_PCI_HOLE;
    expectFail(env, { flags: P }, 'EINVAL', true, /userspace_addr == 0/);
    expectFail(env, { flags: P | KVM_MEM_READONLY, userspace_addr: 0 }, 'EINVAL', true, /PCI_HOLE with/);
    expectFail(env, { flags: P | KVM_MEM_LOG_DIRTY_PAGES, userspace_addr: 0 }, 'EINVAL', true, /PCI_HOLE with/);
    expectFail(env, { flags: P | KVM_MEM_GUEST_MEMFD, userspace_addr: 0 }, 'EINVAL', true, /PCI_HOLE with/);
    // placement: after the gpa alignment check, before the hva check
    expectFail(env, { flags: P | KVM_MEM_READONLY, guest_phys_addr: 1, userspace_addr: 0 }, 'EINVAL', true, /guest_phys_addr/);
    expectFail(env, { flags: P | KVM_MEM_READONLY, userspace_addr: 3 }, 'EINVAL', true, /PCI_HOLE with/);
    env.set({ flags: P, userspace_addr: 0, guest_phys_addr: 0xe0000000, memory_size: 256 * MiB }, false);
    const s = env.engine.idToMemslot(0, 0)!;
    expect(s.flags).toBe(P);
    expect(s.dirtyBitmap).toBeNull();
    expectFail(env, { flags: 0, userspace_addr: 0, guest_phys_addr: 0xe0000000, memory_size: 256 * MiB }, 'EINVAL', true, /PCI_HOLE differ/);
    env.set({ slot: 1, flags: 0, userspace_addr: HVA });
    expectFail(env, { slot: 1, flags: P, userspace_addr: HVA }, 'EINVAL', true, /userspace_addr == 0/);
    // a PCI hole slot can move
    env.set({ flags: P, userspace_addr: 0, guest_phys_addr: 0xd0000000, memory_size: 256 * MiB });
    expect(env.engine.gfnToMemslot(0, 0xd0000)).toBe(env.engine.idToMemslot(0, 0));
  });
});
