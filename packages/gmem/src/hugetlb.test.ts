/**
 * GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB (the in-flight guest_memfd HugeTLB series,
 * a model option): 2 MiB folios through the core VM.
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_MMAP,
  GUESTMEM_HUGETLB_FLAG_2MB,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_SW_PROTECTED_VM,
  Kvm,
  PAGE_SIZE,
  type GmemPfn,
} from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { errnoOf } from '../../core/src/testing/errno-of.js';
import { GMEM_HUGETLB_2M_ORDER, GuestMemfd, guestMemfdFactory } from './guest-memfd.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const HUGE = GUEST_MEMFD_FLAG_HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

function setup(profile = 'upstream') {
  const kvm = new Kvm({ profile, guestMemfd: guestMemfdFactory });
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  return { kvm, vm };
}

describe('guest_memfd with 2 MiB HugeTLB folios', () => {
  it('creation: the flag needs the 2 MiB size and a 2 MiB multiple; it is not in KVM_CAP_GUEST_MEMFD_FLAGS; not in v6.18', () => {
    const { vm } = setup();
    expect(errnoOf(() => vm.createGuestMemfd({ size: 2 * MiB, flags: GUEST_MEMFD_FLAG_HUGETLB }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 2 * MiB, flags: GUESTMEM_HUGETLB_FLAG_2MB }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 2 * MiB, flags: GUEST_MEMFD_FLAG_HUGETLB | (30 << 26) }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 3 * MiB, flags: HUGE }))).toBe('EINVAL');
    expect(vm.createGuestMemfd({ size: 4 * MiB, flags: HUGE | GUEST_MEMFD_FLAG_MMAP })).toBeGreaterThan(0);
    expect(vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS) & GUEST_MEMFD_FLAG_HUGETLB).toBe(0);
    expect(errnoOf(() => setup('linux-6.18').vm.createGuestMemfd({ size: 2 * MiB, flags: HUGE }))).toBe('EINVAL');
  });

  it('a fault allocates the whole 2 MiB folio: max_order 9, 512 consecutive 2 MiB-aligned pfns; misaligned gfns get order 0', () => {
    const { kvm, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * MiB, flags: HUGE });
    const file = kvm.process.getFile(fd) as GuestMemfd;
    expect(file.folioOrder).toBe(GMEM_HUGETLB_2M_ORDER);
    // a binding must start on a folio boundary of the file
    expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 4 * GiB, memory_size: 2 * MiB, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: PAGE_SIZE }))).toBe('EINVAL');
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 4 * GiB, memory_size: 2 * MiB, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    // slot 1 at a gpa that is not 2M-aligned relative to its file offset
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 8 * GiB + 4096, memory_size: 2 * MiB, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 2 * MiB });
    const slot0 = vm.gfnToMemslot((4 * GiB) / PAGE_SIZE)!;
    const out: GmemPfn = { pfn: -1, maxOrder: -1 };
    expect(file.getPfn(slot0, (4 * GiB) / PAGE_SIZE + 5, out)).toBe(0);
    expect(out.maxOrder).toBe(9);
    const head = out.pfn - 5;
    expect(head % 512).toBe(0);
    expect(file.stats.allocatedPages).toBe(512);
    for (const i of [0, 1, 511]) expect(file.pfnAt(i)).toBe(head + i);
    const slot1 = vm.gfnToMemslot((8 * GiB) / PAGE_SIZE + 1)!;
    expect(file.getPfn(slot1, (8 * GiB) / PAGE_SIZE + 1, out)).toBe(0);
    expect(out.maxOrder).toBe(0);
    expect(file.stats.allocatedPages).toBe(1024);
  });

  it('the guest maps a 2 MiB private leaf; a hole punch must cover whole folios and frees them at once', () => {
    const { kvm, vm } = setup();
    const fd = vm.createGuestMemfd({ size: 4 * MiB, flags: HUGE });
    const file = kvm.process.getFile(fd) as GuestMemfd;
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 4 * GiB, memory_size: 4 * MiB, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    vm.setMemoryAttributes({ address: 4 * GiB, size: 4 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    const vcpu = vm.createVcpu(0);
    expect(vcpu.guestWrite(4 * GiB + 0x3008, 8, 0x1234n, true)).toEqual({});
    expect(vm.mmu.leafAt((4 * GiB) / PAGE_SIZE + 3, true)?.level).toBe(2);
    const allocated = kvm.process.phys.allocatedPages;
    expect(errnoOf(() => file.fallocate(PUNCH, 0, PAGE_SIZE))).toBe('EINVAL');
    expect(errnoOf(() => file.fallocate(FALLOC_FL_KEEP_SIZE, 2 * MiB, MiB))).toBe('EINVAL');
    file.fallocate(PUNCH, 0, 2 * MiB);
    expect(file.stats.allocatedPages).toBe(0);
    expect(kvm.process.phys.allocatedPages).toBe(allocated - 512);
    expect(vm.mmu.leafAt((4 * GiB) / PAGE_SIZE + 3, true)).toBeFalsy();
    // the next fault gets a fresh, zeroed folio
    expect(vcpu.guestRead(4 * GiB + 0x3008, 8, true).value).toBe(0n);
    file.fallocate(FALLOC_FL_KEEP_SIZE, 2 * MiB, 2 * MiB);
    expect(file.stats.allocatedPages).toBe(1024);
  });
});
