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

/** Newest upstream (kvm-x86/next): EEXIST for overlapping gmem bindings (commit 7ea987a9). */
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
  pciHole: true,
  gmemOnlySharedFaults: true,
  unfaultableHvaEmulatesMmio: false,
});

/**
 * v6.18 as built on this project's CI machines (kvm_pvm, no CONFIG_KVM_SMM, no
 * CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES, shadow MMU): overlapping gmem bindings are EINVAL,
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
});

/**
 * Upstream with kvm_intel.ept=0 / kvm_amd.npt=0 (tdp_enabled = false): every VM's guest
 * paging is shadowed by the shadow MMU, and the VM types that need TDP are not offered.
 */
export const UPSTREAM_SHADOW_PROFILE: KernelProfile = Object.freeze({
  ...UPSTREAM_PROFILE,
  name: 'upstream-shadow',
  preFaultMemory: false,
  tdpEnabled: false,
  tdpMmu: false,
});

export const PROFILES: Readonly<Record<string, KernelProfile>> = Object.freeze({
  upstream: UPSTREAM_PROFILE,
  'upstream-shadow': UPSTREAM_SHADOW_PROFILE,
  'linux-6.18': LINUX_6_18_PROFILE,
});

export function profileByName(name: string): KernelProfile | undefined {
  return PROFILES[name];
}
