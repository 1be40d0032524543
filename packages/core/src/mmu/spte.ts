/**
 * SPTE encoding (arch/x86/kvm/mmu/spte.h, spte.c) with the EPT masks that
 * `kvm_mmu_set_ept_masks(has_ad_bits = true, has_exec_only = false)` installs.
 *
 * JavaScript bit operators are 32-bit, so an SPTE is two 32-bit halves: `lo` = bits 0–31 and
 * `hi` = bits 32–63. Halves are kept as *signed* int32 numbers (`| 0`, the value an
 * Int32Array returns): the same bits, but always a small integer to the JIT, so hot paths
 * never box them. Compare halves with `===` only after `| 0`; use `>>> 0` to display them.
 *
 * This file is encoding only. Which bits a fault asks for (make_spte's policy) is the
 * caller's decision; `makeSpte` takes the already-decided access bits.
 */

import { ACC_EXEC_MASK, ACC_WRITE_MASK } from './mmu-internal.js';

/** A 64-bit SPTE as two signed 32-bit halves. */
export interface Spte {
  lo: number;
  hi: number;
}

/* ---- low half (bits 0–31) ---- */
/** VMX_EPT_READABLE_MASK; also shadow_user_mask and (without exec-only) the present mask */
export const EPT_READABLE_LO = 1 << 0;
/** PT_WRITABLE_MASK / VMX_EPT_WRITABLE_MASK */
export const PT_WRITABLE_LO = 1 << 1;
/** VMX_EPT_EXECUTABLE_MASK (shadow_x_mask) */
export const EPT_EXECUTABLE_LO = 1 << 2;
export const EPT_RWX_LO = 7;
/** PT_PAGE_SIZE_MASK: a huge leaf above 4K */
export const PT_PAGE_SIZE_LO = 1 << 7;
/** VMX_EPT_ACCESS_BIT (shadow_accessed_mask with A/D bits) */
export const EPT_ACCESSED_LO = 1 << 8;
/** VMX_EPT_DIRTY_BIT (shadow_dirty_mask with A/D bits) */
export const EPT_DIRTY_LO = 1 << 9;
/** SPTE_MMU_PRESENT_MASK: software "shadow-present", distinct from hardware R */
export const SPTE_MMU_PRESENT_LO = 1 << 11;

/* ---- high half (bits 32–63): bit N is 1 << (N - 32) ---- */
/** SPTE_TDP_AD_MASK, bits 53:52 (0 = A/D enabled) */
export const SPTE_TDP_AD_SHIFT_HI = 52 - 32;
export const SPTE_TDP_AD_MASK_HI = 3 << SPTE_TDP_AD_SHIFT_HI;
export const SPTE_TDP_AD_DISABLED_HI = 1 << SPTE_TDP_AD_SHIFT_HI;
export const SPTE_TDP_AD_WRPROT_ONLY_HI = 2 << SPTE_TDP_AD_SHIFT_HI;
/** EPT_SPTE_HOST_WRITABLE, bit 57 */
export const EPT_SPTE_HOST_WRITABLE_HI = 1 << (57 - 32);
/** EPT_SPTE_MMU_WRITABLE, bit 58 */
export const EPT_SPTE_MMU_WRITABLE_HI = 1 << (58 - 32);
/** VMX_EPT_SUPPRESS_VE_BIT, bit 63 = SHADOW_NONPRESENT_VALUE on 64-bit hosts */
export const EPT_SUPPRESS_VE_HI = 1 << 31;

/** pfn bits 12–51 (PT64_BASE_ADDR_MASK): 20 bits in lo, 20 bits in hi */

const PFN_HI_MASK = 0x000fffff;
const TWO_20 = 2 ** 20;

/** SHADOW_NONPRESENT_VALUE: a zapped entry; "suppress #VE" so a TDX guest gets no #VE */
export const SHADOW_NONPRESENT_LO = 0;
export const SHADOW_NONPRESENT_HI = EPT_SUPPRESS_VE_HI;

/**
 * FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5a0 (REMOVED_SPTE before ~v6.13): "being changed,
 * retry". No RWX bits, no pfn bits, not MMU-present, not MMIO.
 */
export const FROZEN_SPTE_LO = 0x5a0;
export const FROZEN_SPTE_HI = SHADOW_NONPRESENT_HI;

/* ---- MMIO SPTEs ---- */
/** VMX_EPT_MISCONFIG_WX_VALUE: W|X without R, an EPT misconfiguration */
export const EPT_MMIO_VALUE = 0b110;
/**
 * shadow_mmio_mask for EPT = RWX | SUPPRESS_VE. `mmioValue` below is the VM's
 * kvm->arch.shadow_mmio_value: EPT_MMIO_VALUE normally, 0 for TDX (#VE not suppressed, so
 * shared-GPA MMIO raises #VE in the guest). Only the RWX bits of a value are meaningful
 * (the model's values never set SUPPRESS_VE).
 */
export const TDX_MMIO_VALUE = 0;
/** MMIO generation: bits 0–7 → spte bits 3–10, bits 8–18 → spte bits 52–62 (19 bits) */
export const MMIO_SPTE_GEN_LOW_START = 3;
export const MMIO_SPTE_GEN_LOW_BITS = 8;
export const MMIO_SPTE_GEN_HIGH_START = 52;
export const MMIO_SPTE_GEN_HIGH_BITS = 11;
export const MMIO_SPTE_GEN_MASK = (1 << (MMIO_SPTE_GEN_LOW_BITS + MMIO_SPTE_GEN_HIGH_BITS)) - 1;
const GEN_LOW_MASK_LO = 0xff << MMIO_SPTE_GEN_LOW_START; // bits 3..10
const GEN_HIGH_MASK_HI = 0x7ff << (MMIO_SPTE_GEN_HIGH_START - 32); // bits 52..62

/* ------------------------------------------------------------------------------------------ */
/* Decoders                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** is_shadow_present_pte(): SPTE_MMU_PRESENT_MASK (bit 11) */
export function spteIsPresent(lo: number): boolean {
  return (lo & SPTE_MMU_PRESENT_LO) !== 0;
}

/** is_large_pte(): bit 7 */
export function isLargePte(lo: number): boolean {
  return (lo & PT_PAGE_SIZE_LO) !== 0;
}

/** is_last_spte(): a leaf at `level` (4K entries are always leaves) */
export function isLastSpte(lo: number, level: number): boolean {
  return level === 1 || (lo & PT_PAGE_SIZE_LO) !== 0;
}

/** is_writable_pte(): hardware W, bit 1 */
export function isWritable(lo: number): boolean {
  return (lo & PT_WRITABLE_LO) !== 0;
}

export function isReadable(lo: number): boolean {
  return (lo & EPT_READABLE_LO) !== 0;
}

/** is_executable_pte() for EPT: X, bit 2 */
export function isExecutable(lo: number): boolean {
  return (lo & EPT_EXECUTABLE_LO) !== 0;
}

/** A/D-enabled SPTE accessed bit (bit 8) */
export function isAccessed(lo: number): boolean {
  return (lo & EPT_ACCESSED_LO) !== 0;
}

/** A/D-enabled SPTE dirty bit (bit 9) */
export function isDirty(lo: number): boolean {
  return (lo & EPT_DIRTY_LO) !== 0;
}

/** Host-writable (bit 57): the host mapping of the pfn is writable */
export function isHostWritable(hi: number): boolean {
  return (hi & EPT_SPTE_HOST_WRITABLE_HI) !== 0;
}

/** MMU-writable (bit 58): KVM has not write-protected the SPTE (is_mmu_writable_spte) */
export function isMmuWritable(hi: number): boolean {
  return (hi & EPT_SPTE_MMU_WRITABLE_HI) !== 0;
}

/** SUPPRESS_VE (bit 63) */
export function isSuppressVe(hi: number): boolean {
  return (hi & EPT_SUPPRESS_VE_HI) !== 0;
}

/** is_frozen_spte() */
export function isFrozenSpte(lo: number, hi: number): boolean {
  return (lo | 0) === FROZEN_SPTE_LO && (hi | 0) === FROZEN_SPTE_HI;
}

/** spte_to_pfn(): bits 12–51 */
export function sptePfn(lo: number, hi: number): number {
  return (lo >>> 12) + (hi & PFN_HI_MASK) * TWO_20;
}

/** lo/hi halves of pfn << PAGE_SHIFT (pfn < 2^40) */
export function pfnLo(pfn: number): number {
  return (pfn & 0xfffff) << 12;
}
export function pfnHi(pfn: number): number {
  // a pfn below 2^32 (16 TiB of host memory) shifts as an integer
  return (pfn >= 0 && pfn <= 0xffffffff ? pfn >>> 20 : Math.floor(pfn / TWO_20)) & PFN_HI_MASK;
}

/**
 * leaf_spte_change_needs_tlb_flush(): dropping MMU-writable requires a flush (a CPU may
 * still hold a writable translation).
 */
export function leafSpteChangeNeedsTlbFlush(oldHi: number, newHi: number): boolean {
  return isMmuWritable(oldHi) && !isMmuWritable(newHi);
}

/**
 * check_spte_writable_invariants(): W requires MMU-writable; MMU-writable requires
 * host-writable. Returns a description of the violation, or null.
 */
export function spteWritableInvariantViolation(lo: number, hi: number): string | null {
  if (isMmuWritable(hi)) {
    if (!isHostWritable(hi)) return 'MMU-writable SPTE is not Host-writable';
  } else if (isWritable(lo)) {
    return 'Writable SPTE is not MMU-writable';
  }
  return null;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoders                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/**
 * The bits of make_spte() for a TDP (EPT, A/D enabled, not exec-only) leaf:
 *   MMU-present | present mask (R | SUPPRESS_VE) | A unless prefetch | X for ACC_EXEC |
 *   R for ACC_USER | page-size bit above 4K | host-writable | pfn |
 *   W + MMU-writable + D for ACC_WRITE when host-writable.
 * make_spte() drops ACC_WRITE when the host mapping is not writable, and marks every new
 * writable SPTE dirty (the fault path logs the page dirty up front). `pteAccess` is ACC_*.
 * A prefetched SPTE is made "old" (mark_spte_for_access_track with A/D: clear A).
 */
export function makeSpte(
  out: Spte,
  level: number,
  pfn: number,
  pteAccess: number,
  hostWritable: boolean,
  prefetch: boolean,
): Spte {
  let lo = SPTE_MMU_PRESENT_LO | EPT_READABLE_LO | pfnLo(pfn);
  let hi = EPT_SUPPRESS_VE_HI | pfnHi(pfn);
  if (!prefetch) lo |= EPT_ACCESSED_LO;
  if (pteAccess & ACC_EXEC_MASK) lo |= EPT_EXECUTABLE_LO;
  // ACC_USER_MASK maps to shadow_user_mask = R, which the present mask already sets
  if (level > 1) lo |= PT_PAGE_SIZE_LO;
  if (hostWritable) hi |= EPT_SPTE_HOST_WRITABLE_HI;
  if (hostWritable && pteAccess & ACC_WRITE_MASK) {
    lo |= PT_WRITABLE_LO | EPT_DIRTY_LO;
    hi |= EPT_SPTE_MMU_WRITABLE_HI;
  }
  out.lo = lo | 0;
  out.hi = hi | 0;
  return out;
}

/**
 * make_nonleaf_spte(): MMU-present | R | W | X | A | SUPPRESS_VE, pointing at a child table.
 * The model's "physical address" of a page table is its table id in the pool, stored in the
 * pfn bits.
 */
export function makeNonleafSpte(out: Spte, childTable: number): Spte {
  out.lo = (SPTE_MMU_PRESENT_LO | EPT_RWX_LO | EPT_ACCESSED_LO | pfnLo(childTable)) | 0;
  out.hi = (EPT_SUPPRESS_VE_HI | pfnHi(childTable)) | 0;
  return out;
}

/**
 * make_small_spte(): child `index` of a huge leaf at `hugeLevel` being split one level
 * down: the huge SPTE's bits, pfn + index * KVM_PAGES_PER_HPAGE(hugeLevel - 1), and the
 * page-size bit cleared when the child is 4K. (The NX huge-page mitigation, which would
 * make 4K children executable, is not modelled.) The pfn offset always fits in `lo`
 * (index << 9*(hugeLevel-2) < 2^18 for 2M and 1G pages).
 */
export function makeSmallSpte(out: Spte, hugeLo: number, hugeHi: number, hugeLevel: number, index: number): Spte {
  let lo = hugeLo | (index << (12 + 9 * (hugeLevel - 2)));
  if (hugeLevel === 2) lo &= ~PT_PAGE_SIZE_LO;
  out.lo = lo | 0;
  out.hi = hugeHi | 0;
  return out;
}

/** generation_mmio_spte_mask() split in halves */
function genLo(gen: number): number {
  return ((gen << MMIO_SPTE_GEN_LOW_START) & GEN_LOW_MASK_LO) | 0;
}
function genHi(gen: number): number {
  return (((gen >>> MMIO_SPTE_GEN_LOW_BITS) << (MMIO_SPTE_GEN_HIGH_START - 32)) & GEN_HIGH_MASK_HI) | 0;
}

/**
 * make_mmio_spte(): generation bits | shadow_mmio_value | gpa. The L1TF relocation of
 * gfn bits (shadow_nonpresent_or_rsvd_mask) is 0 on hosts without the erratum and is not
 * modelled; shadow_mmio_access_mask is 0 for EPT.
 */
export function makeMmioSpte(out: Spte, gfn: number, generation: number, mmioValue = EPT_MMIO_VALUE): Spte {
  const gen = generation & MMIO_SPTE_GEN_MASK;
  out.lo = (genLo(gen) | (mmioValue & EPT_RWX_LO) | pfnLo(gfn)) | 0;
  out.hi = (genHi(gen) | pfnHi(gfn)) | 0;
  return out;
}

/** is_mmio_spte(kvm, spte): (spte & (RWX | SUPPRESS_VE)) == kvm->arch.shadow_mmio_value */
export function isMmioSpte(lo: number, hi: number, mmioValue = EPT_MMIO_VALUE): boolean {
  return (lo & EPT_RWX_LO) === (mmioValue & EPT_RWX_LO) && (hi & EPT_SUPPRESS_VE_HI) === 0;
}

/** get_mmio_spte_generation() */
export function getMmioSpteGeneration(lo: number, hi: number): number {
  const low = (lo & GEN_LOW_MASK_LO) >>> MMIO_SPTE_GEN_LOW_START;
  const high = (hi & GEN_HIGH_MASK_HI) >>> (MMIO_SPTE_GEN_HIGH_START - 32);
  return low | (high << MMIO_SPTE_GEN_LOW_BITS);
}

/** The gfn an MMIO SPTE caches (bits 12–51). */
export function getMmioSpteGfn(lo: number, hi: number): number {
  return sptePfn(lo, hi);
}

/* ------------------------------------------------------------------------------------------ */
/* 64-bit views, for traces, tests and display (not for hot paths)                             */
/* ------------------------------------------------------------------------------------------ */

export function spteToBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function spteFromBigInt(out: Spte, v: bigint): Spte {
  out.lo = Number(BigInt.asIntN(32, v));
  out.hi = Number(BigInt.asIntN(32, v >> 32n));
  return out;
}

export function spteToHex(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}
