/**
 * The library's uAPI entry points refuse values that do not fit the kernel's struct fields
 * (non-integers, NaN, negatives, too wide) with KvmError EINVAL before anything runs, check
 * u64 fields on all 64 bits, and a closed VM refuses every ioctl.
 */
import { describe, expect, it } from 'vitest';
import { Kvm } from '../../src/kvm.js';
import { errnoOf } from '../../src/testing/errno-of.js';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_X86_SW_PROTECTED_VM } from '../../src/uapi.js';

function vmWithLoggedSlot() {
  const kvm = new Kvm();
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const hva = kvm.process.mm.mmap({ length: 1 << 20, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: 1 << 20, userspace_addr: hva });
  return { kvm, vm, hva };
}

describe('uAPI field widths (core Vm)', () => {
  it.each([NaN, 1.5, -1, 2 ** 32, Infinity])('getDirtyLog({ slot: %s }) is EINVAL and reads no slot', (slot) => {
    const { vm } = vmWithLoggedSlot();
    expect(errnoOf(() => vm.getDirtyLog({ slot }))).toBe('EINVAL');
    // slot 0 was not read (nor cleared): its log still works
    expect(vm.getDirtyLog({ slot: 0 }).length).toBe(32);
  });

  it('clearDirtyLog refuses a non-u32 num_pages and a non-u64 first_page', () => {
    const { vm } = vmWithLoggedSlot();
    expect(errnoOf(() => vm.clearDirtyLog({ slot: 0, first_page: 0, num_pages: 2 ** 32, dirty_bitmap: new Uint8Array(8) }))).toBe('EINVAL');
    expect(errnoOf(() => vm.clearDirtyLog({ slot: 0, first_page: 0.5, num_pages: 64, dirty_bitmap: new Uint8Array(8) }))).toBe('EINVAL');
  });

  it('a memslot field that does not fit its width is EINVAL and creates nothing', () => {
    const { vm, hva } = vmWithLoggedSlot();
    const base = { flags: 0, guest_phys_addr: 1 << 20, memory_size: 4096, userspace_addr: hva };
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 2 ** 32 + 1 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 1.5 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 1, flags: 2 ** 32 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 1, memory_size: NaN }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setUserMemoryRegion2({ ...base, slot: 1, guest_phys_addr: 2n ** 64n }))).toBe('EINVAL');
    expect(vm.inspectMemslot(0, 1)).toBeUndefined();
  });

  it('KVM_SET_MEMORY_ATTRIBUTES checks attributes on all 64 bits (0x1_0000_0008 is EINVAL)', () => {
    const { vm } = vmWithLoggedSlot();
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0x1_0000_0008 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0x1_0000_0008n }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 8.5 }))).toBe('EINVAL');
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 8, flags: 2 ** 32 }))).toBe('EINVAL');
    expect(vm.getMemoryAttributes(0)).toBe(0);
    expect(errnoOf(() => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 8 }))).toBeUndefined();
    expect(vm.getMemoryAttributes(0)).toBe(8);
  });

  it('enableCap and createGuestMemfd refuse values that do not fit', () => {
    const { vm } = vmWithLoggedSlot();
    expect(errnoOf(() => vm.enableCap({ cap: 2 ** 32, flags: 0, args: [] }))).toBe('EINVAL');
    expect(errnoOf(() => vm.enableCap({ cap: 168, flags: 0, args: [NaN] }))).toBe('EINVAL');
    expect(errnoOf(() => vm.createGuestMemfd({ size: -4096, flags: 0 }))).toBe('EINVAL');
  });
});

describe('a closed VM', () => {
  it('refuses memslot, vCPU and guest_memfd changes with EBADF; a second close does nothing', () => {
    const { vm, hva } = vmWithLoggedSlot();
    vm.release();
    expect(vm.released).toBe(true);
    expect(errnoOf(() => vm.setUserMemoryRegion2({ slot: 1, flags: 0, guest_phys_addr: 1 << 20, memory_size: 4096, userspace_addr: hva }))).toBe('EBADF');
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EBADF');
    expect(errnoOf(() => vm.createGuestMemfd({ size: 4096, flags: 0 }))).toBe('EBADF');
    expect(errnoOf(() => vm.getDirtyLog({ slot: 0 }))).toBe('EBADF');
    vm.release();
    expect(vm.alive).toBe(false);
    // the reference count cannot go below zero
    expect(() => vm.put()).toThrow(RangeError);
  });

  it('a VM kept alive by a guest_memfd still refuses ioctls once its fd is closed', () => {
    const kvm = new Kvm();
    const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
    vm.get(); // what a guest_memfd file holds
    vm.release();
    expect(vm.alive).toBe(true);
    expect(errnoOf(() => vm.createVcpu(0))).toBe('EBADF');
    vm.put();
    expect(vm.alive).toBe(false);
  });
});
