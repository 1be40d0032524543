/**
 * `union kvm_mmu_page_role` (arch/x86/include/asm/kvm_host.h) packed into one int32 in the
 * kernel's bit layout, and the SPTE bit formats the shadow MMU writes (spte.h): the legacy
 * x86 format when KVM shadows the guest's own page tables (tdp_enabled = false), and the EPT
 * format when it shadows L1's EPT tables for an L2 (nested TDP).
 */
import { ACC_ALL } from '../mmu-internal.js';

/* role.word bits: level:4, has_4_byte_gpte:1, quadrant:2, direct:1, access:3, invalid:1,
 * efer_nx:1, cr0_wp:1, smep_andnot_wp:1, smap_andnot_wp:1, ad_disabled:1, guest_mode:1,
 * passthrough:1, :5, smm:8 */
export const ROLE_LEVEL_MASK = 0xf;
export const ROLE_HAS_4_BYTE_GPTE = 1 << 4;
export const ROLE_QUADRANT_SHIFT = 5;
export const ROLE_DIRECT = 1 << 7;
export const ROLE_ACCESS_SHIFT = 8;
export const ROLE_ACCESS_MASK = 7 << ROLE_ACCESS_SHIFT;
export const ROLE_INVALID = 1 << 11;
export const ROLE_EFER_NX = 1 << 12;
export const ROLE_CR0_WP = 1 << 13;
export const ROLE_SMEP_ANDNOT_WP = 1 << 14;
export const ROLE_SMAP_ANDNOT_WP = 1 << 15;
export const ROLE_AD_DISABLED = 1 << 16;
export const ROLE_GUEST_MODE = 1 << 17;
export const ROLE_PASSTHROUGH = 1 << 18;

export function roleLevel(role: number): number {
  return role & ROLE_LEVEL_MASK;
}
export function roleDirect(role: number): boolean {
  return (role & ROLE_DIRECT) !== 0;
}
export function roleAccess(role: number): number {
  return (role & ROLE_ACCESS_MASK) >>> ROLE_ACCESS_SHIFT;
}
export function roleGuestMode(role: number): boolean {
  return (role & ROLE_GUEST_MODE) !== 0;
}
export function roleInvalid(role: number): boolean {
  return (role & ROLE_INVALID) !== 0;
}

/** kvm_mmu_child_role(): the parent's role one level down with `direct` and `access` */
export function childRole(parentRole: number, direct: boolean, access: number): number {
  let r = parentRole & ~(ROLE_LEVEL_MASK | ROLE_ACCESS_MASK | ROLE_DIRECT | ROLE_PASSTHROUGH);
  r |= roleLevel(parentRole) - 1;
  r |= (access & ACC_ALL) << ROLE_ACCESS_SHIFT;
  if (direct) r |= ROLE_DIRECT;
  return r | 0;
}

export function makeRole(fields: {
  level: number;
  direct: boolean;
  access?: number;
  efer_nx?: boolean;
  cr0_wp?: boolean;
  smep_andnot_wp?: boolean;
  smap_andnot_wp?: boolean;
  ad_disabled?: boolean;
  guest_mode?: boolean;
}): number {
  let r = fields.level & ROLE_LEVEL_MASK;
  if (fields.direct) r |= ROLE_DIRECT;
  r |= ((fields.access ?? ACC_ALL) & 7) << ROLE_ACCESS_SHIFT;
  if (fields.efer_nx) r |= ROLE_EFER_NX;
  if (fields.cr0_wp) r |= ROLE_CR0_WP;
  if (fields.smep_andnot_wp) r |= ROLE_SMEP_ANDNOT_WP;
  if (fields.smap_andnot_wp) r |= ROLE_SMAP_ANDNOT_WP;
  if (fields.ad_disabled) r |= ROLE_AD_DISABLED;
  if (fields.guest_mode) r |= ROLE_GUEST_MODE;
  return r | 0;
}

/** role fields as an object, for traces and explanations */
export function describeRole(role: number): Record<string, number | boolean> {
  return {
    level: roleLevel(role),
    direct: roleDirect(role),
    access: roleAccess(role),
    invalid: roleInvalid(role),
    efer_nx: (role & ROLE_EFER_NX) !== 0,
    cr0_wp: (role & ROLE_CR0_WP) !== 0,
    ad_disabled: (role & ROLE_AD_DISABLED) !== 0,
    guest_mode: roleGuestMode(role),
  };
}

/**
 * The SPTE bits that differ between the two formats the shadow MMU writes (spte.h
 * shadow_*_mask after kvm_mmu_reset_all_pte_masks() / kvm_mmu_set_ept_masks()). Bits shared
 * by both: W (bit 1), the page-size bit (7), SPTE_MMU_PRESENT (11), pfn (12–51).
 */
export interface SpteFormat {
  readonly name: 'legacy' | 'ept';
  /** shadow_present_mask (lo) */
  readonly presentLo: number;
  /** shadow_user_mask (lo): U for legacy, R for EPT */
  readonly userLo: number;
  /** shadow_x_mask (lo): EPT X */
  readonly xLo: number;
  /** shadow_nx_mask (hi): legacy NX, bit 63 */
  readonly nxHi: number;
  readonly accessedLo: number;
  readonly dirtyLo: number;
  readonly hostWritableLo: number;
  readonly hostWritableHi: number;
  readonly mmuWritableLo: number;
  readonly mmuWritableHi: number;
  /** bits every SPTE of this format carries (EPT SUPPRESS_VE) */
  readonly alwaysHi: number;
}

/** tdp_enabled = false: x86 page-table format, DEFAULT_SPTE_HOST_WRITABLE (9) / MMU_WRITABLE (10) */
export const LEGACY_SPTE: SpteFormat = Object.freeze({
  name: 'legacy',
  presentLo: 1 << 0,
  userLo: 1 << 2,
  xLo: 0,
  nxHi: 1 << 31,
  accessedLo: 1 << 5,
  dirtyLo: 1 << 6,
  hostWritableLo: 1 << 9,
  hostWritableHi: 0,
  mmuWritableLo: 1 << 10,
  mmuWritableHi: 0,
  alwaysHi: 0,
});

/** EPT (kvm_mmu_set_ept_masks(has_ad_bits = true, has_exec_only = false)), as spte.ts */
export const EPT_SPTE: SpteFormat = Object.freeze({
  name: 'ept',
  presentLo: 1 << 0,
  userLo: 1 << 0,
  xLo: 1 << 2,
  nxHi: 0,
  accessedLo: 1 << 8,
  dirtyLo: 1 << 9,
  hostWritableLo: 0,
  hostWritableHi: 1 << 25,
  mmuWritableLo: 0,
  mmuWritableHi: 1 << 26,
  alwaysHi: 1 << 31,
});
