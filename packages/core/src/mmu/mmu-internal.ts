/**
 * Constants shared by the x86 MMU (arch/x86/kvm/mmu/mmu_internal.h, tdp_mmu.h, spte.h).
 */

/*
 * Return values of the page-fault handlers (enum in mmu_internal.h), in kernel order.
 * Negative errno values are returned alongside them (-EFAULT, -EIO, -EAGAIN, -EINTR...).
 */
/** internal: a sub-handler did not finish the fault, keep going */
export const RET_PF_CONTINUE = 0;
/** re-enter the guest; the fault repeats (lost race, frozen SPTE, invalidation...) */
export const RET_PF_RETRY = 1;
/** emulate the instruction (MMIO, write to a read-only slot) */
export const RET_PF_EMULATE = 2;
/** the gfn is write-tracked / the SPTE write-protected for a shadow page */
export const RET_PF_WRITE_PROTECTED = 3;
/** the SPTE is stale or invalid: take the full slow path */
export const RET_PF_INVALID = 4;
/** a new SPTE was installed */
export const RET_PF_FIXED = 5;
/** the SPTE was already correct */
export const RET_PF_SPURIOUS = 6;

export const RET_PF_NAMES: readonly string[] = [
  'RET_PF_CONTINUE',
  'RET_PF_RETRY',
  'RET_PF_EMULATE',
  'RET_PF_WRITE_PROTECTED',
  'RET_PF_INVALID',
  'RET_PF_FIXED',
  'RET_PF_SPURIOUS',
];

/** `enum kvm_tdp_mmu_root_types` (tdp_mmu.h) */
export const KVM_INVALID_ROOTS = 1 << 0;
export const KVM_DIRECT_ROOTS = 1 << 1;
export const KVM_MIRROR_ROOTS = 1 << 2;
export const KVM_VALID_ROOTS = KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS;
export const KVM_ALL_ROOTS = KVM_VALID_ROOTS | KVM_INVALID_ROOTS;

/* KVM access bits (spte.h): ACC_WRITE_MASK = PT_WRITABLE_MASK, ACC_USER_MASK = PT_USER_MASK */
export const ACC_EXEC_MASK = 1;
export const ACC_WRITE_MASK = 2;
export const ACC_USER_MASK = 4;
export const ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;

/** entries per page table (SPTE_ENT_PER_PAGE) */
export const SPTE_ENT_PER_PAGE = 512;
/** PT64_ROOT_4LEVEL / PT64_ROOT_5LEVEL: EPT page-walk lengths */
export const PT64_ROOT_4LEVEL = 4;
export const PT64_ROOT_5LEVEL = 5;
export const PT64_ROOT_MAX_LEVEL = 5;
