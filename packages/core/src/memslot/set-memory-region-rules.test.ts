/**
 * KVM_SET_USER_MEMORY_REGION(2) rules pinned one by one (virt/kvm/kvm_main.c: kvm_vm_ioctl(),
 * kvm_set_memory_region(), check_memory_region_flags(), kvm_prepare_memory_region(),
 * kvm_commit_memory_region(), kvm_free_memslot()): each case fails if the model drops or
 * bends one kernel rule, its errno, its place in the check order or the state a call leaves.
 */
import { describe, expect, it } from 'vitest';
import type { ErrnoName } from '../errno.js';
import type { KvmFile } from '../backend.js';
import { FakeGmem } from '../testing/fake-gmem.js';
import { memslotFailure } from '../testing/memslot-failure.js';
import { memslotHooks } from '../testing/memslot-hooks.js';
import { recordTrace } from '../trace.js';
import {
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_PCI_HOLE,
  KVM_MEM_READONLY,
} from '../uapi.js';
import { TASK_SIZE_MAX } from '../host/address-space.js';
import { KvmVmMemslots } from './memslots.js';
import { MemslotEngine, type KvmUserspaceMemoryRegion2, type MemslotHooks } from './set-memory-region.js';

const MiB = 1 << 20;
const HVA = 0x7f0000000000;
const GMEM_FD = 5;

function engineWith(overrides: Partial<MemslotHooks> = {}, slots?: KvmVmMemslots) {
  const files = new Map<number, KvmFile>();
  const owner = { vm: 1 };
  const hooks = memslotHooks({ nrAsIds: () => 2, getFile: (fd) => files.get(fd), ownerVm: owner, ...overrides });
  const engine = new MemslotEngine(hooks, slots);
  files.set(GMEM_FD, new FakeGmem(owner, 64 * MiB));
  const set = (r: Partial<KvmUserspaceMemoryRegion2>, v2 = true) => engine.setUserMemoryRegion(region(r), { v2 });
  return { engine, hooks, files, set };
}

function region(r: Partial<KvmUserspaceMemoryRegion2>): KvmUserspaceMemoryRegion2 {
  return { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: HVA, ...r };
}

function expectFail(env: ReturnType<typeof engineWith>, r: Partial<KvmUserspaceMemoryRegion2>, code: ErrnoName, check: RegExp, v2 = true) {
  const err = memslotFailure(env.engine.slots, () => env.set(r, v2));
  expect(err.code).toBe(code);
  expect(err.check).toMatch(check);
}

/** every u64 field of `r` as a bigint */
function asBigints(r: Partial<KvmUserspaceMemoryRegion2>): Partial<KvmUserspaceMemoryRegion2> {
  const out: Partial<KvmUserspaceMemoryRegion2> = { ...r };
  for (const k of ['guest_phys_addr', 'memory_size', 'userspace_addr', 'guest_memfd_offset'] as const) {
    const v = region(r)[k];
    if (v !== undefined) out[k] = BigInt(v);
  }
  return out;
}

describe('kvm_set_memory_region(): numbers and bigints take the same checks', () => {
  // one failing region per check of the general sanity checks, with the check it must fail
  const G = { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: GMEM_FD };
  const cases: [string, Partial<KvmUserspaceMemoryRegion2>, RegExp][] = [
    ['memory_size unaligned', { memory_size: 2 * MiB + 512 }, /memory_size not page aligned/],
    ['guest_phys_addr unaligned', { guest_phys_addr: 0x10 }, /guest_phys_addr not page aligned/],
    ['userspace_addr unaligned', { userspace_addr: HVA + 0x800 }, /access_ok/],
    ['userspace_addr past TASK_SIZE_MAX', { userspace_addr: TASK_SIZE_MAX }, /access_ok/],
    ['guest_memfd_offset unaligned', { ...G, guest_memfd_offset: 0x200 }, /guest_memfd_offset not aligned/],
    ['guest_memfd_offset + size wraps', { ...G, guest_memfd_offset: 2 ** 64 - 4096 }, /offset\+size wraps/],
    ['guest_phys_addr + size wraps', { guest_phys_addr: 2 ** 64 - MiB }, /guest_phys_addr \+ memory_size wraps/],
    ['PCI hole with a userspace_addr', { flags: KVM_MEM_PCI_HOLE, userspace_addr: 0x1000 }, /userspace_addr == 0/],
  ];
  for (const [name, r, check] of cases) {
    it(name, () => {
      const env = engineWith({ pciHoleSupported: () => true });
      expectFail(env, r, 'EINVAL', check);
      expectFail(env, asBigints(r), 'EINVAL', check);
    });
  }

  it('valid regions given as bigints are accepted like numbers, above 2^53 too', () => {
    const env = engineWith({ pciHoleSupported: () => true });
    env.set(asBigints({ slot: 0, guest_phys_addr: 2 ** 60, userspace_addr: HVA + 4096 }));
    expect(env.engine.idToMemslot(0, 0)).toMatchObject({ baseGfn: 2 ** 48, userspaceAddr: HVA + 4096, npages: 512 });
    env.set(asBigints({ slot: 1, flags: KVM_MEM_PCI_HOLE, userspace_addr: 0, guest_phys_addr: 0xe0000000 }));
    expect(env.engine.idToMemslot(0, 1)).toMatchObject({ flags: KVM_MEM_PCI_HOLE, userspaceAddr: 0 });
    env.set(asBigints({ slot: 2, flags: KVM_MEM_GUEST_MEMFD, guest_memfd: GMEM_FD, guest_memfd_offset: 4 * MiB, guest_phys_addr: 8 * MiB }));
    expect(env.engine.idToMemslot(0, 2)!.gmemPgoff).toBe(1024);
  });

  it('one bigint field among numbers is checked exactly too', () => {
    const env = engineWith();
    env.set({ slot: 0, userspace_addr: BigInt(HVA + 4096) });
    expect(env.engine.idToMemslot(0, 0)!.userspaceAddr).toBe(HVA + 4096);
    expectFail(env, { slot: 1, guest_phys_addr: 4 * MiB, userspace_addr: BigInt(HVA + 8) }, 'EINVAL', /access_ok/);
    const G = { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: GMEM_FD, guest_phys_addr: 8 * MiB };
    env.set({ ...G, slot: 2, guest_memfd_offset: BigInt(2 * MiB) });
    expect(env.engine.idToMemslot(0, 2)!.gmemPgoff).toBe(512);
    expectFail(env, { ...G, slot: 3, guest_phys_addr: 16 * MiB, guest_memfd_offset: 0x800n }, 'EINVAL', /guest_memfd_offset not aligned/);
  });

  it('a field that is no u64 is a RangeError naming it', () => {
    const env = engineWith();
    expect(() => env.set({ guest_phys_addr: -1 })).toThrow(/guest_phys_addr is not a u64/);
    expect(() => env.set({ memory_size: 2n ** 64n })).toThrow(/memory_size is not a u64/);
    expect(() => env.set({ userspace_addr: 0.5 })).toThrow(/userspace_addr is not a u64/);
    expect(() => env.set({ guest_memfd_offset: -4096 })).toThrow(/guest_memfd_offset is not a u64/);
  });
});

describe('kvm_vm_ioctl(): the legacy struct', () => {
  it('has no guest_memfd fields: whatever the caller put there is never read', () => {
    const env = engineWith();
    env.set({ guest_memfd_offset: -1, guest_memfd: 7 }, false);
    expect(env.engine.idToMemslot(0, 0)!.gmemPgoff).toBe(0);
    // the same field is read (and rejected) by KVM_SET_USER_MEMORY_REGION2
    expect(() => env.set({ slot: 1, guest_phys_addr: 4 * MiB, guest_memfd_offset: -1 })).toThrow(RangeError);
  });

  it('takes KVM_MEM_PCI_HOLE only when the host offers it; otherwise the v1 flag check fails first', () => {
    const off = engineWith();
    expectFail(off, { flags: KVM_MEM_PCI_HOLE, userspace_addr: 0 }, 'EINVAL', /beyond v1 flags/, false);
    const on = engineWith({ pciHoleSupported: () => true });
    on.set({ flags: KVM_MEM_PCI_HOLE, userspace_addr: 0 }, false);
    expect(on.engine.idToMemslot(0, 0)!.flags).toBe(KVM_MEM_PCI_HOLE);
  });
});

describe('check_memory_region_flags()', () => {
  it('KVM_MEM_GUEST_MEMFD is invalid without CONFIG_KVM_GUEST_MEMFD', () => {
    const env = engineWith({ guestMemfdSupported: () => false });
    expectFail(env, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: GMEM_FD }, 'EINVAL', /check_memory_region_flags/);
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY });
    const on = engineWith({ guestMemfdSupported: () => true });
    on.set({ flags: KVM_MEM_GUEST_MEMFD, guest_memfd: GMEM_FD });
    expect(on.engine.idToMemslot(0, 0)!.gmemFile).not.toBeNull();
  });
});

describe('kvm_set_memory_region(): general sanity checks', () => {
  it('access_ok() admits a size of TASK_SIZE_MAX at 0; the page limit then fails it', () => {
    const env = engineWith();
    expectFail(env, { userspace_addr: 0, memory_size: TASK_SIZE_MAX }, 'EINVAL', /KVM_MEM_MAX_NR_PAGES/);
    expectFail(env, { userspace_addr: 0x1000, memory_size: TASK_SIZE_MAX }, 'EINVAL', /access_ok/);
    expectFail(env, { userspace_addr: 0, memory_size: TASK_SIZE_MAX + 4096 }, 'EINVAL', /access_ok/);
  });

  it('as_id is checked against kvm_arch_nr_memslot_as_ids(), not the number of memslot arrays', () => {
    // a VM with private memory has one address space though `struct kvm` holds two arrays
    const oneOfTwo = engineWith({ nrAsIds: () => 1 }, new KvmVmMemslots(2));
    expectFail(oneOfTwo, { slot: 1 << 16 }, 'EINVAL', /as_id/);
    oneOfTwo.set({ slot: 0 });
    // and an address space without an array is refused, not looked up
    const twoOfOne = engineWith({ nrAsIds: () => 2 }, new KvmVmMemslots(1));
    expectFail(twoOfOne, { slot: 1 << 16 }, 'EINVAL', /as_id/);
  });
});

describe('kvm_set_memory_region(): what fails a valid request', () => {
  it('an overlap is EEXIST, a guest_memfd fd that is not open EBADF, each naming its check', () => {
    const env = engineWith();
    env.set({ slot: 0 });
    expectFail(env, { slot: 1, guest_phys_addr: MiB }, 'EEXIST', /overlaps another memslot/);
    expectFail(env, { slot: 1, guest_phys_addr: 4 * MiB, flags: KVM_MEM_GUEST_MEMFD, guest_memfd: 99 }, 'EBADF', /not an open fd/);
  });
});

describe('kvm_set_memory_region(): nr_memslot_pages', () => {
  it('DELETE: a slot with more pages than kvm->nr_memslot_pages is EIO (WARN_ON_ONCE), nothing changes', () => {
    const env = engineWith();
    env.set({ slot: 0 });
    env.engine.slots.nrMemslotPages = 511;
    expectFail(env, { slot: 0, memory_size: 0 }, 'EIO', /underflow/);
    expect(env.engine.idToMemslot(0, 0)).not.toBeNull();
    env.engine.slots.nrMemslotPages = 512; // exactly the slot's pages: deleted
    env.set({ slot: 0, memory_size: 0 });
    expect(env.engine.slots.nrMemslotPages).toBe(0);
  });

  it('CREATE: a total that wraps an unsigned long is EINVAL', () => {
    const env = engineWith();
    env.engine.slots.nrMemslotPages = 2 ** 64 - 2 * 4096;
    expectFail(env, { slot: 0, memory_size: 8192 * 4096, userspace_addr: 0x1000 }, 'EINVAL', /overflow/);
    env.set({ slot: 0, memory_size: 2 * MiB });
  });
});

describe('kvm_prepare_memory_region(): the dirty bitmap', () => {
  it('no bitmap without kvm_use_dirty_bitmap() (dirty ring only)', () => {
    const env = engineWith();
    env.engine.slots.dirtyRingOnly = true;
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(env.engine.idToMemslot(0, 0)!.dirtyBitmap).toBeNull();
    env.engine.slots.dirtyRingOnly = false;
    env.set({ slot: 1, guest_phys_addr: 4 * MiB, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(env.engine.idToMemslot(0, 1)!.dirtyBitmap).not.toBeNull();
  });

  it('KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE alone starts the bitmap clear; INITIALLY_SET needs both', () => {
    const env = engineWith();
    env.engine.slots.manualDirtyLogProtect = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    env.set({ memory_size: 64 * 4096, flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(Array.from(env.engine.idToMemslot(0, 0)!.dirtyBitmap!.toUint32Array())).toEqual([0, 0]);
  });
});

describe('kvm_commit_memory_region(): the old slot', () => {
  it('DELETE frees the old slot dirty bitmap (kvm_free_memslot)', () => {
    const env = engineWith();
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    const old = env.engine.idToMemslot(0, 0)!;
    expect(old.dirtyBitmap).not.toBeNull();
    env.set({ memory_size: 0 });
    expect(old.dirtyBitmap).toBeNull();
    expect(env.engine.slots.nrMemslotsDirtyLogging).toBe(0);
  });

  it('a MOVE that drops KVM_MEM_LOG_DIRTY_PAGES frees the old bitmap; one that keeps it hands it over', () => {
    const env = engineWith();
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    const first = env.engine.idToMemslot(0, 0)!;
    const bitmap = first.dirtyBitmap;
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 4 * MiB });
    const moved = env.engine.idToMemslot(0, 0)!;
    expect(moved.dirtyBitmap).toBe(bitmap);
    expect(first.dirtyBitmap).toBe(bitmap);
    env.set({ flags: 0, guest_phys_addr: 8 * MiB });
    expect(env.engine.idToMemslot(0, 0)!.dirtyBitmap).toBeNull();
    expect(moved.dirtyBitmap).toBeNull();
    expect(env.engine.slots.nrMemslotsDirtyLogging).toBe(0);
  });
});

describe('the memslot change op', () => {
  it('is named after kvm_set_memory_region and has no result before it is done', () => {
    const env = engineWith();
    const op = env.engine.beginSetUserMemoryRegion(region({}), { v2: true });
    expect(op.name).toBe('kvm_set_memory_region');
    expect(() => op.result()).toThrow(/before the change finished/);
    expect(op.step()).toBe(true);
    expect(op.result()).toBeUndefined();
    expect(op.step()).toBe(true); // done stays done
  });

  it('a request that changes nothing traces the region with change "none" and no memslot change', () => {
    const env = engineWith();
    env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    const { events } = recordTrace(env.hooks.tracer);
    const op = env.set({ flags: KVM_MEM_LOG_DIRTY_PAGES });
    expect(op.phase).toBe('done');
    expect(events.map((e) => [e.name, e.fields.change])).toEqual([['kvm_userspace_memory_region', 'none']]);
  });
});
