/**
 * Kernel profiles. The model follows the newest upstream kernel by default; where kernel
 * versions or build options differ, a named profile selects the other behaviour.
 * See docs/profiles.md.
 */
import type { KernelProfile } from './backend.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
} from './uapi.js';

const bit = (n: number) => 1 << n;

/** Newest upstream (kvm-x86/next): EEXIST for overlapping gmem bindings (commit 7ea987a9), TDP MMU, guest_memfd. */
export const UPSTREAM_PROFILE: KernelProfile = Object.freeze({
  name: 'upstream',
  gmemBindOverlapErrno: 'EEXIST',
  smmAddressSpaces: true,
  multiAddressSpaceCap: 2,
  memoryAttributes: true,
  preFaultMemory: true,
  vmTypes:
    bit(KVM_X86_DEFAULT_VM) |
    bit(KVM_X86_SW_PROTECTED_VM) |
    bit(KVM_X86_SEV_VM) |
    bit(KVM_X86_SEV_ES_VM) |
    bit(KVM_X86_SNP_VM) |
    bit(KVM_X86_TDX_VM),
  gmemFlagsDefaultVm: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
  // KVM_MEM_PCI_HOLE was never merged: upstream rejects memslot flag bit 15 with EINVAL
  // (set_memory_region_test.c); `withPciHole()` opts in to the RFC
  pciHole: false,
  gmemOnlySharedFaults: true,
  unfaultableHvaEmulatesMmio: false,
  guestMemfd: true,
  tdpMmu: true,
  // CONFIG_KVM_MAX_NR_VCPUS=4096 (MAXSMP, as distribution kernels are built)
  maxVcpus: 4096,
  onlineCpus: 64,
  mmioCaching: true,
});

/**
 * v6.18 as built on this project's CI machines (kvm_pvm, no CONFIG_KVM_SMM, no
 * CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES, no CONFIG_KVM_GUEST_MEMFD, shadow MMU,
 * CONFIG_KVM_MAX_NR_VCPUS=1024): overlapping gmem bindings are EINVAL,
 * one address space, no attributes, no pre-fault, only the default VM type, and shared faults
 * of a gmem-only slot go through userspace_addr.
 */
export const LINUX_6_18_PROFILE: KernelProfile = Object.freeze({
  name: 'linux-6.18',
  gmemBindOverlapErrno: 'EINVAL',
  smmAddressSpaces: false,
  multiAddressSpaceCap: 0,
  memoryAttributes: false,
  preFaultMemory: false,
  vmTypes: bit(KVM_X86_DEFAULT_VM),
  gmemFlagsDefaultVm: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
  pciHole: false,
  // the CI host's kvm_pvm fault path resolves shared faults of a gmem-only slot through
  // userspace_addr (found by `ccmem diff`; docs/profiles.md)
  gmemOnlySharedFaults: false,
  // ...and emulates a guest access whose hva cannot be faulted in as MMIO
  unfaultableHvaEmulatesMmio: true,
  // measured: KVM_CREATE_GUEST_MEMFD is ENOTTY and KVM_MEM_GUEST_MEMFD is EINVAL
  guestMemfd: false,
  // tdp_mmu=N, no EPT / NPT: memslots up to gfn 2^40 - 1 (52-bit gpas) are accepted
  tdpMmu: false,
  // KVM_CAP_MAX_VCPUS: the Kconfig default of CONFIG_KVM_MAX_NR_VCPUS
  maxVcpus: 1024,
  // measured: /sys/module/kvm/parameters/mmio_caching is N
  mmioCaching: false,
});

/**
 * `profile` with the unmerged KVM_MEM_PCI_HOLE RFC offered (docs/profiles.md): an explicit
 * opt-in, never part of a named kernel profile.
 */
export function withPciHole(profile: KernelProfile): KernelProfile {
  return Object.freeze({ ...profile, name: `${profile.name}+pci-hole`, pciHole: true });
}

export const PROFILES: Readonly<Record<string, KernelProfile>> = Object.freeze({
  upstream: UPSTREAM_PROFILE,
  'linux-6.18': LINUX_6_18_PROFILE,
});

export function profileByName(name: string): KernelProfile | undefined {
  return PROFILES[name];
}
