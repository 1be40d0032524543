import { describe, expect, it } from 'vitest';
import { Kvm } from '../kvm.js';

/** a slot whose hva was unmapped; what does a guest read of it do? */
function readUnmappedHva(profile: string) {
  const kvm = new Kvm({ profile });
  const vm = kvm.createVm();
  const hva = kvm.process.mm.mmap({ length: 0x2000, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0x10_0000, memory_size: 0x2000, userspace_addr: hva });
  kvm.process.mm.munmap(hva + 0x1000, 0x1000);
  return vm.createVcpu(0).guestRead(0x10_1000, 4);
}

describe('profile unfaultableHvaEmulatesMmio', () => {
  it('upstream: kvm_handle_error_pfn() fails KVM_RUN with EFAULT and a memory-fault exit', () => {
    const r = readUnmappedHva('upstream');
    expect(r.errno).toBe('EFAULT');
    expect(r.exit).toMatchObject({ reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { gpa: 0x10_1000 } });
  });

  it('linux-6.18-pvm: the access is emulated and exits with KVM_EXIT_MMIO', () => {
    const r = readUnmappedHva('linux-6.18-pvm');
    expect(r.errno).toBeUndefined();
    expect(r.exit).toMatchObject({ reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: 0x10_1000, len: 4, is_write: false } });
  });
});
