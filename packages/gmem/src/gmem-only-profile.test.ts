import { describe, expect, it } from 'vitest';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD, Kvm, LINUX_6_18_PVM_PROFILE, type KernelProfile } from '@ccmem/core';
import { guestMemfdFactory } from './index.js';

/** a slot bound to an mmap-able guest_memfd, with a marker at its hva; what does the guest read? */
function sharedReadOfGmemOnlySlot(profile: string | KernelProfile) {
  const kvm = new Kvm({ profile, guestMemfd: guestMemfdFactory });
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: 0x1000, prot: { read: true, write: true }, shared: true });
  kvm.process.mm.write(hva, 8, 0x5a5an);
  const gmem = vm.createGuestMemfd({ size: 0x1000, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0x1_0000_0000, memory_size: 0x1000, userspace_addr: hva, guest_memfd: gmem, guest_memfd_offset: 0 });
  const r = vm.createVcpu(0).guestRead(0x1_0000_0000, 8);
  return { r, slotFlags: vm.gfnToMemslot(0x10_0000)?.flags ?? 0 };
}

describe('profile gmemOnlySharedFaults', () => {
  it('upstream: shared faults of a gmem-only slot come from the guest_memfd (fresh page: zero)', () => {
    const { r } = sharedReadOfGmemOnlySlot('upstream');
    expect(r.exit).toBeUndefined();
    expect(r.value).toBe(0n);
  });

  it('linux-6.18 (the CI host): they resolve through userspace_addr (the marker)', () => {
    // the linux-6.18 profile has no CONFIG_KVM_GUEST_MEMFD; this is its fault path in a build with it
    const { r } = sharedReadOfGmemOnlySlot({ ...LINUX_6_18_PVM_PROFILE, guestMemfd: true });
    expect(r.exit).toBeUndefined();
    expect(r.value).toBe(0x5a5an);
  });
});
