/**
 * kvm_gmem_populate() (virt/kvm/guest_memfd.c) through the core VM: the core checks the
 * arguments and the slot, the file the slot is bound to populates.
 */
import { ERRNO, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM, Kvm, PAGE_SIZE } from '@ccmem/core';
import type { GmemPfn, KvmGmemPopulateArgs } from '@ccmem/core';
import { describe, expect, it } from 'vitest';
import { createDeviceFd } from './device-fd.js';
import { GuestMemfd, guestMemfdFactory } from './guest-memfd.js';

const BASE_GFN = 0x80;

function setup(npages = 4) {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const fd = vm.createGuestMemfd({ size: npages * PAGE_SIZE, flags: 0 });
  const f = kvm.process.getFile(fd);
  if (!(f instanceof GuestMemfd)) throw new Error('not a guest_memfd');
  const hva = kvm.process.mm.mmap({ length: npages * PAGE_SIZE, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE_GFN * PAGE_SIZE, memory_size: npages * PAGE_SIZE, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0 });
  vm.setMemoryAttributes({ address: BASE_GFN * PAGE_SIZE, size: npages * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  const slot = vm.gfnToMemslot(BASE_GFN)!;
  const populated: { gfn: number; pfn: number; src: Uint8Array | null }[] = [];
  const base = {
    startGfn: BASE_GFN,
    npages,
    src: null,
    postPopulate: (gfn: number, pfn: number, src: Uint8Array | null) => {
      populated.push({ gfn, pfn, src });
      if (src) vm.writePfn(pfn, 0, src);
      return 0;
    },
  } satisfies KvmGmemPopulateArgs;
  return { kvm, vm, f, fd, slot, hva, populated, base };
}

describe('kvm_gmem_populate (§6.7)', () => {
  it('checks in order: npages, src alignment, slot has gmem, file live', () => {
    const { kvm, vm, fd, base } = setup();
    expect(vm.gmemPopulate({ ...base, npages: 0, startGfn: 0 })).toBe(-ERRNO.EINVAL);
    expect(vm.gmemPopulate({ ...base, src: 0x1001, startGfn: 0 })).toBe(-ERRNO.EINVAL);
    expect(vm.gmemPopulate({ ...base, startGfn: 0 })).toBe(-ERRNO.EINVAL); // no slot
    kvm.process.close(fd);
    expect(vm.gmemPopulate(base)).toBe(-ERRNO.EFAULT);
  });

  it('populates each page through the callback, copying the source; contents survive the first fault', () => {
    const { vm, f, slot, hva, populated, base } = setup();
    for (let i = 0; i < 4; i++) vm.copyToUser(hva + i * PAGE_SIZE, new Uint8Array([i + 1, 0xee]));
    const n = vm.gmemPopulate({ ...base, src: hva });
    expect(n).toBe(4);
    expect(populated.map((p) => p.gfn)).toEqual([0x80, 0x81, 0x82, 0x83]);
    expect(populated.map((p) => p.src?.[0])).toEqual([1, 2, 3, 4]);
    expect(f.stats.allocatedPages).toBe(4);
    const out: GmemPfn = { pfn: -1, maxOrder: -1 };
    expect(f.getPfn(slot, 0x82, out)).toBe(0);
    expect(out.pfn).toBe(populated[2]!.pfn);
    expect(vm.readPfn(out.pfn, 0, 2)).toEqual(new Uint8Array([3, 0xee])); // not zeroed
  });

  it('alignedSrc false (linux-6.18): an unaligned source is copied from src + i * PAGE_SIZE as given', () => {
    const { vm, hva, populated, base } = setup();
    const bytes = new Uint8Array(3 * PAGE_SIZE);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 251;
    vm.copyToUser(hva, bytes);
    expect(vm.gmemPopulate({ ...base, src: hva + 0x10, npages: 2 })).toBe(-ERRNO.EINVAL);
    expect(populated).toEqual([]);
    expect(vm.gmemPopulate({ ...base, src: hva + 0x10, npages: 2, alignedSrc: false })).toBe(2);
    expect(populated.map((p) => p.src?.[0])).toEqual([0x10 % 251, (PAGE_SIZE + 0x10) % 251]);
    expect(populated[1]!.src!.length).toBe(PAGE_SIZE);
  });

  it('clamps to the end of the slot', () => {
    const { vm, populated, base } = setup();
    expect(vm.gmemPopulate({ ...base, startGfn: 0x82, npages: 100 })).toBe(2);
    expect(populated.map((p) => p.gfn)).toEqual([0x82, 0x83]);
  });

  it('a gfn without the PRIVATE attribute is EINVAL; after some pages, the count is returned', () => {
    const { vm, populated, base } = setup();
    vm.setMemoryAttributes({ address: 0x82 * PAGE_SIZE, size: 2 * PAGE_SIZE, attributes: 0, flags: 0 });
    expect(vm.gmemPopulate({ ...base, startGfn: 0x82, npages: 2 })).toBe(-ERRNO.EINVAL);
    expect(populated).toEqual([]);
    expect(vm.gmemPopulate(base)).toBe(2);
  });

  it('a failed callback stops the loop and leaves the page not up to date', () => {
    const { vm, f, base } = setup();
    let calls = 0;
    expect(vm.gmemPopulate({ ...base, postPopulate: () => (++calls === 2 ? -ERRNO.EIO : 0) })).toBe(1);
    expect(calls).toBe(2);
    expect(f.pageFlags(1) & 1).toBe(0);
  });

  it('source pin failure and poisoned pages stop the loop with their errno', () => {
    const { vm, f, base } = setup();
    expect(vm.gmemPopulate({ ...base, src: 0x7000 })).toBe(-ERRNO.EFAULT); // nothing mapped there
    f.fallocate(1, 0, PAGE_SIZE);
    f.poison(0);
    expect(vm.gmemPopulate(base)).toBe(-ERRNO.EHWPOISON);
  });

  it('a device-fd slot cannot be populated', () => {
    const kvm = new Kvm({ guestMemfd: guestMemfdFactory });
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    const d = createDeviceFd(vm, { size: PAGE_SIZE });
    const fd = kvm.process.installFd(d);
    vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: PAGE_SIZE, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    expect(vm.gmemPopulate({ startGfn: 0, npages: 1, src: null, postPopulate: () => 0 })).toBe(-ERRNO.EINVAL);
  });
});
