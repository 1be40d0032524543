/**
 * The guest's paging state and the role the MMU derives from it (arch/x86/kvm/mmu/mmu.c
 * kvm_calc_cpu_role(), kvm_mmu.h is_cr0_wp() etc.): CR0.PG / CR0.WP, CR4.PAE / LA57 / SMEP /
 * SMAP, EFER.LME / LMA / NX and CR3. Only 64-bit paging (4- and 5-level) and "paging off" are
 * modelled; 32-bit and PAE paging (PT32_ROOT_LEVEL, PT32E_ROOT_LEVEL) are not.
 */
import { fail } from '../errno.js';

/* CR0, CR4, EFER bits (arch/x86/include/uapi/asm/processor-flags.h, msr-index.h) */
export const X86_CR0_PE = 1 << 0;
export const X86_CR0_WP = 1 << 16;
export const X86_CR0_PG = 1 << 31;
export const X86_CR4_PAE = 1 << 5;
export const X86_CR4_LA57 = 1 << 12;
export const X86_CR4_SMEP = 1 << 20;
export const X86_CR4_SMAP = 1 << 21;
export const EFER_LME = 1 << 8;
export const EFER_LMA = 1 << 10;
export const EFER_NX = 1 << 11;
/** X86_EFLAGS_AC: SMAP is off for explicit supervisor accesses while it is set */
export const X86_EFLAGS_AC = 1 << 18;

/* Page-fault error code bits (PFERR_*, kvm_host.h) */
export const PFERR_PRESENT_MASK = 1 << 0;
export const PFERR_WRITE_MASK = 1 << 1;
export const PFERR_USER_MASK = 1 << 2;
export const PFERR_RSVD_MASK = 1 << 3;
export const PFERR_FETCH_MASK = 1 << 4;
/** PFERR_IMPLICIT_ACCESS (bit 48): a supervisor access the CPU makes itself (SMAP ignores EFLAGS.AC) */
export const PFERR_IMPLICIT_ACCESS = 2 ** 48;

/** The guest-visible registers that decide how a gva is translated. */
export interface GuestPagingRegs {
  cr0: number;
  cr3: number;
  cr4: number;
  efer: number;
  rflags: number;
}

/** The parts of `union kvm_cpu_role` the walker uses (kvm_calc_cpu_role). */
export interface CpuRole {
  /** paging levels: 0 = paging off, 4 or 5 (PT64_ROOT_4LEVEL / PT64_ROOT_5LEVEL) */
  readonly level: number;
  /** EPT format (a nested guest's EPT tables): PTTYPE_EPT */
  readonly ept: boolean;
  readonly efer_nx: boolean;
  readonly cr0_wp: boolean;
  readonly cr4_smep: boolean;
  readonly cr4_smap: boolean;
  /** the guest's A/D bits exist (always for 64-bit paging; EPTP bit 6 for EPT) */
  readonly haveAd: boolean;
  /** guest MAXPHYADDR: gpte bits [maxPhyAddr, 51] are reserved */
  readonly maxPhyAddr: number;
}

export const DEFAULT_MAXPHYADDR = 46;

/**
 * kvm_calc_cpu_role() for a vCPU not in guest mode. Long mode needs CR0.PG, CR4.PAE and
 * EFER.LME (then LMA); protected-mode paging without long mode (PAE / 32-bit) is not modelled.
 */
export function calcCpuRole(regs: GuestPagingRegs, maxPhyAddr = DEFAULT_MAXPHYADDR): CpuRole {
  const pg = (regs.cr0 & X86_CR0_PG) !== 0;
  let level = 0;
  if (pg) {
    if (!(regs.cr4 & X86_CR4_PAE) || !(regs.efer & EFER_LME)) {
      fail('EINVAL', 'guest paging: only 64-bit paging (CR4.PAE and EFER.LME with CR0.PG) is modelled');
    }
    level = regs.cr4 & X86_CR4_LA57 ? 5 : 4;
  }
  return Object.freeze({
    level,
    ept: false,
    efer_nx: pg && (regs.efer & EFER_NX) !== 0,
    cr0_wp: (regs.cr0 & X86_CR0_WP) !== 0,
    cr4_smep: pg && (regs.cr4 & X86_CR4_SMEP) !== 0,
    cr4_smap: pg && (regs.cr4 & X86_CR4_SMAP) !== 0,
    haveAd: true,
    maxPhyAddr,
  });
}

/** EPTP bits (vmx.h): memory type WB (6) in bits 2:0, walk length - 1 in 5:3, A/D enable bit 6 */
export const VMX_EPTP_MT_WB = 6;
export const VMX_EPTP_PWL_4 = 3 << 3;
export const VMX_EPTP_PWL_5 = 4 << 3;
export const VMX_EPTP_AD_ENABLE_BIT = 1 << 6;

/** kvm_calc_shadow_ept_root_page_role(): the role of L1's EPT as L2's translation */
export function calcEptCpuRole(eptp: number, maxPhyAddr = DEFAULT_MAXPHYADDR): CpuRole {
  const pwl = ((eptp >>> 3) & 7) + 1;
  if (pwl !== 4 && pwl !== 5) fail('EINVAL', `EPTP page-walk length ${pwl} is not 4 or 5`);
  return Object.freeze({
    level: pwl,
    ept: true,
    efer_nx: true,
    cr0_wp: true,
    cr4_smep: false,
    cr4_smap: false,
    haveAd: (eptp & VMX_EPTP_AD_ENABLE_BIT) !== 0,
    maxPhyAddr,
  });
}

/** the gfn CR3 / EPTP points at (bits 12..51) */
export function pgdToGfn(pgd: number): number {
  return Math.floor(pgd / 4096) % 2 ** 40;
}
