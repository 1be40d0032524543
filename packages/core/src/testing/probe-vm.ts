/**
 * A KVM_X86_SW_PROTECTED_VM whose vendor backend has only `hooks` besides the fields every
 * backend has (private memory, read-only memory, pre-fault allowed, no mirrored TDP), with
 * `memorySize` bytes of anonymous memory in slot 0 at `gpa`: for tests that watch what the
 * core asks of a vendor.
 */
import { Kvm } from '../kvm.js';
import type { VendorBackend } from '../backend.js';
import { KVM_X86_SW_PROTECTED_VM } from '../uapi.js';

export interface ProbeVmOptions {
  nrMemslotAsIds?: number;
  memorySize?: number;
  gpa?: number;
}

export function probeVm(hooks: Partial<VendorBackend>, { nrMemslotAsIds = 1, memorySize = 2 << 20, gpa = 0 }: ProbeVmOptions = {}) {
  const backend: VendorBackend = {
    name: 'probe',
    vmType: KVM_X86_SW_PROTECTED_VM,
    attach: () => {},
    hasPrivateMem: true,
    hasReadonlyMem: true,
    nrMemslotAsIds,
    hasMirroredTdp: false,
    gfnDirectBits: 0,
    supportsGmemInitShared: false,
    preFaultAllowed: () => true,
    ...hooks,
  };
  const kvm = new Kvm({ backends: { [KVM_X86_SW_PROTECTED_VM]: () => backend } });
  const vm = kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM });
  const hva = kvm.process.mm.mmap({ length: memorySize, prot: { read: true, write: true }, shared: false });
  vm.setUserMemoryRegion2({ slot: 0, flags: 0, guest_phys_addr: gpa, memory_size: memorySize, userspace_addr: hva });
  return { kvm, vm };
}
