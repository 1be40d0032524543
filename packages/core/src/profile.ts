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
 * A v6.18 release kernel on a host with SEV-SNP and TDX (every VM type and build option on): the
 * vendor ioctls as v6.18 has them. Differs from upstream in the gmem overlap errno (7ea987a9
 * came after v6.18) and in the vendor rules changed since: LAUNCH_UPDATE's uaddr checks,
 * userspace MapGPA / PSC error codes, INIT_MEM_REGION's source pre-check; and in
 * KVM_MAX_VCPUS (the Kconfig default, 1024).
 */
export const LINUX_6_18_PROFILE: KernelProfile = Object.freeze({
  ...UPSTREAM_PROFILE,
  name: 'linux-6.18',
  gmemBindOverlapErrno: 'EINVAL',
  snpLaunchUpdateUaddrChecks: false,
  mapGpaRangeUserErrors: false,
  tdxInitMemRegionSourceCheck: false,
  gmemHugetlb: false,
  maxVcpus: 1024,
});

/**
 * v6.18 with the PVM module (kvm_pvm: no hardware virtualization, shadow paging), as measured
 * on such a host with guest_memfd built in (KVM_CAP_GUEST_MEMFD_FLAGS 3): no CONFIG_KVM_SMM, no
 * memory attributes, no pre-fault, only the default VM type, overlapping gmem bindings EINVAL,
 * shared faults of a gmem-only slot through userspace_addr, an unfaultable hva emulated as MMIO,
 * mmio_caching=N, CONFIG_KVM_MAX_NR_VCPUS=1024. The model's `profile: host` where no /dev/kvm
 * can be asked (docs/profiles.md).
 */
export const LINUX_6_18_PVM_PROFILE: KernelProfile = Object.freeze({
  name: 'linux-6.18-pvm',
  gmemBindOverlapErrno: 'EINVAL',
  smmAddressSpaces: false,
  multiAddressSpaceCap: 0,
  memoryAttributes: false,
  preFaultMemory: false,
  vmTypes: bit(KVM_X86_DEFAULT_VM),
  gmemFlagsDefaultVm: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
  pciHole: false,
  // the PVM fault path resolves shared faults of a gmem-only slot through userspace_addr
  // (found by `ccmem diff`; docs/profiles.md)
  gmemOnlySharedFaults: false,
  // ...and emulates a guest access whose hva cannot be faulted in as MMIO
  unfaultableHvaEmulatesMmio: true,
  // a guest that does not use the PVM ABI runs in the instruction emulator: every access goes
  // through the memslot's hva, no SPTE is made (measured: insn_emulation per instruction, no
  // pf_taken; docs/profiles.md)
  emulatedGuestAccesses: true,
  guestMemfd: true,
  // shadow paging (no EPT/NPT, tdp_mmu=N): memslots up to gfn 2^40 - 1 (52-bit gpas) are accepted
  tdpEnabled: false,
  tdpMmu: false,
  // KVM_CAP_MAX_VCPUS: the Kconfig default of CONFIG_KVM_MAX_NR_VCPUS
  maxVcpus: 1024,
  // /sys/module/kvm/parameters/mmio_caching is N
  mmioCaching: false,
  // vendor ioctls as in v6.18 (no SNP/TDX VM types here)
  snpLaunchUpdateUaddrChecks: false,
  mapGpaRangeUserErrors: false,
  tdxInitMemRegionSourceCheck: false,
  gmemHugetlb: false,
  // KVM_GET_STATS_FD: pages_4k/2m/1g stay 0 however many leaves the shadow MMU maps (measured
  // with `ccmem diff --stats`; probePageStats() in @ccmem/kvm)
  pageStats: false,
  // a guest write to a dirty-logged page is logged again on every KVM_RUN (found by `ccmem diff`
  // with the dirty ring: two runs that write one page push two entries)
  dirtyRingRelogsEachRun: true,
  // ...and KVM_EXIT_DIRTY_RING_FULL comes late, after a varying number of further pages
  dirtyRingSoftFullAtLimit: false,
  // a guest read of a page the VMM wrote is not logged (found by `ccmem fuzz --target diff`)
  readFaultLogsWritablePage: false,
});

/**
 * The same PVM build without CONFIG_KVM_GUEST_MEMFD (measured: KVM_CREATE_GUEST_MEMFD is ENOTTY,
 * KVM_CAP_GUEST_MEMFD and _FLAGS are 0, and KVM_MEM_GUEST_MEMFD is an invalid flag, EINVAL).
 */
export const LINUX_6_18_PVM_NO_GMEM_PROFILE: KernelProfile = Object.freeze({
  ...LINUX_6_18_PVM_PROFILE,
  name: 'linux-6.18-pvm-no-gmem',
  guestMemfd: false,
  gmemFlagsDefaultVm: 0,
});

/**
 * `profile` with the unmerged KVM_MEM_PCI_HOLE RFC offered (docs/profiles.md): an explicit
 * opt-in, never part of a named kernel profile.
 */
export function withPciHole(profile: KernelProfile): KernelProfile {
  return Object.freeze({ ...profile, name: `${profile.name}+pci-hole`, pciHole: true });
}

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
  'linux-6.18-pvm': LINUX_6_18_PVM_PROFILE,
  'linux-6.18-pvm-no-gmem': LINUX_6_18_PVM_NO_GMEM_PROFILE,
});

/** the profile `profile: host` follows on the model where this host's KVM cannot be asked */
export const HOST_FALLBACK_PROFILE = LINUX_6_18_PVM_PROFILE;

export function profileByName(name: string): KernelProfile | undefined {
  return PROFILES[name];
}

/** each KernelProfile field a kernel build decides, with the value its absence means */
const BUILD_FIELDS: ReadonlyArray<readonly [keyof KernelProfile, boolean | number | string]> = [
  ['guestMemfd', true],
  ['smmAddressSpaces', true],
  ['multiAddressSpaceCap', 2],
  ['memoryAttributes', true],
  ['preFaultMemory', true],
  ['vmTypes', 0],
  ['pciHole', false],
  ['unfaultableHvaEmulatesMmio', false],
  ['tdpEnabled', true],
  ['tdpMmu', true],
  ['emulatedGuestAccesses', false],
  ['maxVcpus', 4096],
  ['mmioCaching', true],
  ['dirtyRing', true],
  ['cpuDirtyLogSize', 0],
  ['dirtyRingRelogsEachRun', false],
  ['dirtyRingSoftFullAtLimit', true],
  ['readFaultLogsWritablePage', true],
  ['pageStats', true],
];

/** guest_memfd behaviour, which only a kernel with guest_memfd can show */
const GMEM_FIELDS: ReadonlyArray<readonly [keyof KernelProfile, boolean | number | string]> = [
  ['gmemBindOverlapErrno', 'EEXIST'],
  ['gmemFlagsDefaultVm', 0],
  ['gmemOnlySharedFaults', true],
];

/**
 * vendor rules, which only a host that offers the vendor's VM type can show (gmemHugetlb is a
 * model option for an unmerged series, not a fact of any host)
 */
const VENDOR_FIELDS: ReadonlyArray<readonly [keyof KernelProfile, number]> = [
  ['snpLaunchUpdateUaddrChecks', bit(KVM_X86_SNP_VM)],
  ['mapGpaRangeUserErrors', bit(KVM_X86_SNP_VM) | bit(KVM_X86_TDX_VM)],
  ['tdxInitMemRegionSourceCheck', bit(KVM_X86_TDX_VM)],
];

/**
 * Whether the kernel behind a detected host profile is the kernel `named` describes: every
 * build fact equal (absent fields read as their documented defaults), guest_memfd behaviour
 * compared only where the host has guest_memfd, vendor rules compared
 * only where the host offers that vendor's VM type, and the machine's own facts (online CPUs,
 * MAXPHYADDR) and model options ignored. Returns the first difference in words, or null when they match; a
 * scenario that follows `named` can then run on that host's /dev/kvm as it is.
 */
export function profileMismatch(named: KernelProfile, host: KernelProfile): string | null {
  const read = (p: KernelProfile, k: keyof KernelProfile, absent: boolean | number | string) => (p[k] as boolean | number | string | undefined) ?? absent;
  const gmem = read(host, 'guestMemfd', true) === true;
  for (const [k, absent] of gmem ? [...BUILD_FIELDS, ...GMEM_FIELDS] : BUILD_FIELDS) {
    const a = read(named, k, absent);
    const b = read(host, k, absent);
    if (a !== b) return `${k} is ${String(b)} on this host, ${String(a)} in ${named.name}`;
  }
  for (const [k, types] of VENDOR_FIELDS) {
    if ((host.vmTypes & types) === 0) continue;
    const a = read(named, k, true);
    const b = read(host, k, true);
    if (a !== b) return `${k} is ${String(b)} on this host, ${String(a)} in ${named.name}`;
  }
  return null;
}
