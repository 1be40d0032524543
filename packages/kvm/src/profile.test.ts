import { expect, it } from 'vitest';
import { release } from 'node:os';
import { KVM_CAP_NR_MEMSLOTS } from '@ccmem/core';
import { RealKvm } from './real-kvm.js';
import { detectHostProfile, hostCapabilities } from './profile.js';
import { close, mmap, munmap } from './host-memory.js';
import { describeWithKvm } from './testing/kvm-gate.js';


describeWithKvm('host profile from real checks (needs /dev/kvm)', () => {
  it('detectHostProfile agrees with the capabilities and a real overlap probe', () => {
    const kvm = RealKvm.open();
    try {
      const p = detectHostProfile(kvm);
      const caps = hostCapabilities(kvm);
      expect(p.name).toBe(`host-${release()}`);
      expect(p.multiAddressSpaceCap).toBe(caps.KVM_CAP_MULTI_ADDRESS_SPACE);
      expect(p.smmAddressSpaces).toBe(caps.KVM_CAP_MULTI_ADDRESS_SPACE > 1);
      expect(p.memoryAttributes).toBe(caps.KVM_CAP_MEMORY_ATTRIBUTES !== 0);
      expect(p.preFaultMemory).toBe(caps.KVM_CAP_PRE_FAULT_MEMORY !== 0);
      expect(p.gmemFlagsDefaultVm).toBe(caps.KVM_CAP_GUEST_MEMFD_FLAGS);
      expect(p.vmTypes & 1).toBe(1);
      expect(p.pciHole).toBe(false);
      expect(caps.KVM_CAP_NR_MEMSLOTS).toBe(kvm.checkExtension(KVM_CAP_NR_MEMSLOTS));

      // the overlap errno is what a second binding of the same gmem pages really gets, where
      // the kernel has guest_memfd at all (found by creating one, not from the profile)
      const vm = kvm.createVm(0);
      const hva = mmap({ length: 0x2000 });
      let fd = -1;
      try {
        fd = vm.createGuestMemfd({ size: 0x2000 });
      } catch (e) {
        expect((e as { code?: string }).code).toBe('ENOTTY');
        expect(caps.KVM_CAP_GUEST_MEMFD).toBe(0);
        expect(p.gmemFlagsDefaultVm).toBe(0);
      }
      if (fd >= 0) {
        const r = { flags: 1 << 2, memory_size: 0x1000, userspace_addr: hva, guest_memfd: fd, guest_memfd_offset: 0x1000 };
        vm.setUserMemoryRegion2({ ...r, slot: 0, guest_phys_addr: 0 });
        expect(() => vm.setUserMemoryRegion2({ ...r, slot: 1, guest_phys_addr: 0x10000 })).toThrow(
          expect.objectContaining({ code: p.gmemBindOverlapErrno }),
        );
        close(fd);
      }
      vm.close();
      munmap(hva, 0x2000);

      // where the host lacks a capability, the matching uAPI is really absent
      const vm2 = kvm.createVm(0);
      if (!p.memoryAttributes) {
        expect(() => vm2.setMemoryAttributes({ address: 0, size: 0x1000, attributes: 8 })).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
      }
      if (!p.preFaultMemory) {
        const vcpu = vm2.createVcpu(0);
        expect(() => vcpu.preFaultMemory({ gpa: 0, size: 0x1000 })).toThrow(expect.objectContaining({ check: 'KVM_PRE_FAULT_MEMORY' }));
      }
      if (p.multiAddressSpaceCap <= 1) {
        const h2 = mmap({ length: 0x1000 });
        expect(() =>
          vm2.setUserMemoryRegion({ slot: 1 << 16, flags: 0, guest_phys_addr: 0, memory_size: 0x1000, userspace_addr: h2 }),
        ).toThrow(expect.objectContaining({ code: 'EINVAL' }));
        munmap(h2, 0x1000);
      }
      vm2.close();
    } finally {
      kvm.close();
    }
  });
});
