/**
 * The guest page-table walker: FNAME(walk_addr_generic) of arch/x86/kvm/mmu/paging_tmpl.h for
 * PTTYPE 64 (4- and 5-level long-mode paging) and PTTYPE_EPT (a nested guest's translation
 * through L1's EPT tables), with FNAME(gpte_access), FNAME(protect_clean_gpte),
 * FNAME(is_rsvd_bits_set), FNAME(update_accessed_dirty_bits) and permission_fault()
 * (mmu.h, with the rules update_permission_bitmask() in mmu.c precomputes).
 *
 * A gpte is two 32-bit halves (`lo` bits 0–31, `hi` bits 32–63), as SPTEs are in spte.ts.
 * The walker reads guest memory through `GuestPteMemory`, which is what the kernel's
 * kvm_vcpu_gfn_to_hva_prot() + __get_user() / __try_cmpxchg_user() do.
 */
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from './mmu-internal.js';
import {
  type CpuRole,
  PFERR_FETCH_MASK,
  PFERR_IMPLICIT_ACCESS,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from './guest-paging.js';

/** the gfn's "guest memory" as the walker reads and updates it */
export interface GuestPteMemory {
  /**
   * Reads the 8-byte gpte at `gpa` into `out`. False when the gfn has no memslot or the hva
   * cannot be read (kvm_is_error_hva / __get_user failure: the walk faults).
   */
  readGpte(gpa: number, out: GpteHalves): boolean;
  /** kvm_vcpu_gfn_to_hva_prot()'s `writable`: the table's memslot is not read-only */
  gptWritable(gfn: number): boolean;
  /**
   * __try_cmpxchg_user(): stores new if the gpte still holds old. 0 stored, 1 the gpte
   * changed (the walk restarts), negative errno on a fault. Marks the table's page dirty
   * (kvm_vcpu_mark_page_dirty) when it stores.
   */
  cmpxchgGpte(gpa: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number;
}

export interface GpteHalves {
  lo: number;
  hi: number;
}

/* gpte bits (PT_*_MASK, 64-bit paging) */
export const PT_PRESENT_MASK = 1 << 0;
export const PT_WRITABLE_MASK = 1 << 1;
export const PT_USER_MASK = 1 << 2;
export const PT_ACCESSED_MASK = 1 << 5;
export const PT_DIRTY_MASK = 1 << 6;
export const PT_PAGE_SIZE_MASK = 1 << 7;
/** PT64_NX_SHIFT = 63: bit 31 of the high half */
export const PT64_NX_HI = 1 << 31;
/* EPT gpte bits */
export const VMX_EPT_READABLE_MASK = 1 << 0;
export const VMX_EPT_WRITABLE_MASK = 1 << 1;
export const VMX_EPT_EXECUTABLE_MASK = 1 << 2;
export const VMX_EPT_RWX_MASK = 7;
export const VMX_EPT_IPAT_BIT = 1 << 6;
export const VMX_EPT_MT_WB = 6 << 3;
export const VMX_EPT_ACCESS_BIT = 1 << 8;
export const VMX_EPT_DIRTY_BIT = 1 << 9;

const TWO_20 = 2 ** 20;
const TWO_32 = 2 ** 32;

/** gpte_to_gfn_lvl(gpte, PG_LEVEL_4K): bits 12..51 */
export function gpteToGfn(lo: number, hi: number): number {
  return (lo >>> 12) + (hi & 0xfffff) * TWO_20;
}

/** PT64_INDEX(addr, level): 9 bits of the address per level above bit 12 */
export function pt64Index(addr: number, level: number): number {
  // the low 32 bits of a non-negative integer below 2^53, then bits 12 + 9 * (level - 1) on
  if (level <= 2) return ((addr >>> 0) >>> (3 + 9 * level)) & 511;
  // the high bits: addr / 2^32 is below 2^21, so >>> 0 is its floor
  const hi = addr > 0xffffffff ? (addr / TWO_32) >>> 0 : 0;
  if (level === 3) return (((addr >>> 0) >>> 30) | (hi << 2)) & 511;
  return (hi >>> (9 * level - 29)) & 511;
}

/**
 * PT64_INDEX from an address already split into 32-bit halves: `lo = addr >>> 0` and `hi` =
 * its bits 32 and up (below 2^21). Walks that index every level of one address split it
 * once and pass integers below 2^32, not the address as a double (which a call that is not
 * inlined boxes).
 */
export function pt64IndexOf(lo: number, hi: number, level: number): number {
  if (level <= 2) return (lo >>> (3 + 9 * level)) & 511;
  if (level === 3) return ((lo >>> 30) | (hi << 2)) & 511;
  return (hi >>> (9 * level - 29)) & 511;
}

/** rsvd_bits(s, e) of the half that holds them, for the high bits above MAXPHYADDR (s >= 32) */
function highRsvdHi(maxPhyAddr: number): number {
  // bits [maxPhyAddr, 51] of the gpte: bits [maxPhyAddr - 32, 19] of the high half
  if (maxPhyAddr >= 52) return 0;
  const s = maxPhyAddr - 32;
  return ((1 << 20) - 1) & ~((1 << s) - 1);
}

/**
 * `struct guest_walker`: what the walk found, per level (index level - 1). Fixed-size typed
 * arrays, one walker per vCPU, reused.
 */
export class GuestWalker {
  level = 0;
  maxLevel = 0;
  readonly tableGfn = new Float64Array(5);
  readonly pteGpa = new Float64Array(5);
  readonly ptesLo = new Int32Array(5);
  readonly ptesHi = new Int32Array(5);
  readonly pteWritable = new Uint8Array(5);
  /** pt_access[level - 1]: ACC_* of the levels above (the access the table at this level inherits) */
  readonly ptAccess = new Uint8Array(5);
  /** ACC_* of the whole translation */
  pteAccess = 0;
  gfn = 0;
  /** x86_exception: error_code of the #PF to inject (or the EPT violation to reflect) */
  faultErrorCode = 0;
  faultAddress = 0;
  /** the fault is L1's (a nested EPT violation), not L2's #PF */
  faultNested = false;
  /** the raw EPT RWX bits of the walk when it failed (exit qualification bits 5:3) */
  faultEptRwx = 0;
  private readonly tmp: GpteHalves = { lo: 0, hi: 0 };

  /** the guest's leaf PTE halves */
  get leafLo(): number {
    return this.ptesLo[this.level - 1]!;
  }
  get leafHi(): number {
    return this.ptesHi[this.level - 1]!;
  }

  /**
   * FNAME(walk_addr_generic)(walker, vcpu, mmu, addr, access): 1 when the translation exists
   * and permits `access` (PFERR_* bits), 0 with the fault to inject otherwise. `pgd` is CR3 /
   * the EPTP; `rflags` is for SMAP's EFLAGS.AC.
   */
  walk(role: CpuRole, pgd: number, mem: GuestPteMemory, addr: number, access: number, rflags = 0): number {
    const ept = role.ept;
    const writeFault = (access & PFERR_WRITE_MASK) !== 0;
    const userFault = (access & PFERR_USER_MASK) !== 0;
    const fetchFault = (access & PFERR_FETCH_MASK) !== 0;
    const haveAd = role.haveAd;
    const aMask = ept ? VMX_EPT_ACCESS_BIT : PT_ACCESSED_MASK;
    const dMask = ept ? VMX_EPT_DIRTY_BIT : PT_DIRTY_MASK;
    const highRsvd = highRsvdHi(role.maxPhyAddr);
    // the reserved bits of a 64-bit non-leaf or 4K gpte are all in the high half (address
    // bits above MAXPHYADDR, NX without EFER.NX): one test decides, and only a large page
    // or an EPT gpte needs FNAME(is_rsvd_bits_set)'s full rules
    const rsvdHiFast = highRsvd | (role.efer_nx ? 0 : PT64_NX_HI);
    const pte = this.tmp;
    // the address's two 32-bit halves, split once for every level's index
    const aLo = addr >>> 0;
    // addr / 2^32 is below 2^21, so >>> 0 is its floor
    const aHi = addr > 0xffffffff ? (addr / TWO_32) >>> 0 : 0;
    let retries = 0;
    retry_walk: for (;;) {
      let errcode = 0;
      let level = role.level;
      this.maxLevel = level;
      // pte = mmu->get_guest_pgd(vcpu)
      let pteLo = (pgd >>> 0) & ~0xfff;
      let pteHi = Math.floor(pgd / TWO_32) | 0;
      // pte_access = ~0 (the NX bit inverted, so it ANDs like the others)
      let accLo = -1;
      let accNx = 1;
      let pteAccessEpt = VMX_EPT_RWX_MASK;
      let ok = true;
      for (;; level--) {
        const ptAccLo = accLo;
        const ptAccNx = accNx;
        const ptAccEpt = pteAccessEpt;
        const index = pt64IndexOf(aLo, aHi, level);
        const tableGfn = gpteToGfn(pteLo, pteHi);
        const pteGpa = tableGfn * 4096 + index * 8;
        this.tableGfn[level - 1] = tableGfn;
        this.pteGpa[level - 1] = pteGpa;
        // kvm_vcpu_gfn_to_hva_prot() + __get_user(): no slot or no host page ends the walk
        if (!mem.readGpte(pteGpa, pte)) {
          ok = false;
          break;
        }
        this.pteWritable[level - 1] = mem.gptWritable(tableGfn) ? 1 : 0;
        pteLo = pte.lo | 0;
        pteHi = pte.hi | 0;
        accLo = ptAccLo & pteLo;
        accNx = ptAccNx & (pteHi & PT64_NX_HI ? 0 : 1);
        pteAccessEpt = ptAccEpt & pteLo & VMX_EPT_RWX_MASK;
        // FNAME(is_present_gpte)
        if (ept ? (pteLo & VMX_EPT_RWX_MASK) === 0 : (pteLo & PT_PRESENT_MASK) === 0) {
          ok = false;
          break;
        }
        if (ept || (pteLo & PT_PAGE_SIZE_MASK) !== 0 ? isRsvdBitsSet(role, pteLo, pteHi, level, highRsvd) : (pteHi & rsvdHiFast) !== 0) {
          errcode = PFERR_RSVD_MASK | PFERR_PRESENT_MASK;
          ok = false;
          break;
        }
        this.ptesLo[level - 1] = pteLo;
        this.ptesHi[level - 1] = pteHi;
        this.ptAccess[level - 1] = ept ? eptGpteAccess(ptAccEpt) : gpteAccess64(ptAccLo, ptAccNx);
        if (isLastGpte(level, pteLo)) break;
      }
      // walker->level: the leaf's level, or the level where the walk stopped
      this.level = level;

      if (ok) {
        const accessedDirtyAll = haveAd ? (ept ? accLo & VMX_EPT_ACCESS_BIT : accLo & PT_ACCESSED_MASK) : 0;
        this.pteAccess = ept ? eptGpteAccess(pteAccessEpt) : gpteAccess64(accLo, accNx);
        errcode = permissionFault(role, this.pteAccess, access, rflags);
        if (errcode === 0) {
          const level = this.level;
          let gfn = gpteToGfnLvl(pteLo, pteHi, level);
          gfn += lvlOffsetGfns(addr, level);
          this.gfn = gfn;
          let accessedDirty = accessedDirtyAll;
          if (!writeFault) {
            // FNAME(protect_clean_gpte): a clean gpte maps read-only so the first write sets D
            if (haveAd && !(pteLo & dMask)) this.pteAccess &= ~ACC_WRITE_MASK;
          } else {
            accessedDirty &= pteLo & dMask ? aMask : 0;
          }
          if (!accessedDirty) {
            const ret = this.updateAccessedDirtyBits(mem, role, writeFault);
            if (ret < 0) {
              errcode = 0;
              ok = false;
            } else if (ret > 0) {
              if (++retries > 16) throw new Error('walk_addr: the guest page table keeps changing');
              continue retry_walk;
            }
          }
          if (ok) return 1;
        } else ok = false;
      }
      // error:
      errcode |= (writeFault ? PFERR_WRITE_MASK : 0) | (userFault ? PFERR_USER_MASK : 0);
      if (fetchFault && (role.efer_nx || role.cr4_smep)) errcode |= PFERR_FETCH_MASK;
      this.faultErrorCode = errcode;
      this.faultAddress = addr;
      this.faultNested = ept;
      this.faultEptRwx = ept ? pteAccessEpt : 0;
      return 0;
    }
  }

  /** FNAME(update_accessed_dirty_bits): 0 done, 1 a gpte changed (retry), <0 fault */
  private updateAccessedDirtyBits(mem: GuestPteMemory, role: CpuRole, writeFault: boolean): number {
    if (!role.haveAd) return 0;
    const aMask = role.ept ? VMX_EPT_ACCESS_BIT : PT_ACCESSED_MASK;
    const dMask = role.ept ? VMX_EPT_DIRTY_BIT : PT_DIRTY_MASK;
    for (let level = this.maxLevel; level >= this.level; --level) {
      const origLo = this.ptesLo[level - 1]!;
      const hi = this.ptesHi[level - 1]!;
      let lo = origLo;
      if (!(lo & aMask)) lo |= aMask;
      if (level === this.level && writeFault && !(lo & dMask)) lo |= dMask;
      if (lo === origLo) continue;
      // a read-only slot (ROM): the A/D bits are simply not written
      if (!this.pteWritable[level - 1]) continue;
      const ret = mem.cmpxchgGpte(this.pteGpa[level - 1]!, origLo, hi, lo | 0, hi);
      if (ret) return ret;
      this.ptesLo[level - 1] = lo | 0;
    }
    return 0;
  }
}

/** FNAME(is_last_gpte) for 64-bit and EPT: 4K always terminates, else bit 7 */
export function isLastGpte(level: number, lo: number): boolean {
  return level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0;
}

/** gpte_to_gfn_lvl(): the address bits above the level's offset */
export function gpteToGfnLvl(lo: number, hi: number, level: number): number {
  const gfn = gpteToGfn(lo, hi);
  if (level === 1) return gfn;
  const pages = 2 ** (9 * (level - 1));
  return gfn - (gfn % pages);
}

/** (addr & PT_LVL_OFFSET_MASK(level)) >> PAGE_SHIFT */
export function lvlOffsetGfns(addr: number, level: number): number {
  if (level === 1) return 0;
  const gfn = Math.floor(addr / 4096);
  return gfn % 2 ** (9 * (level - 1));
}

/** FNAME(gpte_access) for 64-bit paging: W, U from the gpte; X = P ^ NX */
export function gpteAccess64(lo: number, notNx: number): number {
  return (lo & (ACC_WRITE_MASK | ACC_USER_MASK)) | ((lo & PT_PRESENT_MASK) & notNx ? ACC_EXEC_MASK : 0);
}

/** FNAME(gpte_access) for EPT: ACC_USER stands for readable */
export function eptGpteAccess(rwx: number): number {
  return (
    (rwx & VMX_EPT_WRITABLE_MASK ? ACC_WRITE_MASK : 0) |
    (rwx & VMX_EPT_EXECUTABLE_MASK ? ACC_EXEC_MASK : 0) |
    (rwx & VMX_EPT_READABLE_MASK ? ACC_USER_MASK : 0)
  );
}

/**
 * FNAME(is_rsvd_bits_set) with the masks __reset_rsvds_bits_mask() /
 * __reset_rsvds_bits_mask_ept() install: address bits above MAXPHYADDR; for 64-bit paging NX
 * without EFER.NX, PS in a PML5E / PML4E, and the low address bits of a 2M / 1G page; for EPT
 * bits 3–7 of a non-leaf entry, the low address bits of a huge page, and the XWR combinations
 * that are misconfigurations (write without read).
 */
export function isRsvdBitsSet(role: CpuRole, lo: number, hi: number, level: number, highRsvd = highRsvdHi(role.maxPhyAddr)): boolean {
  if (hi & highRsvd) return true;
  const large = (lo & PT_PAGE_SIZE_MASK) !== 0;
  if (role.ept) {
    const xwr = lo & VMX_EPT_RWX_MASK;
    // __is_bad_mt_xwr: write-only and write+execute without read
    if (xwr === VMX_EPT_WRITABLE_MASK || xwr === (VMX_EPT_WRITABLE_MASK | VMX_EPT_EXECUTABLE_MASK)) return true;
    if (level >= 4 && (lo & 0xf8) !== 0) return true; // rsvd_bits(3, 7)
    if (level > 1 && !large && (lo & 0x78) !== 0) return true; // rsvd_bits(3, 6)
    if (large && level === 2 && (lo & 0x1ff000) !== 0) return true; // rsvd_bits(12, 20)
    if (large && level === 3 && (lo & 0x3ffff000) !== 0) return true; // rsvd_bits(12, 29)
    return false;
  }
  if (!role.efer_nx && hi & PT64_NX_HI) return true; // exb_bit_rsvd
  if (level >= 4 && large) return true; // rsvd_bits(7, 7) in PML4E / PML5E
  if (large && level === 2 && (lo & 0x1fe000) !== 0) return true; // rsvd_bits(13, 20)
  if (large && level === 3 && (lo & 0x3fffe000) !== 0) return true; // rsvd_bits(13, 29)
  return false;
}

/**
 * permission_fault() with the rules of update_permission_bitmask(): PFERR_PRESENT_MASK when
 * the access is not allowed, 0 when it is. `pteAccess` is ACC_*; `access` is PFERR_*.
 */
export function permissionFault(role: CpuRole, pteAccess: number, access: number, rflags: number): number {
  const w = (pteAccess & ACC_WRITE_MASK) !== 0;
  const u = (pteAccess & ACC_USER_MASK) !== 0;
  const x = (pteAccess & ACC_EXEC_MASK) !== 0;
  const write = (access & PFERR_WRITE_MASK) !== 0;
  const user = (access & PFERR_USER_MASK) !== 0;
  const fetch = (access & PFERR_FETCH_MASK) !== 0;
  // Faults from writes to non-writable pages, user accesses to supervisor pages, fetches of
  // non-executable pages
  let wf = write && !w;
  const uf = user && !u;
  let ff = fetch && !x;
  let smepf = false;
  let smapf = false;
  if (!role.ept) {
    // kernel-mode access to a user page
    const kf = !user && u;
    // !EFER.NX makes the NX bit reserved instead
    if (!role.efer_nx) ff = false;
    // supervisor writes ignore W while CR0.WP is clear
    if (!role.cr0_wp) wf = user ? wf : false;
    if (role.cr4_smep) smepf = fetch && kf;
    if (role.cr4_smap) {
      // the fifth SMAP condition (permission_fault): EFLAGS.AC disables it for explicit accesses
      const implicit = access >= PFERR_IMPLICIT_ACCESS;
      const notSmap = (rflags & (1 << 18)) !== 0 && !implicit;
      smapf = !fetch && !notSmap && kf;
    }
  }
  return wf || uf || ff || smepf || smapf ? PFERR_PRESENT_MASK : 0;
}
