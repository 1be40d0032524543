/**
 * The SNP instructions that change the RMP, and the host kernel's wrappers around them.
 *
 * Instructions (AMD APM vol. 3; return codes are the kernel's defines in asm/sev.h):
 *  - RMPUPDATE (host): write one 4K entry or the 512 entries of a 2M page.
 *  - PSMASH (host): split a 2M entry into 512 4K entries, keeping Validated and the rest.
 *  - PVALIDATE (guest): set or clear Validated.
 *  - RMPADJUST (guest at VMPL0): set a lower VMPL's permissions, or the VMSA bit.
 *
 * Which failure an input gets where the APM text was not checked again (see
 * docs/snp.md "Return codes") is the model's reading of the APM, marked "model:" below.
 *
 * Kernel wrappers (arch/x86/virt/svm/sev.c): rmpupdate() (adjust_direct_map, then retry
 * while RMPUPDATE_FAIL_OVERLAP, any other failure → -EFAULT), rmp_make_private(),
 * rmp_make_shared(), psmash(), snp_leak_pages(). They live on `SnpHost`, which owns the
 * host-wide RMP and direct map.
 */
import { ERRNO, PG_LEVEL_2M, PG_LEVEL_4K } from '@ccmem/core';
import type { HostPhysMem, TraceEvent } from '@ccmem/core';
import { DirectMap, type DirectMapPolicy } from './directmap.js';
import { SevPlatform } from './sev/platform.js';
import {
  Rmp,
  RMP_ENTRIES_PER_2M,
  RMP_MAX_ASID,
  RMP_PG_SIZE_2M,
  RMP_PG_SIZE_4K,
  RMPW_ASSIGNED,
  RMPW_IMMUTABLE,
  RMPW_PAGESIZE,
  RMPW_VALIDATED,
  RMPW_VMPL_SHIFT,
  RMPW_VMSA,
  VMPL_PERMS_MASK,
  packRmpFields,
  wordAsid,
} from './rmp.js';

/* ---- return codes ---- */
export const RMPUPDATE_SUCCESS = 0;
export const RMPUPDATE_FAIL_INPUT = 1;
export const RMPUPDATE_FAIL_PERMISSION = 2;
export const RMPUPDATE_FAIL_INUSE = 3;
export const RMPUPDATE_FAIL_OVERLAP = 4;

export const PSMASH_SUCCESS = 0;
export const PSMASH_FAIL_INPUT = 1;
export const PSMASH_FAIL_PERMISSION = 2;
export const PSMASH_FAIL_INUSE = 3;
export const PSMASH_FAIL_BADADDR = 4;

export const PVALIDATE_SUCCESS = 0;
export const PVALIDATE_FAIL_INPUT = 1;
export const PVALIDATE_FAIL_SIZEMISMATCH = 6;
/** software code: CF=1 with RAX=0, the Validated bit already had the requested value */
export const PVALIDATE_FAIL_NOUPDATE = 255;

export const RMPADJUST_SUCCESS = 0;
export const RMPADJUST_FAIL_INPUT = 1;
export const RMPADJUST_FAIL_PERMISSION = 2;
export const RMPADJUST_FAIL_SIZEMISMATCH = 6;

/* ---- #NPF error-code bits (kvm_host.h); above bit 30, so compose with + or *, never | ---- */
export const PFERR_GUEST_RMP_MASK = 2 ** 31;
export const PFERR_GUEST_FINAL_MASK = 2 ** 32;
export const PFERR_GUEST_PAGE_MASK = 2 ** 33;
export const PFERR_GUEST_ENC_MASK = 2 ** 34;
export const PFERR_GUEST_SIZEM_MASK = 2 ** 35;
export const PFERR_GUEST_VMPL_MASK = 2 ** 36;
/** X86_PF_RMP: bit 31 of a host #PF error code */
export const X86_PF_RMP = 2 ** 31;

/** test one error-code bit (bits above 31 are beyond JS bitwise operators) */
export function pferrHas(errorCode: number, mask: number): boolean {
  return Math.floor(errorCode / mask) % 2 === 1;
}

/** `struct rmp_state`, the RMPUPDATE operand */
export interface RmpState {
  gpa: number;
  assigned: boolean;
  /** RMP_PG_SIZE_4K or RMP_PG_SIZE_2M */
  pagesize: number;
  immutable: boolean;
  asid: number;
}

/** PG_LEVEL_TO_RMP / RMP_TO_PG_LEVEL */
export function pgLevelToRmp(level: number): number {
  return level === PG_LEVEL_2M ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K;
}
export function rmpToPgLevel(pagesize: number): number {
  return pagesize === RMP_PG_SIZE_2M ? PG_LEVEL_2M : PG_LEVEL_4K;
}

/**
 * `x % bytes === 0` for a safe integer `x` and a power of two `bytes` <= 2^31: the low 32
 * bits of x (ToUint32 is x modulo 2^32, negative x included) decide it, without the libm
 * call a float modulo of a gpa above 2^31 costs.
 */
function isAligned(x: number, bytes: number): boolean {
  return ((x >>> 0) & (bytes - 1)) === 0;
}

/** the 2M-aligned head of `pfn` (without a float modulo; a negative pfn's head is negative too, and no entry) */
function headOf(pfn: number): number {
  return Math.floor(pfn / RMP_ENTRIES_PER_2M) * RMP_ENTRIES_PER_2M;
}

/* ------------------------------------------------------------------------------------------ */
/* Instructions                                                                               */
/* ------------------------------------------------------------------------------------------ */

/**
 * RMPUPDATE: write the entry of `pfn` (or the 512 entries of a 2M page) from `state`.
 * A written entry always has Validated, VMSA and the VMPL permissions clear. A
 * hypervisor-owned entry is stored with pagesize 4K (its size has no meaning).
 */
export function rmpupdateInsn(rmp: Rmp, pfn: number, state: RmpState): number {
  const n = state.pagesize === RMP_PG_SIZE_2M ? RMP_ENTRIES_PER_2M : 1;
  if (state.pagesize !== RMP_PG_SIZE_4K && state.pagesize !== RMP_PG_SIZE_2M) return RMPUPDATE_FAIL_INPUT;
  if (!rmp.isValidPfn(pfn) || !rmp.isValidPfn(pfn + n - 1)) return RMPUPDATE_FAIL_INPUT;
  if (n > 1 && pfn % RMP_ENTRIES_PER_2M !== 0) return RMPUPDATE_FAIL_INPUT;
  if (state.assigned) {
    if (!Number.isSafeInteger(state.gpa) || state.gpa < 0 || !isAligned(state.gpa, n * 4096)) return RMPUPDATE_FAIL_INPUT;
    // model: ASID 0 is the hypervisor's; a guest page needs a guest ASID
    if (!Number.isInteger(state.asid) || state.asid < 1 || state.asid > RMP_MAX_ASID) return RMPUPDATE_FAIL_INPUT;
  }
  // an immutable entry can only be changed by the firmware
  for (let i = 0; i < n; i++) if ((rmp.word(pfn + i) & RMPW_IMMUTABLE) !== 0) return RMPUPDATE_FAIL_PERMISSION;
  const headWord = rmp.word(headOf(pfn));
  const headIs2M = (headWord & RMPW_PAGESIZE) !== 0;
  // model: a 4K update inside a 2M page needs PSMASH first (what sev_gmem_invalidate does)
  if (n === 1 && headIs2M) return RMPUPDATE_FAIL_PERMISSION;
  if (n > 1 && state.assigned && !headIs2M && rmp.assignedIn2M(pfn) > 0) {
    // model: a 2M page over a region holding assigned 4K entries
    return RMPUPDATE_FAIL_INUSE;
  }
  const word = state.assigned
    ? packRmpFields(true, state.pagesize, state.immutable, state.asid)
    : state.immutable
      ? packRmpFields(false, RMP_PG_SIZE_4K, true, 0)
      : 0;
  const gfn0 = state.assigned ? state.gpa / 4096 : 0;
  for (let i = 0; i < n; i++) rmp.writeEntry(pfn + i, word, state.assigned ? gfn0 + i : 0);
  return RMPUPDATE_SUCCESS;
}

/** PSMASH: split the 2M entry at `pfn` (2M-aligned) into 512 4K entries, keeping their state. */
export function psmashInsn(rmp: Rmp, pfn: number): number {
  if (!rmp.isValidPfn(pfn) || pfn % RMP_ENTRIES_PER_2M !== 0) return PSMASH_FAIL_INPUT;
  const w = rmp.word(pfn);
  if ((w & RMPW_ASSIGNED) === 0 || (w & RMPW_PAGESIZE) === 0) return PSMASH_FAIL_BADADDR;
  if ((w & RMPW_IMMUTABLE) !== 0) return PSMASH_FAIL_PERMISSION;
  for (let i = 0; i < RMP_ENTRIES_PER_2M; i++) rmp.updateWord(pfn + i, 0, RMPW_PAGESIZE);
  return PSMASH_SUCCESS;
}

/**
 * The firmware side of SNP_LAUNCH_UPDATE for one page that RMPUPDATE put in the Pre-Guest
 * state (assigned + immutable): the firmware measures it and moves it to Guest-Valid
 * (immutable clear, Validated set; VMSA bit for a VMSA page). Pages the kernel turns back to
 * shared after a later failure in the same batch need no reclaim (sev_gmem_post_populate),
 * which is why the model clears immutable here.
 */
export function firmwareLaunchUpdatePage(rmp: Rmp, pfn: number, isVmsa: boolean): void {
  rmp.updateWord(pfn, RMPW_VALIDATED | (isVmsa ? RMPW_VMSA : 0), RMPW_IMMUTABLE);
}

/** What a guest RMP instruction did: a return code in RAX, or an #NPF for KVM to handle. */
export type GuestInsnResult = { readonly ret: number } | { readonly npf: number; readonly reason: string };

/** the return codes (0..255), frozen `{ ret }` each */
const RESULTS: { readonly ret: number }[] = [];
for (let code = 0; code < 256; code++) RESULTS.push(Object.freeze({ ret: code }));
/** a shared, frozen `{ ret }` (the hot path allocates nothing per instruction) */
function insnResult(code: number): { readonly ret: number } {
  return RESULTS[code] ?? Object.freeze({ ret: code });
}

/** The operands of PVALIDATE / RMPADJUST after the guest's page walk and the NPT walk. */
export interface GuestRmpOperand {
  /** host frame the NPT translated the gpa to */
  pfn: number;
  gpa: number;
  /** the guest's ASID */
  asid: number;
  /** PG_LEVEL_4K or PG_LEVEL_2M: the instruction's page-size operand */
  level: number;
}

/**
 * The RMP checks PVALIDATE and RMPADJUST share: the entry must be assigned to this guest at
 * this gpa (else #NPF RMP), a 4K operation on a 2M entry is an #NPF with SIZEM (KVM PSMASHes,
 * sev_handle_rmp_fault case 1), a 2M operation on 4K entries is FAIL_SIZEMISMATCH.
 */
function guestRmpCheck(rmp: Rmp, op: GuestRmpOperand, sizeMismatch: number): GuestInsnResult | null {
  const n = op.level === PG_LEVEL_2M ? RMP_ENTRIES_PER_2M : 1;
  if (op.level !== PG_LEVEL_4K && op.level !== PG_LEVEL_2M) return insnResult(1);
  if (!Number.isSafeInteger(op.gpa) || !isAligned(op.gpa, n * 4096)) return insnResult(1);
  if (!rmp.isValidPfn(op.pfn)) return insnResult(1);
  // A 2M request whose translation lands on a frame that is not 2M-aligned is backed by 4K
  // pages (NPT and RMP): the size does not match. Linux guests rely on this to fall back to
  // 4K (pvalidate_pages(): FAIL_SIZEMISMATCH on a 2M request → validate each 4K page).
  if (n > 1 && op.pfn % RMP_ENTRIES_PER_2M !== 0) return rmp.isAssigned(op.pfn) ? insnResult(sizeMismatch) : { npf: PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK, reason: `pfn 0x${op.pfn.toString(16)} is not assigned in the RMP` };
  const w = rmp.word(op.pfn);
  const enc = PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK;
  if ((w & RMPW_ASSIGNED) === 0) return { npf: enc, reason: `pfn 0x${op.pfn.toString(16)} is not assigned in the RMP` };
  if (wordAsid(w) !== op.asid) return { npf: enc, reason: `RMP asid ${wordAsid(w)} != guest asid ${op.asid}` };
  if (rmp.gfn(op.pfn) * 4096 !== op.gpa) return { npf: enc, reason: `RMP gpa 0x${(rmp.gfn(op.pfn) * 4096).toString(16)} != 0x${op.gpa.toString(16)}` };
  const rmpLevel = rmp.level(op.pfn);
  if (rmpLevel === PG_LEVEL_2M && n === 1) return { npf: enc + PFERR_GUEST_SIZEM_MASK, reason: '4K operation on a 2M RMP entry' };
  if (rmpLevel === PG_LEVEL_4K && n > 1) return insnResult(sizeMismatch);
  return null;
}

/** PVALIDATE: set (`validate`) or clear the Validated bit of a 4K page or a whole 2M page. */
export function pvalidateInsn(rmp: Rmp, op: GuestRmpOperand, validate: boolean): GuestInsnResult {
  const bad = guestRmpCheck(rmp, op, PVALIDATE_FAIL_SIZEMISMATCH);
  if (bad !== null) return bad;
  const n = op.level === PG_LEVEL_2M ? RMP_ENTRIES_PER_2M : 1;
  const cur = (rmp.word(op.pfn) & RMPW_VALIDATED) !== 0;
  if (cur === validate) return insnResult(PVALIDATE_FAIL_NOUPDATE);
  for (let i = 0; i < n; i++) rmp.updateWord(op.pfn + i, validate ? RMPW_VALIDATED : 0, validate ? 0 : RMPW_VALIDATED);
  return insnResult(PVALIDATE_SUCCESS);
}

/**
 * RMPADJUST from VMPL0: give `targetVmpl` (1..3) the permission mask `perms`, and set or
 * clear the VMSA bit. Model: the page must be validated (else FAIL_PERMISSION); a VMSA
 * must be a 4K page (else FAIL_INPUT).
 */
export function rmpadjustInsn(rmp: Rmp, op: GuestRmpOperand, targetVmpl: number, perms: number, vmsa: boolean): GuestInsnResult {
  if (!Number.isInteger(targetVmpl) || targetVmpl < 1 || targetVmpl > 3) return insnResult(RMPADJUST_FAIL_INPUT);
  if (!Number.isInteger(perms) || perms < 0 || perms > VMPL_PERMS_MASK) return insnResult(RMPADJUST_FAIL_INPUT);
  if (vmsa && op.level !== PG_LEVEL_4K) return insnResult(RMPADJUST_FAIL_INPUT);
  const bad = guestRmpCheck(rmp, op, RMPADJUST_FAIL_SIZEMISMATCH);
  if (bad !== null) return bad;
  if ((rmp.word(op.pfn) & RMPW_VALIDATED) === 0) return insnResult(RMPADJUST_FAIL_PERMISSION);
  const n = op.level === PG_LEVEL_2M ? RMP_ENTRIES_PER_2M : 1;
  const shift = RMPW_VMPL_SHIFT + 4 * (targetVmpl - 1);
  const clear = ((VMPL_PERMS_MASK << shift) | (vmsa ? 0 : RMPW_VMSA)) >>> 0;
  const set = ((perms << shift) | (vmsa ? RMPW_VMSA : 0)) >>> 0;
  for (let i = 0; i < n; i++) rmp.updateWord(op.pfn + i, set, clear);
  return insnResult(RMPADJUST_SUCCESS);
}

/* ------------------------------------------------------------------------------------------ */
/* The host: RMP + direct map + the kernel's wrappers                                         */
/* ------------------------------------------------------------------------------------------ */

export interface SnpHostOptions {
  /** host memory size in frames; default 2^28 (1 TiB) */
  maxPfn?: number;
  /** host physical memory, for snp_leak_pages() */
  phys?: HostPhysMem;
  /**
   * SEV-ES and SNP guests share ASIDs [1, maxSnpAsid] (min_sev_asid - 1 on hardware); default 99.
   * `minSnpAsid` is kept for callers that pass it; allocation starts at 1 (sev_asid_new()).
   */
  minSnpAsid?: number;
  maxSnpAsid?: number;
  /** plain SEV guests use [maxSnpAsid + 1, maxSevAsid] (CPUID 0x8000001F ECX); default maxSnpAsid + 410 */
  maxSevAsid?: number;
  /** KVM_X86_SEV_VMSA_FEATURES; default SVM_SEV_FEAT_DEBUG_SWAP */
  supportedVmsaFeatures?: number;
}

export interface SnpHostStats {
  rmpupdates: number;
  /** RMPUPDATE_FAIL_OVERLAP results the rmpupdate() loop retried */
  overlapRetries: number;
  rmpupdateFailures: number;
  psmashes: number;
  leakedPages: number;
}

/** an entry of the injection queue that lets the real instruction run */
const NOT_INJECTED = -1;

type Tracer = { emit(name: string, fields: TraceEvent['fields']): void };

/**
 * The host side of SEV-SNP: the RMP table (one per host), the direct map, the ASID space,
 * and the kernel functions of arch/x86/virt/svm/sev.c. Every SNP VM on a host shares one.
 */
export class SnpHost {
  readonly rmp: Rmp;
  readonly directmap: DirectMap;
  readonly phys: HostPhysMem | null;
  readonly minSnpAsid: number;
  readonly maxSnpAsid: number;
  /** snp_leaked_pages_list */
  readonly leakedPages = new Set<number>();
  readonly stats: SnpHostStats = { rmpupdates: 0, overlapRetries: 0, rmpupdateFailures: 0, psmashes: 0, leakedPages: 0 };
  tracer: Tracer | null = null;
  /** the SEV platform of this host: ASIDs of every SEV, SEV-ES and SNP VM, and the PSP */
  readonly sev: SevPlatform;
  private readonly injected = { rmpupdate: [] as number[], psmash: [] as number[] };

  constructor(opts: SnpHostOptions = {}) {
    const maxPfn = opts.maxPfn ?? 2 ** 28;
    this.rmp = new Rmp({ maxPfn });
    this.directmap = new DirectMap({ maxPfn });
    this.phys = opts.phys ?? null;
    this.minSnpAsid = opts.minSnpAsid ?? 1;
    this.maxSnpAsid = opts.maxSnpAsid ?? 99;
    this.sev = new SevPlatform({
      minSevAsid: this.maxSnpAsid + 1,
      maxSevAsid: opts.maxSevAsid ?? this.maxSnpAsid + 410,
      ...(opts.supportedVmsaFeatures !== undefined && { supportedVmsaFeatures: opts.supportedVmsaFeatures }),
    });
  }

  /**
   * Make the next `times` RMPUPDATE (or PSMASH) instructions return `code` without touching
   * the RMP, as a racing CPU or the firmware would (e.g. RMPUPDATE_FAIL_OVERLAP); with `after`,
   * that many instructions run normally first. Queued behind any injection still pending.
   */
  injectResult(insn: 'rmpupdate' | 'psmash', code: number, times = 1, after = 0): void {
    const q = this.injected[insn];
    for (let i = 0; i < after; i++) q.push(NOT_INJECTED);
    for (let i = 0; i < times; i++) q.push(code);
  }

  /** injected results not yet returned (the normal runs `after` asked for included) */
  pendingInjections(insn: 'rmpupdate' | 'psmash'): number {
    return this.injected[insn].length;
  }

  /** a tracer is attached and listening (the core Tracer's `enabled`) */
  private get tracing(): boolean {
    const t = this.tracer as (Tracer & { enabled?: boolean }) | null;
    return t !== null && t.enabled !== false;
  }

  private emit(name: string, fields: TraceEvent['fields']): void {
    this.tracer?.emit(name, fields);
  }

  /** sev_asid_new() for an SNP VM (the SEV-ES range): the lowest free ASID, or a requested one; -EBUSY when none */
  allocAsid(requested?: number): number {
    return this.sev.asids.asidNew(true, requested);
  }
  /** sev_asid_free(): the ASID is reclaimable (reused after the next flush) */
  freeAsid(asid: number): void {
    this.sev.asids.asidFree(asid);
  }

  /** the RMPUPDATE instruction, or an injected result */
  rmpupdateInsn(pfn: number, state: RmpState): number {
    const injected = this.injected.rmpupdate;
    if (injected.length !== 0) {
      const code = injected.shift()!;
      if (code !== NOT_INJECTED) return code;
    }
    return rmpupdateInsn(this.rmp, pfn, state);
  }

  /**
   * rmpupdate(): fix the direct map for `policy`, then RMPUPDATE, retrying while it returns
   * RMPUPDATE_FAIL_OVERLAP. 0, or -EFAULT (direct-map failure or any other return code).
   */
  rmpupdate(pfn: number, state: RmpState, policy: DirectMapPolicy = 'split'): number {
    const level = rmpToPgLevel(state.pagesize);
    const npages = level === PG_LEVEL_2M ? RMP_ENTRIES_PER_2M : 1;
    let unmapped = 0;
    if (policy === 'split') {
      if (this.directmap.adjustDirectMap(pfn, level) !== 0) return -ERRNO.EFAULT;
    } else if (state.assigned) {
      if (!this.directmap.pfnValid(pfn)) return -ERRNO.EFAULT;
      // seed design: take the page out of the direct map before shared→private
      unmapped = this.directmap.unmap(pfn, npages);
    }
    let rc: number;
    for (;;) {
      rc = this.rmpupdateInsn(pfn, state);
      if (rc !== RMPUPDATE_FAIL_OVERLAP) break;
      this.stats.overlapRetries++;
    }
    if (rc !== RMPUPDATE_SUCCESS) {
      this.stats.rmpupdateFailures++;
      if (unmapped > 0) this.directmap.restore(pfn, npages);
      this.emit('rmpupdate_failed', { pfn, level, ret: rc });
      return -ERRNO.EFAULT;
    }
    this.stats.rmpupdates++;
    // seed design: put the page back after private→shared
    if (policy === 'unmap' && !state.assigned) this.directmap.restore(pfn, npages);
    if (this.tracing) this.emit('rmpupdate', { pfn, gpa: state.gpa, assigned: state.assigned, level, asid: state.asid, immutable: state.immutable });
    return 0;
  }

  /**
   * The `struct rmp_state` operand of rmp_make_private() / rmp_make_shared(), refilled per call
   * (the kernel's is on the stack): rmpupdate() reads it before it returns and keeps nothing.
   */
  private readonly stateOperand: RmpState = { gpa: 0, assigned: false, pagesize: RMP_PG_SIZE_4K, immutable: false, asid: 0 };

  private operand(gpa: number, assigned: boolean, level: number, immutable: boolean, asid: number): RmpState {
    const s = this.stateOperand;
    s.gpa = gpa;
    s.assigned = assigned;
    s.pagesize = pgLevelToRmp(level);
    s.immutable = immutable;
    s.asid = asid;
    return s;
  }

  /** rmp_make_private(pfn, gpa, level, asid, immutable) */
  rmpMakePrivate(pfn: number, gpa: number, level: number, asid: number, immutable: boolean, policy: DirectMapPolicy = 'split'): number {
    return this.rmpupdate(pfn, this.operand(gpa, true, level, immutable, asid), policy);
  }

  /** rmp_make_shared(pfn, level): everything zero but the page size */
  rmpMakeShared(pfn: number, level: number, policy: DirectMapPolicy = 'split'): number {
    return this.rmpupdate(pfn, this.operand(0, false, level, false, 0), policy);
  }

  /** psmash(pfn): the PSMASH return code, or -EINVAL for an invalid pfn */
  psmash(pfn: number): number {
    if (!this.rmp.isValidPfn(pfn)) return -ERRNO.EINVAL;
    const inj = this.injected.psmash.shift();
    const ret = inj !== undefined && inj !== NOT_INJECTED ? inj : psmashInsn(this.rmp, pfn);
    if (ret === PSMASH_SUCCESS) this.stats.psmashes++;
    if (this.tracing) this.emit('psmash', { pfn, ret });
    return ret;
  }

  /** snp_rmptable_psmash() (KVM): PSMASH the 2M-aligned pfn, retrying while FAIL_INUSE */
  snpRmptablePsmash(pfn: number): number {
    const head = headOf(pfn);
    let ret: number;
    do ret = this.psmash(head);
    while (ret === PSMASH_FAIL_INUSE);
    return ret;
  }

  /** snp_leak_pages(): the frames are never used or freed again */
  snpLeakPages(pfn: number, npages: number): void {
    for (let p = pfn; p < pfn + npages; p++) {
      if (this.leakedPages.has(p)) continue;
      this.leakedPages.add(p);
      this.stats.leakedPages++;
      if (this.phys?.isAllocated(p)) this.phys.leakPage(p);
      this.emit('snp_leak_pages', { pfn: p });
    }
  }
}
