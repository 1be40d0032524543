// @ccmem/core: the memslot/MMU engine. This file is the package's public face: every name is
// listed, so what the engine keeps to itself (the TDP MMU's internals, the memslot engine,
// SPTE encoding) stays internal.

/* -- the uAPI: constants and structures of <linux/kvm.h>, errno -- */
export {
  PAGE_SHIFT, PAGE_SIZE, PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G, type PgLevel,
  KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM, VM_TYPES, type VmTypeName,
  KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD, KVM_MEM_PCI_HOLE, KVM_MEMSLOT_INVALID, KVM_MEMSLOT_GMEM_ONLY, MEMSLOT_FLAGS,
  KVM_USER_MEM_SLOTS, KVM_MEM_MAX_NR_PAGES, KVM_MAX_NR_ADDRESS_SPACES,
  KVM_CAP_NR_VCPUS, KVM_CAP_NR_MEMSLOTS, KVM_CAP_SYNC_MMU, KVM_CAP_READONLY_MEM, KVM_CAP_MAX_VCPUS, KVM_CAP_MAX_VCPU_ID, KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_EXIT_HYPERCALL, KVM_CAP_USER_MEMORY2, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES, KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_PCI_HOLE_MEM, CAPS,
  KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET, KVM_MEMORY_ATTRIBUTE_PRIVATE,
  GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_HUGETLB,
  GUESTMEM_HUGETLB_FLAG_SHIFT, GUESTMEM_HUGETLB_FLAG_2MB, GUESTMEM_HUGETLB_FLAG_MASK, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
  KVM_EXIT_UNKNOWN, KVM_EXIT_IO, KVM_EXIT_HYPERCALL, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_DIRTY_RING_FULL, KVM_EXIT_MEMORY_FAULT, EXIT_REASONS, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_SYSTEM_EVENT_SEV_TERM, KVM_SYSTEM_EVENT_SHUTDOWN, KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_PAGE_SZ_4K, KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_1G,
  KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED,
} from './uapi.js';
export { ERRNO, errnoName, isErrnoName, KvmError, fail, isKvmError, type ErrnoName } from './errno.js';
export { RangeMap, KEY_LIMIT } from './range-map.js';
export { u64Value, u64AddWraps, u64PageAligned, uapiU64, uapiUint, type U64 } from './u64.js';
export { gpaToGfn, kvmGfnDirectBits, kvmIsGfnAlias, kvmIsAddrDirect, kvmGpaToGfn, type DirectBitsVm } from './gfn.js';

/* -- /dev/kvm, the VM, its vCPUs and their ioctls -- */
export { Kvm, checkVmOptions, vmTypeName, type BackendFactories, type NoBackends, type EdgeOf, type VmEdge, type KvmOptions, type CreateVmOptions, type MemEncryptOpFallback } from './kvm.js';
export { Vm, KVM_MAX_VCPU_IDS, KVM_VCPU_ID_RATIO, kvmMaxVcpus, KVM_EXIT_HYPERCALL_VALID_MASK, type KvmEnableCap } from './vm.js';
export { Vcpu, type GuestAccess, type GuestAccessKind, type GuestAccessResult } from './vcpu.js';
export { GuestAccessOp, GUEST_ACCESS_MAX_RETRIES, type GuestAccessPhase, type GuestAccessOpOptions } from './guest-access-op.js';
export { SetMemoryAttributesOp, type KvmMemoryAttributes } from './attributes.js';
export { PreFaultMemoryOp, type KvmPreFaultMemory } from './prefault.js';
export type { KvmUserspaceMemoryRegion2 } from './memslot/set-memory-region.js';
export { SlotsLockBusyError } from './memslot/memslots.js';
export type { KvmDirtyLog, KvmClearDirtyLog } from './memslot/dirty-log.js';
export { DirtyBitmap, DIRTY_CHUNK_PAGES } from './memslot/dirty-bitmap.js';
export {
  KvmDirtyRing, DIRTY_RING_FULL_EXIT, KVM_DIRTY_GFN_F_DIRTY, KVM_DIRTY_GFN_F_RESET, KVM_DIRTY_GFN_F_MASK, KVM_DIRTY_GFN_SIZE,
  KVM_DIRTY_LOG_PAGE_OFFSET, KVM_DIRTY_RING_RSVD_ENTRIES, KVM_DIRTY_RING_MAX_ENTRIES, dirtyRingSizeError, kvmPageInDirtyRing,
  type KvmDirtyGfn, type DirtyRingResetHooks,
} from './memslot/dirty-ring.js';
export { RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_NAMES } from './mmu/mmu-internal.js';
export type { KernelOp } from './steps.js';
export { checkVmInvariants, assertVmInvariants, type InvariantOptions } from './invariants.js';
export {
  UPSTREAM_PROFILE, UPSTREAM_SHADOW_PROFILE, LINUX_6_18_PROFILE, LINUX_6_18_PVM_PROFILE, LINUX_6_18_PVM_NO_GMEM_PROFILE,
  HOST_FALLBACK_PROFILE, PROFILES, profileByName, profileMismatch, withPciHole,
} from './profile.js';
export { Tracer, recordTrace, type TraceEvent, type TraceListener } from './trace.js';

/* -- guest paging and the shadow MMU (tdp_enabled = false; docs/shadow-mmu.md) -- */
export {
  X86_CR0_PE, X86_CR0_WP, X86_CR0_PG, X86_CR4_PAE, X86_CR4_LA57, X86_CR4_SMEP, X86_CR4_SMAP, EFER_LME, EFER_LMA, EFER_NX,
  X86_EFLAGS_AC, PFERR_PRESENT_MASK, PFERR_WRITE_MASK, PFERR_USER_MASK, PFERR_RSVD_MASK, PFERR_FETCH_MASK, PFERR_IMPLICIT_ACCESS,
  DEFAULT_MAXPHYADDR, VMX_EPTP_MT_WB, VMX_EPTP_PWL_4, VMX_EPTP_PWL_5, VMX_EPTP_AD_ENABLE_BIT,
  calcCpuRole, calcEptCpuRole, pgdToGfn, type GuestPagingRegs, type CpuRole,
} from './mmu/guest-paging.js';
export {
  GuestWalker, type GuestPteMemory, type GpteHalves, gpteToGfn, pt64Index, permissionFault, isRsvdBitsSet, gpteAccess64,
  eptGpteAccess, PT_PRESENT_MASK, PT_WRITABLE_MASK, PT_USER_MASK, PT_ACCESSED_MASK, PT_DIRTY_MASK, PT_PAGE_SIZE_MASK, PT64_NX_HI,
  VMX_EPT_READABLE_MASK, VMX_EPT_WRITABLE_MASK, VMX_EPT_EXECUTABLE_MASK, VMX_EPT_ACCESS_BIT, VMX_EPT_DIRTY_BIT,
} from './mmu/paging-tmpl.js';
export { GuestPageTableBuilder, type GuestPteFlags, type GuestPtMemory } from './mmu/guest-pt-builder.js';
export { sptePfn } from './mmu/spte.js';
export {
  ShadowMmu, kvmPageTableHashfn, type GuestPteReader, type HugepageAdjuster, type ShadowMmuStats, type ShadowMmuHost, type ShadowMmuOptions, type ShadowVcpuContext, type ShadowWarning,
} from './mmu/shadow/shadow-mmu.js';
export { VcpuPaging, ShadowAccessOp, type GvaAccess } from './mmu/shadow/vcpu-paging.js';
export { Rmap, PTE_LIST_EXT } from './mmu/shadow/rmap.js';
export { VmGuestMemory } from './mmu/shadow/guest-memory.js';
export { checkShadowMmu } from './mmu/shadow/shadow-invariants.js';
export {
  ROLE_LEVEL_MASK, ROLE_HAS_4_BYTE_GPTE, ROLE_QUADRANT_SHIFT, ROLE_DIRECT, ROLE_ACCESS_SHIFT, ROLE_ACCESS_MASK, ROLE_INVALID,
  ROLE_EFER_NX, ROLE_CR0_WP, ROLE_SMEP_ANDNOT_WP, ROLE_SMAP_ANDNOT_WP, ROLE_AD_DISABLED, ROLE_GUEST_MODE, ROLE_PASSTHROUGH,
  roleLevel, roleDirect, roleAccess, roleGuestMode, roleInvalid, childRole, makeRole, describeRole, LEGACY_SPTE, EPT_SPTE, type SpteFormat,
} from './mmu/shadow/mmu-page.js';

/* -- the host: physical memory, the VMM process -- */
export { PhysMem } from './host/phys-mem.js';
export { Process } from './host/process.js';
export {
  HostSignal, type MappingBacking, type MmapArgs, type MmapProt,
  MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_COLLAPSE,
} from './host/address-space.js';
export { MemfdFile, DevKvmFile, pseudoFileRead, pseudoFileWrite, nextInodeNumber, type FileStat, type FileIo } from './host/files.js';

/* -- the plug-in interfaces: vendor backends and memory providers -- */
export {
  KVM_FILTER_SHARED, KVM_FILTER_PRIVATE, type MemslotView, type KvmFile, type KvmRunExit, type KernelProfile,
  type VendorEdge, type NoVendorEdge, type VendorBackend, type BackendEnv, type BackendFactory, type VmForBackend,
  type AttributeChange, type GuestAccessCheck, type GuestAccessVerdict, type GuestOpResult, type VendorIoctlResult,
  type GuestMemoryFile, type GmemPfn, type KvmGmemPopulateArgs, type GmemPopulateRequest, type FileMappingBacking,
  type GuestMemfdFactory, type KvmCreateGuestMemfd, type VmForProvider, type HostPhysMem, type KvmEncRegion,
} from './backend.js';

/* -- guest exception delivery through the IDT -- */
export {
  deliverException, KVM_INTERNAL_ERROR_DELIVERY_EV, EXCEPTION_NAMES, IDTR_RESET, DE_VECTOR, DF_VECTOR, TS_VECTOR, NP_VECTOR, SS_VECTOR, GP_VECTOR, PF_VECTOR,
  type IdtRegister, type EventVcpu,
} from './event-delivery.js';

/* -- NUMA memory policy of the VMM process -- */
export {
  MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE, MPOL_MAX,
  MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES, MPOL_MF_STRICT, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL,
  SharedPolicy, mpolNew, sanitizeMpolMode, policyNode, DEFAULT_POLICY, type MemPolicy,
} from './host/numa.js';
