import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
} from '@ccmem/core';
import { RealKvm, type RealVm } from './real-kvm.js';
import type { RealVcpu } from './vcpu.js';
import { GUEST_SLOT_ID, installGuest, type TinyGuest } from './guest.js';
import { close, mmap, munmap, read, write } from './host-memory.js';
import { describeWithKvm } from './testing/kvm-gate.js';

const MiB = 0x10_0000;

/** set bits of a dirty bitmap, as page indexes */
function dirtyPages(bitmap: Uint8Array): number[] {
  const out: number[] = [];
  bitmap.forEach((byte, i) => {
    for (let b = 0; b < 8; b++) if (byte & (1 << b)) out.push(i * 8 + b);
  });
  return out;
}

describeWithKvm('the tiny guest performs real accesses (needs /dev/kvm)', () => {
  let kvm: RealKvm;
  let vm: RealVm;
  let vcpu: RealVcpu;
  let guest: TinyGuest;
  let hva: number;
  beforeEach(() => {
    kvm = RealKvm.open();
    vm = kvm.createVm(0);
    vcpu = vm.createVcpu(0);
    guest = installGuest(vm, vcpu);
    hva = mmap({ length: 8 * MiB });
  });
  afterEach(() => {
    vm.close();
    kvm.close();
    munmap(hva, 8 * MiB);
  });

  it('reads what the host wrote through the hva, at every width', () => {
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 2 * MiB, userspace_addr: hva });
    write(hva + 0x1238, 8, 0x8877665544332211n);
    expect(guest.guestAccess({ kind: 'read', gpa: 0x4000_1238, size: 8 })).toEqual({ value: 0x8877665544332211n });
    expect(vcpu.guestAccess({ kind: 'read', gpa: 0x4000_1238, size: 4 })).toEqual({ value: 0x44332211n });
    expect(guest.guestAccess({ kind: 'read', gpa: 0x4000_123a, size: 2 })).toEqual({ value: 0x4433n });
    expect(guest.guestAccess({ kind: 'read', gpa: 0x4000_123f, size: 1 })).toEqual({ value: 0x88n });
    expect(guest.guestAccess({ kind: 'fetch', gpa: 0x4000_1238 })).toEqual({ value: 0x11n, fetchAsRead: true });
  });

  it('guest writes are visible to the host, truncated to the access width', () => {
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
    write(hva + 0x100, 8, 0n);
    expect(guest.guestAccess({ kind: 'write', gpa: 0x100, size: 2, value: 0xabcdefn })).toEqual({ value: 0xcdefn });
    expect(read(hva + 0x100, 8)).toBe(0xcdefn);
    guest.guestAccess({ kind: 'write', gpa: 0x1ffff8, size: 8, value: 0x0123456789abcdefn });
    expect(read(hva + 0x1ffff8, 8)).toBe(0x0123456789abcdefn);
  });

  it('a write to a read-only slot exits with KVM_EXIT_MMIO carrying the data; reads work', () => {
    vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_READONLY, guest_phys_addr: 0x20_0000, memory_size: 2 * MiB, userspace_addr: hva });
    write(hva + 0x40, 4, 0x11223344n);
    const w = guest.guestAccess({ kind: 'write', gpa: 0x20_0040, size: 4, value: 0xfeedfacen });
    expect(w.exit).toEqual({
      reason: 'KVM_EXIT_MMIO',
      mmio: { phys_addr: 0x20_0040, data: expect.any(BigInt), len: 4, is_write: true },
    });
    expect(w.exit && 'mmio' in w.exit && w.exit.mmio.data & 0xffffffffn).toBe(0xfeedfacen);
    expect(read(hva + 0x40, 4)).toBe(0x11223344n);
    // the pending write is completed before the next access, which then reads the slot
    expect(guest.guestAccess({ kind: 'read', gpa: 0x20_0040, size: 4 })).toEqual({ value: 0x11223344n });
  });

  it('a read of a gpa with no memslot exits with KVM_EXIT_MMIO; completing it delivers the value', () => {
    const r = guest.guestAccess({ kind: 'read', gpa: 0x7000_0010, size: 8 });
    expect(r.exit).toMatchObject({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x7000_0010, len: 8, is_write: false } });
    expect(guest.completeMmioRead(0x5555_6666_7777_8888n)).toEqual({ value: 0x5555_6666_7777_8888n });
    // an MMIO read left incomplete is finished with zeros before the next command
    expect(guest.guestAccess({ kind: 'read', gpa: 0x7000_0000, size: 2 }).exit?.reason).toBe('KVM_EXIT_MMIO');
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
    write(hva + 8, 1, 0x5an);
    expect(guest.guestAccess({ kind: 'read', gpa: 8, size: 1 })).toEqual({ value: 0x5an });
  });

  it('dirty log: exactly the pages the guest wrote, never the guest\'s own slot', () => {
    vm.setUserMemoryRegion({ slot: 3, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x1_0000_0000, memory_size: 4 * MiB, userspace_addr: hva });
    expect(dirtyPages(vm.getDirtyLog({ slot: 3 }))).toEqual([]);
    guest.guestAccess({ kind: 'write', gpa: 0x1_0000_3000, size: 8, value: 1n });
    guest.guestAccess({ kind: 'write', gpa: 0x1_0006_4ff8, size: 8, value: 2n });
    guest.guestAccess({ kind: 'read', gpa: 0x1_0020_0000, size: 8 }); // reads do not dirty
    expect(dirtyPages(vm.getDirtyLog({ slot: 3 }))).toEqual([3, 100]);
    // KVM_GET_DIRTY_LOG took and re-armed the bits: a second call is clean
    expect(dirtyPages(vm.getDirtyLog({ slot: 3 }))).toEqual([]);
    guest.guestAccess({ kind: 'write', gpa: 0x1_0000_3000, size: 1, value: 3n });
    expect(dirtyPages(vm.getDirtyLog({ slot: 3 }))).toEqual([3]);
    expect(read(hva + 0x3000, 1)).toBe(3n);
    // the guest's own slot has no dirty bitmap at all
    expect(() => vm.getDirtyLog({ slot: GUEST_SLOT_ID })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('a gmem-only slot (MMAP | INIT_SHARED) serves shared accesses from guest_memfd', () => {
    const want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
    if ((vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS) & want) !== want) return;
    const gmem = vm.createGuestMemfd({ size: 2 * MiB, flags: want });
    const gva = mmap({ length: 2 * MiB, shared: true, fd: gmem });
    try {
      // userspace_addr points at the gmem mapping; the slot reads guest_memfd's pages
      vm.setUserMemoryRegion2({
        slot: 5, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0x8000_0000, memory_size: 2 * MiB,
        userspace_addr: gva, guest_memfd: gmem, guest_memfd_offset: 0,
      });
      write(gva + 0x5000, 8, 0xa5a5_5a5a_0f0f_f0f0n);
      expect(guest.guestAccess({ kind: 'read', gpa: 0x8000_5000, size: 8 })).toEqual({ value: 0xa5a5_5a5a_0f0f_f0f0n });
      expect(guest.guestAccess({ kind: 'write', gpa: 0x8001_0000, size: 4, value: 0x600dn }).value).toBe(0x600dn);
      expect(read(gva + 0x1_0000, 4)).toBe(0x600dn);
    } finally {
      munmap(gva, 2 * MiB);
      close(gmem);
    }
  });

  it('an access beyond the identity map triple-faults (KVM_EXIT_SHUTDOWN); the guest recovers', () => {
    expect(guest.guestAccess({ kind: 'read', gpa: 0x100_0000_0000, size: 8 }).exit).toEqual({ reason: 'KVM_EXIT_SHUTDOWN' });
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
    write(hva, 4, 0x1234n);
    expect(guest.guestAccess({ kind: 'read', gpa: 0, size: 4 })).toEqual({ value: 0x1234n });
  });

  it('refuses gpas inside its own slot and sizes other than 1/2/4/8', () => {
    expect(() => guest.guestAccess({ kind: 'read', gpa: guest.base + 0x10, size: 8 })).toThrow(RangeError);
    expect(() => guest.guestAccess({ kind: 'read', gpa: 0, size: 3 })).toThrow(RangeError);
  });
});

describeWithKvm('paged accesses under the scenario\'s own page tables (needs /dev/kvm)', () => {
  it('reads and writes by gva, reports a guest #PF with its error code and CR2, and runs INVLPG', async () => {
    const { GUEST_ALIAS_TOP_INDEX } = await import('./guest.js');
    const kvm = RealKvm.open();
    const vm = kvm.createVm(0);
    const hva = mmap({ length: 2 * MiB });
    try {
      const guest = installGuest(vm, vm.createVcpu(0));
      vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: 2 * MiB, userspace_addr: hva });
      // PML4 0x10000 → PDPT 0x11000 → PD 0x12000 → PT 0x13000: gva 0x400000 → pa 0x1000
      write(hva + 0x10000, 8, 0x11007n);
      write(hva + 0x11000, 8, 0x12007n);
      write(hva + 0x12000 + 8 * 2, 8, 0x13007n);
      write(hva + 0x13000, 8, 0x1003n);
      write(hva + 0x10000 + 8 * GUEST_ALIAS_TOP_INDEX, 8, guest.aliasTopLevelEntry());
      const regs = { cr0: 0x8001_0001, cr3: 0x10000, cr4: 0x20, efer: 0x500 };
      expect(guest.guestAccessPaged({ kind: 'write', gva: 0x400008, size: 8, value: 0x55n }, regs)).toEqual({ value: 0x55n });
      expect(read(hva + 0x1008, 8)).toBe(0x55n);
      expect(guest.guestAccessPaged({ kind: 'read', gva: 0x400008, size: 4 }, regs)).toEqual({ value: 0x55n });
      // the walk set A (and D for the store) in the PTE, as the CPU or KVM's walker does
      expect(read(hva + 0x13000, 8) & 0x60n).toBe(0x60n);
      // not present, write, supervisor: error code 2, CR2 = the gva
      expect(guest.guestAccessPaged({ kind: 'write', gva: 0x800010, size: 8, value: 1n }, regs)).toEqual({ exception: { vector: '#PF', errorCode: 2, address: 0x800010 } });
      expect(guest.guestAccessPaged({ kind: 'invlpg', gva: 0x400000, size: 1 }, regs).value).toBeDefined();
      // back to the guest's own identity map for gpa accesses
      expect(guest.guestAccess({ kind: 'read', gpa: 0x1008, size: 8 })).toEqual({ value: 0x55n });
      expect(() => guest.guestAccessPaged({ kind: 'read', gva: 0, size: 8 }, { ...regs, cr4: 0x1020 })).toThrow(/4-level/);
      expect(dirtyPages(vm.getDirtyLog({ slot: 0 }))).toEqual(expect.arrayContaining([1, 0x10, 0x11, 0x12, 0x13]));
    } finally {
      vm.close();
      kvm.close();
      munmap(hva, 2 * MiB);
    }
  });
});
