/** Test support for the TDX backend's tests (not published). */
import { KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_X86_TDX_VM, Kvm } from '@ccmem/core';
import { guestMemfdFactory } from '@ccmem/gmem';
import type { TdxVmOptions } from '../edge.js';
import { tdxBackendFactory, type TdxBackend } from '../tdx-backend.js';

const P = 4096;
/** the pages of the one guest_memfd slot */
export const NPAGES = 1024;

/**
 * A TDX VM (not yet initialized) with private gfns [base/P, base/P + NPAGES) in one guest_memfd
 * slot, KVM_HC_MAP_GPA_RANGE exits enabled, vCPUs 0 and 1, and two pages of source memory.
 */
export function privateTdxVm(opts: TdxVmOptions = {}, base = 0) {
  const kvm = new Kvm({ guestMemfd: guestMemfdFactory, backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } });
  const vm = kvm.createVm({ type: KVM_X86_TDX_VM, options: opts, rootLevel: opts.gpaw === 52 ? 5 : 4 });
  const b = vm.backend as TdxBackend;
  const size = NPAGES * P;
  const gmemFd = vm.createGuestMemfd({ size, flags: 0 });
  const hva = kvm.process.mm.mmap({ length: size, prot: { read: true, write: true }, shared: true });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: base, memory_size: size, userspace_addr: hva, guest_memfd: gmemFd, guest_memfd_offset: 0 });
  vm.setMemoryAttributes({ address: base, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  vm.enableCap({ cap: KVM_CAP_EXIT_HYPERCALL, args: [1 << KVM_HC_MAP_GPA_RANGE] });
  const vcpu = vm.createVcpu(0);
  vm.createVcpu(1);
  const src = kvm.process.mm.mmap({ length: 2 * P, prot: { read: true, write: true }, shared: false });
  return { kvm, phys: kvm.process.phys, b, vm, vcpu, gmemFd, src };
}
