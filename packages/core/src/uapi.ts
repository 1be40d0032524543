/**
 * KVM uAPI constants (include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h), with the
 * kernel's names. Values are the upstream ones; model-only additions say so.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/* ---- VM types (KVM_CREATE_VM argument on x86) ---- */
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;
export const KVM_X86_TDX_VM = 5;
export type VmTypeName =
  | 'KVM_X86_DEFAULT_VM'
  | 'KVM_X86_SW_PROTECTED_VM'
  | 'KVM_X86_SEV_VM'
  | 'KVM_X86_SEV_ES_VM'
  | 'KVM_X86_SNP_VM'
  | 'KVM_X86_TDX_VM';
export const VM_TYPES: Record<VmTypeName, number> = {
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
};

/* ---- memslot flags (kvm_userspace_memory_region{,2}.flags) ---- */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
/**
 * Model-only: KVM_MEM_PCI_HOLE from Vitaly Kuznetsov's 2020 RFC, which was never merged.
 * The RFC used bit 2, which upstream now assigns to KVM_MEM_GUEST_MEMFD; the model uses
 * bit 15, the highest userspace-visible flag bit, so it can never collide with a real flag.
 */
export const KVM_MEM_PCI_HOLE = 1 << 15;
/** Kernel-internal slot flags, never accepted from userspace. */
export const KVM_MEMSLOT_INVALID = 1 << 16;
export const KVM_MEMSLOT_GMEM_ONLY = 1 << 17;

export const MEMSLOT_FLAGS: Record<string, number> = {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_PCI_HOLE,
};

/* ---- memslot limits (include/linux/kvm_host.h, x86) ---- */
export const KVM_MEM_SLOTS_NUM = 32767; // SHRT_MAX
export const KVM_INTERNAL_MEM_SLOTS = 3;
export const KVM_USER_MEM_SLOTS = KVM_MEM_SLOTS_NUM - KVM_INTERNAL_MEM_SLOTS; // 32764
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/** x86: SMM gives ordinary VMs a second address space. */
export const KVM_MAX_NR_ADDRESS_SPACES = 2;

/* ---- capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP) ---- */
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_SYNC_MMU = 16;
export const KVM_CAP_READONLY_MEM = 81;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118;
export const KVM_CAP_MAX_VCPU_ID = 128;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_EXIT_HYPERCALL = 201;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
export const KVM_CAP_DIRTY_LOG_RING = 192;
export const KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
export const KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP = 225;
/**
 * Model-only: the capability the 2020 KVM_MEM_PCI_HOLE RFC proposed (186 in the RFC, since
 * reassigned upstream). The model answers it under a number far above every upstream cap.
 */
export const KVM_CAP_PCI_HOLE_MEM = 0x10000 + 186;

export const CAPS: Record<string, number> = {
  KVM_CAP_NR_VCPUS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_VM_TYPES,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_PCI_HOLE_MEM,
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP,
};

/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 arguments */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;
export const KVM_DIRTY_LOG_MANUAL_CAPS = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

/* ---- memory attributes ---- */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

/* ---- guest_memfd ---- */
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;
/**
 * guest_memfd backed by HugeTLB folios: the in-flight series "KVM: guest_memfd: HugeTLB
 * support" (Ackerley Tng; not upstream). The page size is encoded like mmap's MAP_HUGE_*
 * (log2 of the size at bit 26). The model offers 2 MiB only; the bit number is the model's
 * (the next free guest_memfd flag). docs/gmem.md.
 */
export const GUEST_MEMFD_FLAG_HUGETLB = 1 << 2;
export const GUESTMEM_HUGETLB_FLAG_SHIFT = 26;
export const GUESTMEM_HUGETLB_FLAG_2MB = 21 << GUESTMEM_HUGETLB_FLAG_SHIFT;
/** the page-size field of the HugeTLB flags (6 bits at GUESTMEM_HUGETLB_FLAG_SHIFT) */
export const GUESTMEM_HUGETLB_FLAG_MASK = 0x3f << GUESTMEM_HUGETLB_FLAG_SHIFT;
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/* ---- exits (kvm_run.exit_reason) ---- */
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_SYSTEM_EVENT = 24;
export const KVM_EXIT_DIRTY_RING_FULL = 31;
export const KVM_EXIT_MEMORY_FAULT = 39;
export const EXIT_REASONS: Record<string, number> = {
  KVM_EXIT_UNKNOWN,
  KVM_EXIT_IO,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_MEMORY_FAULT,
};
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;
/* kvm_run.system_event.type */
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
export const KVM_SYSTEM_EVENT_RESET = 2;
export const KVM_SYSTEM_EVENT_CRASH = 3;
export const KVM_SYSTEM_EVENT_WAKEUP = 4;
export const KVM_SYSTEM_EVENT_SUSPEND = 5;
export const KVM_SYSTEM_EVENT_SEV_TERM = 6;
export const KVM_SYSTEM_EVENT_TDX_FATAL = 7;
/* kvm_run.internal.suberror */
export const KVM_INTERNAL_ERROR_EMULATION = 1;

/* ---- hypercalls ---- */
export const KVM_HC_MAP_GPA_RANGE = 12;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1 << 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_1G = 1 << 1;
export const KVM_MAP_GPA_RANGE_DECRYPTED = 0 << 4;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4;
export const KVM_EXIT_HYPERCALL_LONG_MODE = 1 << 0;

/* ---- page levels (enum pg_level) ---- */
export const PG_LEVEL_4K = 1;
export const PG_LEVEL_2M = 2;
export const PG_LEVEL_1G = 3;
export const PG_LEVEL_512G = 4;
export type PgLevel = 1 | 2 | 3 | 4 | 5;
/** Number of 4 KiB pages mapped by one entry at `level` (KVM_PAGES_PER_HPAGE). */
export function pagesPerHpage(level: number): number {
  return 2 ** (9 * (level - 1));
}
