/**
 * The SEV-SNP vendor backend: arch/x86/kvm/svm/sev.c as the model's `kvm_x86_ops`, on top of
 * the host-wide RMP and direct map (`SnpHost`).
 *
 * Per VM, two choices:
 *  - `directmap`: `split` (upstream adjust_direct_map) or `unmap` (the earlier host series:
 *    remove private pages from the direct map, through the pre/post attribute hooks and the
 *    rmpupdate() wrapper);
 *  - `rmpTiming`: `prepare` (upstream: sev_gmem_prepare assigns a page at its first private
 *    fault, sev_gmem_invalidate returns it when guest_memfd frees it) or `set-attributes`
 *    (seed thread 002, `update_mem_attr`: RMPUPDATE from the post-attribute hook, after
 *    kvm_mmu_invalidate_end(), outside mmu_lock). Under `set-attributes` a private fault
 *    between the attribute store and that RMPUPDATE maps a page the RMP does not give to the
 *    guest yet: the guest's access takes an RMP #NPF, sev_handle_rmp_fault() sees an
 *    unassigned page and does nothing, and the guest loops until the RMPUPDATE lands.
 */
import {
  ERRNO,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MAP_GPA_RANGE_ENCRYPTED,
  KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
  KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_X86_SNP_VM,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  checkVmOptions,
  errnoName,
  fail,
  gpaToGfn,
} from '@ccmem/core';
import type {
  AttributeChange,
  BackendEnv,
  BackendFactory,
  ErrnoName,
  GmemPfn,
  GuestAccessCheck,
  GuestAccessVerdict,
  GuestOpResult,
  HostPhysMem,
  KvmRunExit,
  VendorBackend,
  VendorIoctlResult,
  VmForBackend,
} from '@ccmem/core';
import { type DirectMapPolicy, rmpCheckHostWrite } from './directmap.js';
import { SNP_VM_OPTIONS, type RmpTiming, type SnpEdge, type SnpGuestRequest, type SnpInspect, type SnpIoctlOut, type SnpPageLevel, type SnpPscEntry, type SnpVmIoctl, type SnpVmOptions } from './edge.js';
import {
  PFERR_GUEST_ENC_MASK,
  PFERR_GUEST_RMP_MASK,
  PFERR_GUEST_SIZEM_MASK,
  SnpHost,
  firmwareLaunchUpdatePage,
  pferrHas,
  pvalidateInsn,
  type GuestRmpOperand,
  rmpadjustInsn,
  type GuestInsnResult,
} from './instructions.js';
import {
  INITIAL_VMSA_GPA,
  LaunchDigest,
  SNP_PAGE_TYPE_CPUID,
  SNP_PAGE_TYPE_NORMAL,
  SNP_PAGE_TYPE_SECRETS,
  SNP_PAGE_TYPE_UNMEASURED,
  SNP_PAGE_TYPE_VMSA,
  SNP_PAGE_TYPE_ZERO,
} from './launch-digest.js';
import { exactU64, ghcbMappable, msrBits, sevGuestInit2, sevHandleVmgexit, type SevInfo } from './sev/sev-backend.js';
import { GHCB_MSR_INFO_MASK, GHCB_MSR_REG_GPA_REQ, GHCB_MSR_REG_GPA_RESP } from './sev/uapi.js';
import { RMP_ENTRIES_PER_2M, RMPW_ASSIGNED, RMPW_VALIDATED, wordAsid, type RmpEntryView } from './rmp.js';

export interface SnpBackendOptions extends SnpVmOptions {
  directmap: DirectMapPolicy;
  rmpTiming: RmpTiming;
  phys: HostPhysMem;
  /** the host's RMP and direct map; default: one per `phys`, shared by every SNP VM on it */
  host?: SnpHost;
}

/** The SNP backend: a VendorBackend plus SNP-specific host checks. */
export interface SnpBackend extends VendorBackend<SnpEdge> {
  readonly host: SnpHost;
  /** the guest's ASID: 0 until KVM_SEV_INIT2 takes one (sev_asid_new()) */
  readonly asid: number;
  readonly directmapPolicy: DirectMapPolicy;
  readonly rmpTiming: RmpTiming;
  /** a host write through a user mapping of `level` (VMM mmap, hugetlb): null or why it faults */
  checkUserWrite(pfn: number, level: number): string | null;
  /** a host kernel read or write of `pfn` through the direct map: null or why it faults */
  checkHostAccess(pfn: number, write: boolean): string | null;
}

/* ---- KVM_SEV_SNP_* uAPI ---- */
export const KVM_SEV_SNP_PAGE_TYPE_NORMAL = SNP_PAGE_TYPE_NORMAL;
export const KVM_SEV_SNP_PAGE_TYPE_ZERO = SNP_PAGE_TYPE_ZERO;
export const KVM_SEV_SNP_PAGE_TYPE_UNMEASURED = SNP_PAGE_TYPE_UNMEASURED;
export const KVM_SEV_SNP_PAGE_TYPE_SECRETS = SNP_PAGE_TYPE_SECRETS;
export const KVM_SEV_SNP_PAGE_TYPE_CPUID = SNP_PAGE_TYPE_CPUID;
/** SNP guest policy bits KVM accepts (sev.c SNP_POLICY_MASK_*) */
export const SNP_POLICY_MASK_SMT = 1 << 16;
export const SNP_POLICY_MASK_RSVD_MBO = 1 << 17;
export const SNP_POLICY_MASK_DEBUG = 1 << 19;
export const SNP_POLICY_MASK_SINGLE_SOCKET = 1 << 20;
export const SNP_POLICY_MASK_VALID = 0xffff | SNP_POLICY_MASK_SMT | SNP_POLICY_MASK_RSVD_MBO | SNP_POLICY_MASK_DEBUG | SNP_POLICY_MASK_SINGLE_SOCKET;

/* ---- GHCB page-state change ---- */
/** at most 253 entries per GHCB PSC request (VMGEXIT_PSC_MAX_ENTRY) */
export const VMGEXIT_PSC_MAX_ENTRY = 253;
export const VMGEXIT_PSC_MAX_COUNT = VMGEXIT_PSC_MAX_ENTRY;
export const SNP_PAGE_STATE_PRIVATE = 1;
export const SNP_PAGE_STATE_SHARED = 2;
export const SNP_PAGE_STATE_PSMASH = 3;
export const SNP_PAGE_STATE_UNSMASH = 4;
/** PSC return codes in SW_EXITINFO2 (u64; bits above 31, so numbers not bit operations) */
export const VMGEXIT_PSC_ERROR_GENERIC = 0x100 * 2 ** 32;
export const VMGEXIT_PSC_ERROR_INVALID_HDR = 1 * 2 ** 32 + 1;
export const VMGEXIT_PSC_ERROR_INVALID_ENTRY = 1 * 2 ** 32 + 2;

interface PscEntry {
  gfn: number;
  operation: number;
  pagesize: number;
  curPage: number;
}

interface PendingPsc {
  kind: 'msr' | 'ghcb';
  entries: PscEntry[];
  curEntry: number;
  endEntry: number;
  /** snp_begin_psc bookkeeping: first in-flight entry and how many */
  idx: number;
  inflight: number;
}

export interface SnpBackendStats {
  /** #NPFs with PFERR_GUEST_RMP handled by sev_handle_rmp_fault */
  rmpFaults: number;
  /** of which: the gfn was shared (guest retries) */
  rmpFaultShared: number;
  /** of which: the page is not assigned yet, e.g. the set-attributes race; nothing done */
  rmpFaultUnassigned: number;
  /** of which: RMP already 4K (spurious) */
  rmpFaultSpurious: number;
  /** of which: PSMASH + zap */
  rmpFaultPsmash: number;
  /** RMPUPDATEs from the post-attribute hook (set-attributes timing) */
  attrRmpUpdates: number;
  attrRmpFailures: number;
  /** #VC for an access to an unvalidated private page */
  vcNotValidated: number;
  pscExits: number;
}

const hostByPhys = new WeakMap<HostPhysMem, SnpHost>();

/** the SnpHost of a HostPhysMem (one per host), created on first use */
export function snpHostFor(phys: HostPhysMem, opts: { maxPfn?: number; maxSnpAsid?: number; maxSevAsid?: number } = {}): SnpHost {
  let h = hostByPhys.get(phys);
  if (!h) {
    h = new SnpHost({ phys, ...opts });
    hostByPhys.set(phys, h);
  }
  return h;
}

/** Create the SEV-SNP backend for one VM. It has no ASID until KVM_SEV_INIT2. */
export function createSnpBackend(opts: SnpBackendOptions): SnpBackend {
  return new SnpBackendImpl(opts);
}

/** kvm_is_valid_map_gpa_range_ret() (arch/x86/kvm/x86.h): 0, EINVAL or EAGAIN (positive) */
function isValidMapGpaRangeRet(ret: number): boolean {
  return ret === 0 || ret === ERRNO.EINVAL || ret === ERRNO.EAGAIN;
}

/** the verdicts of every successful or unvalidated access, shared: the hot path allocates nothing */
const ACCESS_OK: GuestAccessVerdict = Object.freeze({ kind: 'ok' });
/** the result PVALIDATE / RMPADJUST start from before their first try */
const INSN_RET_1: GuestInsnResult = Object.freeze({ ret: 1 });

/**
 * KVM_RUN after kvm_mmu_prepare_memory_fault_exit() for a private access: KVM_EXIT_MEMORY_FAULT
 * with KVM_MEMORY_EXIT_FLAG_PRIVATE and the faulting page (gfn << PAGE_SHIFT, PAGE_SIZE), and
 * the fault path's errno.
 */
function privateMemoryFault(gfn: number, errno: ErrnoName, reason: string): GuestOpResult {
  const exit: KvmRunExit = { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: gfn * 4096, size: 4096 } };
  return { errno, exit, detail: { reason } };
}

const VC_NOT_VALIDATED: GuestAccessVerdict = Object.freeze({
  kind: 'guest-exception',
  vector: '#VC',
  reason: 'PAGE_NOT_VALIDATED: the page is private and assigned to this guest, but the guest has not PVALIDATEd it',
});

class SnpBackendImpl implements SnpBackend {
  readonly name = 'snp';
  readonly vmType = KVM_X86_SNP_VM;
  readonly hasPrivateMem = true;
  readonly hasReadonlyMem = false;
  readonly nrMemslotAsIds = 1;
  readonly hasMirroredTdp = false;
  readonly gfnDirectBits = 0;
  readonly supportsGmemInitShared = false;
  /** sev_gmem_prepare() assigns private pages in the RMP: without it the guest cannot use them */
  readonly gmemPrepareRequired = true;

  readonly host: SnpHost;
  readonly directmapPolicy: DirectMapPolicy;
  readonly rmpTiming: RmpTiming;
  readonly stats: SnpBackendStats = {
    rmpFaults: 0,
    rmpFaultShared: 0,
    rmpFaultUnassigned: 0,
    rmpFaultSpurious: 0,
    rmpFaultPsmash: 0,
    attrRmpUpdates: 0,
    attrRmpFailures: 0,
    vcNotValidated: 0,
    pscExits: 0,
  };

  private vm: VmForBackend | null = null;
  private readonly phys: HostPhysMem;
  /** sev->snp_context exists (after KVM_SEV_SNP_LAUNCH_START) */
  private snpContext = false;
  private launchFinished = false;
  private policy = 0;
  private digest = new LaunchDigest();
  private readonly vmsaPfns: number[] = [];
  private readonly psc = new Map<number, PendingPsc>();
  /** pfns collected by the pre-attribute hook for the post hook (private→shared) */
  private pendingShared: number[] = [];
  private readonly violations: string[] = [];
  private readonly rmpOperand: GuestRmpOperand = { pfn: 0, gpa: 0, asid: 0, level: 0 };
  private readonly gmemOut: GmemPfn = { pfn: 0, maxOrder: 0 };
  private destroyed = false;
  /**
   * kvm_sev_info: need_init from KVM_CREATE_VM until KVM_SEV_INIT2 (shared with SEV and SEV-ES:
   * sevGuestInit2()) makes the VM an SNP guest (sev_snp_guest()) with its ASID.
   */
  readonly sevInfo: SevInfo = { active: false, esActive: false, needInit: true, vmsaFeatures: 0, ghcbVersion: 0, asid: 0 };
  /** the `asid` VM option: the ASID KVM_SEV_INIT2 takes (model choice; default the lowest free) */
  private readonly requestedAsid: number | undefined;
  /** svm->sev_es.ghcb_registered_gpa per vCPU (GHCB_MSR_REG_GPA_REQ) */
  private readonly ghcbRegistered = new Map<number, number>();

  constructor(opts: SnpBackendOptions) {
    this.host = opts.host ?? snpHostFor(opts.phys);
    this.phys = opts.phys;
    this.directmapPolicy = opts.directmap;
    this.rmpTiming = opts.rmpTiming;
    this.requestedAsid = opts.asid;
  }

  get asid(): number {
    return this.sevInfo.asid;
  }

  /** sev_snp_guest(): KVM_SEV_INIT2 set SVM_SEV_FEAT_SNP_ACTIVE */
  private get snpGuest(): boolean {
    return this.sevInfo.active;
  }

  attach(vm: VmForBackend): void {
    this.vm = vm;
  }

  private get kvm(): VmForBackend {
    if (!this.vm) throw new Error('snp backend used before attach()');
    return this.vm;
  }

  /** the host with this VM's tracer attached */
  private get h(): SnpHost {
    this.host.tracer = this.vm?.tracer ?? null;
    return this.host;
  }

  preFaultAllowed(): boolean {
    return this.launchFinished;
  }

  /** svm_vcpu_pre_run(): KVM_RUN before KVM_SEV_INIT2 is EINVAL (need_init) */
  vcpuPreRun(): number {
    return this.sevInfo.needInit ? -ERRNO.EINVAL : 1;
  }

  /** the C-bit: the access is private when the guest asked for an encrypted access */
  faultIsPrivate(_gpa: number, requested: boolean): boolean {
    return requested;
  }

  /* ------------------------------------------------------------------ guest_memfd hooks */

  /** sev_gmem_prepare() */
  gmemPrepare(pfn: number, gfn: number, maxOrder: number): number {
    const leaked = this.host.leakedPages;
    if (leaked.size !== 0 && leaked.has(pfn)) this.violations.push(`leaked pfn 0x${pfn.toString(16)} was handed out again (gfn 0x${gfn.toString(16)})`);
    // sev_gmem_prepare(): nothing to do before KVM_SEV_INIT2 made the VM an SNP guest
    if (!this.snpGuest) return 0;
    // the seed design had no prepare hook: the RMP changes from the attribute hook
    if (this.rmpTiming === 'set-attributes') return 0;
    const rmp = this.host.rmp;
    // snp_lookup_rmpentry(): no entry for the pfn → -ENOENT; already assigned → done
    // (prepare runs on every kvm_gmem_get_pfn(), so this must stay cheap: raw reads, no object)
    if (!rmp.isValidPfn(pfn)) return -ERRNO.ENOENT;
    if (rmp.isAssigned(pfn)) return 0;
    let level = PG_LEVEL_4K;
    let pfnAligned = pfn;
    let gfnAligned = gfn;
    // is_large_rmp_possible(): a 2M folio whose whole 2M pfn range is shared
    if (maxOrder >= 9) {
      const head = pfn - (pfn % RMP_ENTRIES_PER_2M);
      if (rmp.isValidPfn(head + RMP_ENTRIES_PER_2M - 1) && rmp.assignedIn2M(head) === 0) {
        level = PG_LEVEL_2M;
        pfnAligned = head;
        gfnAligned = gfn - (gfn % RMP_ENTRIES_PER_2M);
      }
    }
    const rc = this.h.rmpMakePrivate(pfnAligned, gfnAligned * 4096, level, this.asid, false, this.directmapPolicy);
    return rc ? -ERRNO.EINVAL : 0;
  }

  /** sev_gmem_invalidate(): guest_memfd frees [start, end) */
  gmemInvalidate(start: number, end: number): void {
    const host = this.h;
    const rmp = host.rmp;
    for (let pfn = start; pfn < end; ) {
      let use2M = false;
      const e = rmp.lookup(pfn);
      if (e !== null && e.assigned) {
        use2M = pfn % RMP_ENTRIES_PER_2M === 0 && end >= pfn + RMP_ENTRIES_PER_2M && e.level > PG_LEVEL_4K;
        if (!use2M && e.level > PG_LEVEL_4K) {
          // a 4K piece of a 2M RMP page: PSMASH first (WARN on failure, try anyway)
          const rc = host.snpRmptablePsmash(pfn);
          if (rc) this.kvm.tracer.emit('sev_warn', { what: 'PSMASH failed in sev_gmem_invalidate', pfn, rc });
        }
        const rc = host.rmpMakeShared(pfn, use2M ? PG_LEVEL_2M : PG_LEVEL_4K, this.directmapPolicy);
        // upstream WARNs and moves on (the frame goes back to the allocator still assigned)
        if (rc) this.kvm.tracer.emit('sev_warn', { what: 'rmp_make_shared failed in sev_gmem_invalidate', pfn, rc });
      }
      pfn += use2M ? RMP_ENTRIES_PER_2M : 1;
    }
  }

  /** sev_gmem_max_mapping_level(): NPT never maps a private page bigger than its RMP entry */
  gmemMaxMappingLevel(pfn: number, isPrivate: boolean): number {
    if (!isPrivate) return 0;
    const e = this.host.rmp.lookup(pfn);
    if (e === null || !e.assigned) return PG_LEVEL_4K;
    return e.level;
  }

  /* ------------------------------------------------------------------ attribute hooks */

  /** before the attribute store, outside mmu_lock (seed: kvm_pre_mem_attrs_changed) */
  preSetMemoryAttributes(change: AttributeChange): number {
    const toPrivate = (change.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
    this.pendingShared = [];
    if (toPrivate) {
      // seed: take the pages out of the direct map before they can become private
      if (this.directmapPolicy === 'unmap') {
        for (let gfn = change.start; gfn < change.end; gfn++) {
          const pfn = this.kvm.gmemPeekPfn(gfn);
          if (pfn >= 0) this.host.directmap.unmap(pfn, 1);
        }
      }
      return 0;
    }
    // private→shared: remember the pages while the gfns are still private
    if (this.rmpTiming === 'set-attributes' || this.directmapPolicy === 'unmap') {
      for (let gfn = change.start; gfn < change.end; gfn++) {
        if (!this.kvm.memIsPrivate(gfn)) continue;
        const pfn = this.kvm.gmemPeekPfn(gfn);
        if (pfn >= 0) this.pendingShared.push(pfn);
      }
    }
    return 0;
  }

  /** after kvm_mmu_invalidate_end(), outside mmu_lock (seed: update_mem_attr) */
  postSetMemoryAttributes(change: AttributeChange): number {
    const toPrivate = (change.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
    const host = this.h;
    // like sev_gmem_prepare(), the seed's update_mem_attr changes the RMP of SNP guests only
    if (this.rmpTiming === 'set-attributes' && this.snpGuest) {
      if (toPrivate) {
        for (let gfn = change.start; gfn < change.end; gfn++) {
          const slot = this.kvm.gfnToMemslot(gfn);
          if (!slot || !slot.gmemFile) continue;
          const r = this.kvm.gmemGetPfn(gfn);
          if (!('pfn' in r)) continue;
          if (host.rmp.isAssigned(r.pfn)) continue;
          if (host.rmpMakePrivate(r.pfn, gfn * 4096, PG_LEVEL_4K, this.asid, false, this.directmapPolicy)) {
            this.stats.attrRmpFailures++;
            this.kvm.tracer.emit('sev_warn', { what: 'update_mem_attr: RMPUPDATE failed', gfn });
          } else this.stats.attrRmpUpdates++;
        }
      } else {
        for (const pfn of this.pendingShared) {
          if (!host.rmp.isAssigned(pfn)) continue;
          if (host.rmp.level(pfn) > PG_LEVEL_4K) host.snpRmptablePsmash(pfn);
          if (host.rmpMakeShared(pfn, PG_LEVEL_4K, this.directmapPolicy)) {
            this.stats.attrRmpFailures++;
            host.snpLeakPages(pfn, 1); // kvm_rmp_make_shared(): the page is unusable
          } else this.stats.attrRmpUpdates++;
        }
      }
    }
    if (!toPrivate && this.directmapPolicy === 'unmap') {
      // seed: kvm_map_directmap() after private→shared, for pages the RMP gave back
      for (const pfn of this.pendingShared) if (!host.rmp.isAssigned(pfn)) host.directmap.restore(pfn, 1);
    }
    this.pendingShared = [];
    return 0;
  }

  /* ------------------------------------------------------------------ hardware checks */

  /** the RMP check of a guest access that the NPT translated to `pfn` through a `level` leaf */
  checkGuestAccess(a: GuestAccessCheck): GuestAccessVerdict {
    const rmp = this.host.rmp;
    const w = rmp.word(a.pfn);
    if (!a.isPrivate) {
      if ((w & RMPW_ASSIGNED) !== 0) {
        return { kind: 'npf', errorCode: PFERR_GUEST_RMP_MASK, reason: `shared access to gpa 0x${a.gpa.toString(16)} hits assigned pfn 0x${a.pfn.toString(16)}` };
      }
      return ACCESS_OK;
    }
    const enc = PFERR_GUEST_RMP_MASK + PFERR_GUEST_ENC_MASK;
    if ((w & RMPW_ASSIGNED) === 0) {
      return { kind: 'npf', errorCode: enc, reason: `private access to gpa 0x${a.gpa.toString(16)}: pfn 0x${a.pfn.toString(16)} is not assigned in the RMP` };
    }
    if (wordAsid(w) !== this.asid) return { kind: 'npf', errorCode: enc, reason: `RMP asid ${wordAsid(w)} is not this guest's (${this.asid})` };
    if (rmp.gfn(a.pfn) !== a.gfn) {
      return { kind: 'npf', errorCode: enc, reason: `RMP gpa 0x${(rmp.gfn(a.pfn) * 4096).toString(16)} != accessed gpa page 0x${(a.gfn * 4096).toString(16)}` };
    }
    const rmpLevel = rmp.level(a.pfn);
    if (rmpLevel !== a.level) {
      return { kind: 'npf', errorCode: enc + PFERR_GUEST_SIZEM_MASK, reason: `NPT leaf level ${a.level} != RMP level ${rmpLevel}` };
    }
    if ((w & RMPW_VALIDATED) === 0) {
      this.stats.vcNotValidated++;
      return VC_NOT_VALIDATED;
    }
    return ACCESS_OK;
  }

  /** sev_handle_rmp_fault() */
  handleNpfExtra(_vcpuId: number, gpa: number, errorCode: number): void {
    if (!pferrHas(errorCode, PFERR_GUEST_RMP_MASK)) return;
    const vm = this.kvm;
    const host = this.h;
    const gfn = Math.floor(gpa / 4096);
    this.stats.rmpFaults++;
    if (!vm.memIsPrivate(gfn)) {
      this.stats.rmpFaultShared++;
      vm.tracer.emit('kvm_rmp_fault', { gpa, error_code: errorCode, result: 'shared gfn: guest retries' });
      return;
    }
    const slot = vm.gfnToMemslot(gfn);
    if (!slot || !slot.gmemFile) return;
    const r = vm.gmemGetPfn(gfn);
    if (!('pfn' in r)) return;
    const pfn = r.pfn;
    const e = host.rmp.lookup(pfn);
    if (e === null || !e.assigned) {
      this.stats.rmpFaultUnassigned++;
      vm.tracer.emit('kvm_rmp_fault', { gpa, pfn, error_code: errorCode, result: 'no assigned RMP entry: nothing done, guest retries' });
      return;
    }
    if (e.level === PG_LEVEL_4K) {
      this.stats.rmpFaultSpurious++;
      vm.tracer.emit('kvm_rmp_fault', { gpa, pfn, error_code: errorCode, rmp_level: e.level, result: 'spurious' });
      return;
    }
    const ret = host.snpRmptablePsmash(pfn);
    if (ret) {
      // Look it up again: if it is 4K now, the PSMASH raced with another one and the issue
      // resolved itself — upstream skips the zap (goto out). Otherwise warn and zap anyway.
      const again = host.rmp.lookup(pfn);
      if (again !== null && again.assigned && again.level === PG_LEVEL_4K) {
        vm.tracer.emit('kvm_rmp_fault', { gpa, pfn, error_code: errorCode, rmp_level: PG_LEVEL_4K, result: 'PSMASH raced: already 4K, nothing to zap', ret });
        return;
      }
      vm.tracer.emit('sev_warn', { what: 'Unable to split RMP entry', gpa, pfn, ret });
    }
    this.stats.rmpFaultPsmash++;
    // upstream zaps [gfn, gfn + PTRS_PER_PMD) starting at the faulting gfn
    vm.zapGfnRange(gfn, gfn + RMP_ENTRIES_PER_2M);
    vm.tracer.emit('kvm_rmp_fault', { gpa, pfn, error_code: errorCode, rmp_level: e.level, result: 'psmash + zap', ret });
  }

  /** a host kernel access through the direct map */
  checkHostAccess(pfn: number, write: boolean): string | null {
    const dm = this.host.directmap;
    return write ? dm.checkHostWrite(pfn, this.host.rmp) : dm.checkHostRead(pfn);
  }

  checkUserWrite(pfn: number, level: number): string | null {
    return rmpCheckHostWrite(this.host.rmp, pfn, level, 'user');
  }

  /* ------------------------------------------------------------------ guest operations */

  guestOp(vcpuId: number, req: SnpGuestRequest): GuestOpResult {
    switch (req.op) {
      case 'pvalidate':
      case 'rmpadjust':
        return this.guestRmpInsn(vcpuId, req);
      case 'psc_msr':
        return this.pscMsr(vcpuId, req.gpa, req.operation);
      case 'psc':
        return this.pscGhcb(vcpuId, req);
      case 'ghcb_msr':
      case 'ghcb_term_request':
        return sevHandleVmgexit(
          this.sevInfo,
          req,
          (value) => this.snpGhcbMsr(vcpuId, value),
          (gpa) => this.ghcbRegistered.get(vcpuId) === gpa,
          (gpa) => ghcbMappable(this.kvm, gpa),
        );
      default:
        return { errno: 'EINVAL', detail: { reason: `unknown SNP guest operation ${(req as { op: string }).op}` } };
    }
  }

  /**
   * PVALIDATE / RMPADJUST as the guest runs them. The instruction's access is translated by
   * the NPT first, so it takes the #NPF of a private access (npf_interception():
   * PFERR_GUEST_ENC → PFERR_PRIVATE_ACCESS) and the RMP is checked only once that succeeded.
   * kvm_mmu_faultin_pfn() (arch/x86/kvm/mmu/mmu.c) ends KVM_RUN with KVM_EXIT_MEMORY_FAULT
   * (flags PRIVATE, the faulting page) when the gfn is shared (an implicit conversion), when
   * no memslot holds it (kvm_handle_noslot_fault(): private memory is never emulated) or
   * its memslot has no guest_memfd (kvm_mmu_faultin_pfn_gmem()): -EFAULT; and when
   * kvm_gmem_get_pfn() fails, with its errno. An RMP #NPF goes to sev_handle_rmp_fault()
   * and the instruction is retried, a few times.
   */
  private guestRmpInsn(vcpuId: number, a: Extract<SnpGuestRequest, { op: 'pvalidate' | 'rmpadjust' }>): GuestOpResult {
    const vm = this.kvm;
    const gpa = a.gpa;
    const level: SnpPageLevel = a.level === PG_LEVEL_2M ? PG_LEVEL_2M : PG_LEVEL_4K;
    const gfn = gpaToGfn(gpa);
    if (!vm.memIsPrivate(gfn)) return privateMemoryFault(gfn, 'EFAULT', 'private access to a shared gfn');
    const slot = vm.gfnToMemslot(gfn);
    if (slot === null) return privateMemoryFault(gfn, 'EFAULT', 'private access with no memslot');
    if (slot.gmemFile === null) return privateMemoryFault(gfn, 'EFAULT', 'private access to a memslot without guest_memfd');
    let last: GuestInsnResult = INSN_RET_1;
    const got = this.gmemOut;
    for (let tries = 0; tries < 4; tries++) {
      // the NPT fault-in of the private page (kvm_gmem_get_pfn, prepare), into one object per
      // backend (read at once, kept by nobody)
      const err = vm.gmemGetPfnInto(gfn, got);
      if (err < 0) return privateMemoryFault(gfn, errnoName(-err) ?? 'EFAULT', `kvm_gmem_get_pfn failed (${err})`);
      const pfn = got.pfn;
      // the instruction's operands (one object per backend, refilled: the instruction reads it)
      const op = this.rmpOperand;
      op.pfn = pfn;
      op.gpa = gpa;
      op.asid = this.asid;
      op.level = level;
      last = a.op === 'pvalidate' ? pvalidateInsn(this.host.rmp, op, a.validate) : rmpadjustInsn(this.host.rmp, op, a.vmpl, a.perms, a.vmsa === true);
      if ('ret' in last) return { ret: last.ret, detail: { pfn, retries: tries } };
      vm.tracer.emit('kvm_page_fault', { vcpu_id: vcpuId, gpa, error_code: last.npf, reason: last.reason });
      this.handleNpfExtra(vcpuId, gpa, last.npf);
    }
    const npf = last as { npf: number; reason: string };
    // liveness: with RMP updates at prepare, the lookup above ran sev_gmem_prepare; a page still
    // unassigned after it can never become assigned, so the guest would retry forever (a
    // provider that skips gmem_prepare). Reported by checkInvariants().
    const e = this.rmpTiming === 'prepare' ? this.host.rmp.lookup(this.rmpOperand.pfn) : null;
    if (e !== null && !e.assigned) {
      this.violations.push(
        `livelock: ${a.op === 'pvalidate' ? 'PVALIDATE' : 'RMPADJUST'} at gpa 0x${gpa.toString(16)} keeps taking RMP #NPFs: pfn 0x${this.rmpOperand.pfn.toString(16)} was looked up (gmem_prepare) but is still not assigned`,
      );
    }
    return { ret: 'npf', detail: { errorCode: npf.npf, reason: npf.reason, retries: 4 } };
  }

  private hypercallEnabled(): boolean {
    return this.kvm.userExitOnHypercall(KVM_HC_MAP_GPA_RANGE);
  }

  private hypercallExit(gpa: number, npages: number, attrs: number): KvmRunExit {
    this.stats.pscExits++;
    return {
      reason: 'KVM_EXIT_HYPERCALL',
      // snp_begin_psc{,_msr}() set nr, args and ret = 0; they leave flags alone (0 here)
      hypercall: { nr: KVM_HC_MAP_GPA_RANGE, args: [gpa, npages, attrs], ret: 0, flags: 0 },
    };
  }

  /** snp_begin_psc_msr(): one 4K page, one exit */
  private pscMsr(vcpuId: number, gpa: number, op: number): GuestOpResult {
    if (op !== SNP_PAGE_STATE_PRIVATE && op !== SNP_PAGE_STATE_SHARED) return { ret: 'GHCB_MSR_PSC_RESP_ERROR', detail: { reason: 'bad operation' } };
    if (!this.hypercallEnabled()) return { ret: 'GHCB_MSR_PSC_RESP_ERROR', detail: { reason: 'KVM_CAP_EXIT_HYPERCALL lacks KVM_HC_MAP_GPA_RANGE' } };
    const gfn = Math.floor(gpa / 4096);
    this.psc.set(vcpuId, { kind: 'msr', entries: [], curEntry: 0, endEntry: 0, idx: 0, inflight: 1 });
    const attrs = (op === SNP_PAGE_STATE_PRIVATE ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED) | KVM_MAP_GPA_RANGE_PAGE_SZ_4K;
    return { exit: this.hypercallExit(gfn * 4096, 1, attrs) };
  }

  /**
   * the SNP-only GHCB MSR requests: GHCB_MSR_REG_GPA_REQ and GHCB_MSR_PSC_REQ. `value` is the
   * whole u64 (a bigint above 2^53), so a gfn in the high bits is kept exactly.
   */
  private snpGhcbMsr(vcpuId: number, value: number | bigint): GuestOpResult {
    const v = BigInt(value);
    if (msrBits(value, 0, GHCB_MSR_INFO_MASK) === GHCB_MSR_REG_GPA_REQ) {
      // GHCB_MSR_GPA_VALUE_MASK: the gfn is bits 63:12, and the response keeps it
      const gpa = v & ~BigInt(GHCB_MSR_INFO_MASK);
      this.ghcbRegistered.set(vcpuId, Number(gpa));
      return { ret: exactU64(gpa | BigInt(GHCB_MSR_REG_GPA_RESP)) };
    }
    // GHCB_MSR_PSC_REQ (sevHandleVmgexit() hands over only these two):
    // GHCB_MSR_PSC_REQ_TO_GFN() is bits 51:12, GHCB_MSR_PSC_REQ_TO_OP() bits 55:52
    const gfn = Number((v >> 12n) & ((1n << 40n) - 1n));
    const op = Number((v >> 52n) & 0xfn);
    return this.pscMsr(vcpuId, gfn * 4096, op);
  }

  /** VMGEXIT PSC with a GHCB buffer of up to 253 entries */
  private pscGhcb(vcpuId: number, a: Extract<SnpGuestRequest, { op: 'psc' }>): GuestOpResult {
    const entries: PscEntry[] = a.entries.map((e: SnpPscEntry) => ({
      gfn: e.gfn,
      operation: e.operation,
      pagesize: e.pagesize === 1 ? 1 : 0,
      curPage: e.cur_page ?? 0,
    }));
    const p: PendingPsc = {
      kind: 'ghcb',
      entries,
      curEntry: a.cur_entry ?? 0,
      endEntry: a.end_entry ?? entries.length - 1,
      idx: 0,
      inflight: 0,
    };
    if (!this.hypercallEnabled()) return this.completePsc(vcpuId, p, VMGEXIT_PSC_ERROR_GENERIC);
    this.psc.set(vcpuId, p);
    return this.beginPsc(vcpuId, p);
  }

  private completePsc(vcpuId: number, p: PendingPsc, ret: number): GuestOpResult {
    this.psc.delete(vcpuId);
    return {
      ret,
      detail: { cur_entry: p.curEntry, cur_page: p.entries.map((e) => e.curPage) },
    };
  }

  /** snp_begin_psc(): find the next run of adjacent entries with the same op and size */
  private beginPsc(vcpuId: number, p: PendingPsc): GuestOpResult {
    for (;;) {
      if (p.endEntry >= VMGEXIT_PSC_MAX_COUNT || p.endEntry >= p.entries.length) return this.completePsc(vcpuId, p, VMGEXIT_PSC_ERROR_INVALID_HDR);
      let idx = p.curEntry;
      let gfn = 0;
      let npages = 0;
      let huge = false;
      let start: PscEntry | null = null;
      for (; idx <= p.endEntry; idx++, p.curEntry++) {
        const e = p.entries[idx]!;
        gfn = e.gfn;
        huge = e.pagesize === 1;
        npages = huge ? 512 : 1;
        if (e.curPage > npages || gfn % npages !== 0) return this.completePsc(vcpuId, p, VMGEXIT_PSC_ERROR_INVALID_ENTRY);
        if (e.curPage) {
          // a partly done 2M entry is finished at 4K
          npages -= e.curPage;
          gfn += e.curPage;
          huge = false;
        }
        if (npages) {
          start = e;
          break;
        }
      }
      if (start === null) return this.completePsc(vcpuId, p, 0);
      p.idx = idx;
      p.inflight = 1;
      while (++idx <= p.endEntry) {
        const e = p.entries[idx]!;
        if (e.operation !== start.operation || e.gfn !== start.gfn + npages || e.curPage || (e.pagesize === 1) !== huge) break;
        p.inflight++;
        npages += huge ? 512 : 1;
      }
      if (start.operation === SNP_PAGE_STATE_PRIVATE || start.operation === SNP_PAGE_STATE_SHARED) {
        const attrs =
          (start.operation === SNP_PAGE_STATE_PRIVATE ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED) |
          (start.pagesize ? KVM_MAP_GPA_RANGE_PAGE_SZ_2M : KVM_MAP_GPA_RANGE_PAGE_SZ_4K);
        return { exit: this.hypercallExit(gfn * 4096, npages, attrs), detail: { cur_entry: p.curEntry } };
      }
      // PSMASH / UNSMASH requests: KVM does those itself; count the range as done
      this.completeOnePsc(p);
    }
  }

  /** __snp_complete_one_psc() */
  private completeOnePsc(p: PendingPsc): void {
    let idx = p.idx;
    for (; p.inflight > 0; p.inflight--, idx++) {
      const e = p.entries[idx]!;
      e.curPage = e.pagesize ? 512 : 1;
    }
    p.curEntry = idx;
  }

  /** userspace finished the KVM_HC_MAP_GPA_RANGE exit (kvm_run.hypercall.ret = `ret`) */
  completeHypercall(vcpuId: number, ret: number): GuestOpResult | null {
    const p = this.psc.get(vcpuId);
    if (!p) return null;
    // snp_complete_psc_msr() / snp_complete_one_psc(): upstream accepts only 0, EINVAL and
    // EAGAIN (kvm_is_valid_map_gpa_range_ret()); another value fails KVM_RUN with EINVAL. The
    // complete_userspace_io callback is consumed either way. SNP has no retry code: EAGAIN and
    // EINVAL are both an error for the guest.
    if (this.kvm.profile.mapGpaRangeUserErrors !== false && !isValidMapGpaRangeRet(ret)) {
      this.psc.delete(vcpuId);
      return { errno: 'EINVAL', detail: { reason: `hypercall.ret ${ret} is not 0, EINVAL or EAGAIN (kvm_is_valid_map_gpa_range_ret)` } };
    }
    if (p.kind === 'msr') {
      this.psc.delete(vcpuId);
      return { ret: ret ? 'GHCB_MSR_PSC_RESP_ERROR' : 0 };
    }
    if (ret) return this.completePsc(vcpuId, p, VMGEXIT_PSC_ERROR_GENERIC);
    this.completeOnePsc(p);
    return this.beginPsc(vcpuId, p);
  }

  /* ------------------------------------------------------------------ launch */

  /** sev_mem_enc_ioctl() of an SNP VM, in the kernel's order */
  vmIoctl(req: SnpVmIoctl): VendorIoctlResult<SnpIoctlOut> {
    const cmd = (req as { cmd: string }).cmd;
    // once KVM_SEV_INIT2 made this an SNP guest, only SNP commands (KVM_SEV_INIT2 itself included)
    if (this.snpGuest && cmd.startsWith('sev_')) fail('EPERM', `sev_mem_enc_ioctl: ${cmd} on an SNP guest (only KVM_SEV_SNP_* commands)`);
    // sev_guest_init(): the deprecated commands initialize a KVM_X86_DEFAULT_VM only
    if (cmd === 'sev_init' || cmd === 'sev_es_init') fail('EINVAL', 'sev_guest_init: the deprecated init is for KVM_X86_DEFAULT_VM only');
    // sev_launch_start() etc.: !sev_guest() → ENOTTY
    if (cmd.startsWith('sev_launch_') || cmd === 'sev_guest_status') fail('ENOTTY', `${cmd}: not an SEV guest`);
    switch (req.cmd) {
      case 'sev_init2': {
        const asid = sevGuestInit2(this.sevInfo, KVM_X86_SNP_VM, this.kvm.nrVcpus, req, this.host.sev, this.requestedAsid);
        this.kvm.tracer.emit('sev_guest_init', { vm_type: KVM_X86_SNP_VM, asid, vmsa_features: this.sevInfo.vmsaFeatures, ghcb_version: this.sevInfo.ghcbVersion });
        return { ret: 0 };
      }
      case 'snp_launch_start':
        if (!this.snpGuest) fail('ENOTTY', 'snp_launch_start: not an SNP guest (KVM_SEV_INIT2 first)');
        return this.launchStart(req);
      case 'snp_launch_update':
        if (!this.snpGuest) fail('EINVAL', 'snp_launch_update: not an SNP guest (KVM_SEV_INIT2 first)');
        return this.launchUpdate(req);
      case 'snp_launch_finish':
        if (!this.snpGuest) fail('ENOTTY', 'snp_launch_finish: not an SNP guest (KVM_SEV_INIT2 first)');
        return this.launchFinish(req);
      default:
        fail('EINVAL', `sev_mem_enc_ioctl: unknown command ${(req as { cmd: string }).cmd}`);
    }
  }

  /** snp_launch_start() */
  private launchStart(args: Extract<SnpVmIoctl, { cmd: 'snp_launch_start' }>): VendorIoctlResult<SnpIoctlOut> {
    const policy = args.policy ?? SNP_POLICY_MASK_RSVD_MBO | SNP_POLICY_MASK_SMT;
    if (this.snpContext) fail('EINVAL', 'snp_launch_start: SNP context already exists');
    if (args.flags) fail('EINVAL', 'snp_launch_start: flags must be 0');
    if (policy < 0 || policy - (policy % 2 ** 21) !== 0 || (policy & ~SNP_POLICY_MASK_VALID) !== 0) fail('EINVAL', 'snp_launch_start: policy has bits KVM does not support');
    if ((policy & SNP_POLICY_MASK_RSVD_MBO) === 0) fail('EINVAL', 'snp_launch_start: policy bit 17 (must be one) is clear');
    this.policy = policy;
    this.snpContext = true;
    this.digest = new LaunchDigest();
    this.kvm.tracer.emit('snp_launch_start', { policy, asid: this.asid });
    return { ret: 0 };
  }

  /** snp_launch_update() → kvm_gmem_populate() → sev_gmem_post_populate(), one page at a time */
  private launchUpdate(args: Extract<SnpVmIoctl, { cmd: 'snp_launch_update' }>): VendorIoctlResult<SnpIoctlOut> {
    const vm = this.kvm;
    if (!this.snpContext) fail('EINVAL', 'snp_launch_update: no SNP context (KVM_SEV_SNP_LAUNCH_START first)');
    const { gfn_start: gfnStart, uaddr, len, type } = args;
    const flags = args.flags ?? 0;
    const validType =
      type === KVM_SEV_SNP_PAGE_TYPE_NORMAL ||
      type === KVM_SEV_SNP_PAGE_TYPE_ZERO ||
      type === KVM_SEV_SNP_PAGE_TYPE_UNMEASURED ||
      type === KVM_SEV_SNP_PAGE_TYPE_SECRETS ||
      type === KVM_SEV_SNP_PAGE_TYPE_CPUID;
    if (len % 4096 !== 0 || flags !== 0 || !validType) fail('EINVAL', 'snp_launch_update: len not page aligned, flags set, or bad page type');
    // "KVM: SEV: Reject non-positive effective lengths during LAUNCH_UPDATE" (v6.18)
    if (len <= 0) fail('EINVAL', 'snp_launch_update: len is 0 (npages <= 0)');
    // upstream (2026): the source must be a non-NULL page-aligned address unless the type is ZERO;
    // v6.18 copies from uaddr as given (copy_from_user in sev_gmem_post_populate)
    const uaddrChecks = vm.profile.snpLaunchUpdateUaddrChecks !== false;
    if (uaddrChecks && type !== KVM_SEV_SNP_PAGE_TYPE_ZERO && (uaddr === 0 || uaddr % 4096 !== 0)) {
      fail('EINVAL', 'snp_launch_update: uaddr is 0 or not page aligned');
    }
    // model: the firmware refuses SNP_LAUNCH_UPDATE once the launch is finished (-EIO)
    if (this.launchFinished) fail('EIO', 'snp_launch_update: SNP_LAUNCH_UPDATE after SNP_LAUNCH_FINISH');
    const slot = vm.gfnToMemslot(gfnStart);
    if (!slot || !slot.gmemFile) fail('EINVAL', 'snp_launch_update: gfn_start is not in a private memslot');
    this.populateWhy = '';
    const npages = len / 4096;
    const src = type === KVM_SEV_SNP_PAGE_TYPE_ZERO ? null : uaddr;
    const r = vm.gmemPopulate({
      startGfn: gfnStart,
      npages,
      src,
      postPopulate: (gfn, pfn, page) => this.postPopulate(gfn, pfn, page, type),
      alignedSrc: uaddrChecks,
    });
    const count = Math.max(r, 0);
    const err = Math.min(r, 0);
    const why = this.populateWhy;
    // kvm_gmem_populate() returns the pages done, or the error if none was
    if (count === 0 && err < 0) fail('EIO', `snp_launch_update: kvm_gmem_populate failed (${errnoName(-err) ?? err})${why ? `: ${why}` : ''}`);
    const out = {
      gfn_start: gfnStart + count,
      uaddr: type !== KVM_SEV_SNP_PAGE_TYPE_ZERO ? uaddr + count * 4096 : uaddr,
      len: len - count * 4096,
      type,
      flags,
    };
    return { ret: 0, out };
  }

  private populateWhy = '';

  /** sev_gmem_post_populate() for one 4K page: 0 or a negative errno */
  private postPopulate(gfn: number, pfn: number, page: Uint8Array | null, type: number): number {
    const vm = this.kvm;
    const host = this.h;
    if (host.leakedPages.has(pfn)) this.violations.push(`leaked pfn 0x${pfn.toString(16)} was handed out again by LAUNCH_UPDATE`);
    const e = host.rmp.lookup(pfn);
    if (e === null || e.assigned) {
      this.populateWhy = `gfn 0x${gfn.toString(16)}: RMP entry is not in the initial shared state`;
      return e === null ? -ERRNO.EINVAL : -ERRNO.EEXIST;
    }
    // model: the firmware zeroes a ZERO page; other types carry the source page
    vm.writePfn(pfn, 0, page ?? new Uint8Array(4096));
    if (host.rmpMakePrivate(pfn, gfn * 4096, PG_LEVEL_4K, this.asid, true, this.directmapPolicy)) {
      this.populateWhy = 'rmp_make_private failed';
      return -ERRNO.EFAULT;
    }
    // SNP_LAUNCH_UPDATE (firmware): measure, then Pre-Guest → Guest-Valid
    this.digest.update(type, gfn * 4096, type === KVM_SEV_SNP_PAGE_TYPE_NORMAL ? vm.readPfn(pfn, 0, 4096) : undefined);
    firmwareLaunchUpdatePage(host.rmp, pfn, false);
    vm.tracer.emit('snp_launch_update', { gfn, pfn, type });
    return 0;
  }

  /** snp_launch_finish(): measure one VMSA per vCPU, then SNP_LAUNCH_FINISH */
  private launchFinish(args: Extract<SnpVmIoctl, { cmd: 'snp_launch_finish' }>): VendorIoctlResult<SnpIoctlOut> {
    if (!this.snpContext) fail('EINVAL', 'snp_launch_finish: no SNP context');
    if (args.flags) fail('EINVAL', 'snp_launch_finish: flags must be 0');
    if (this.launchFinished) fail('EIO', 'snp_launch_finish: the launch is already finished');
    const vm = this.kvm;
    const host = this.h;
    // snp_launch_update_vmsa(): one vCPU at a time, its VMSA page (allocated by KVM, not
    // guest_memfd) made private (immutable) and then measured by SNP_LAUNCH_UPDATE. A failure
    // returns at once: the vCPUs done before stay protected (guest_state_protected) with their
    // VMSA assigned and measured, nothing is undone; a retry then stops at the boot vCPU, whose
    // sev_es_sync_vmsa() refuses a protected state with -EINVAL.
    if (this.vmsaPfns.length !== 0) fail('EINVAL', 'sev_es_sync_vmsa: the vCPU state is already protected (an earlier LAUNCH_FINISH did part of snp_launch_update_vmsa)');
    const newPfns: number[] = [];
    for (let i = 0; i < vm.nrVcpus; i++) {
      const pfn = this.phys.allocPage();
      if (host.rmpMakePrivate(pfn, INITIAL_VMSA_GPA, PG_LEVEL_4K, this.asid, true, this.directmapPolicy)) {
        // the VMSA stays the vCPU's page, shared: the model frees it here (sev_free_vcpu() later)
        this.phys.freePage(pfn);
        // snp_launch_update_vmsa() returns rmp_make_private()'s error: rmpupdate()'s -EFAULT
        fail('EFAULT', 'snp_launch_update_vmsa: rmp_make_private failed');
      }
      this.digest.update(SNP_PAGE_TYPE_VMSA, INITIAL_VMSA_GPA, this.phys.readBytes(pfn, 0, 4096));
      firmwareLaunchUpdatePage(host.rmp, pfn, true);
      this.vmsaPfns.push(pfn);
      newPfns.push(pfn);
    }
    this.launchFinished = true;
    vm.tracer.emit('snp_launch_finish', { vcpus: newPfns.length, digest: this.digest.hex() });
    return { ret: 0, out: { launch_digest: this.digest.hex(), vmsa_pfns: newPfns.slice() } };
  }

  /** sev_vm_destroy / sev_free_vcpu: VMSA pages back to the host, ASID freed */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const host = this.h;
    for (const pfn of this.vmsaPfns) {
      if (host.rmpMakeShared(pfn, PG_LEVEL_4K, this.directmapPolicy)) host.snpLeakPages(pfn, 1);
      else this.phys.freePage(pfn);
    }
    this.vmsaPfns.length = 0;
    // sev_vm_destroy(): nothing to free before KVM_SEV_INIT2
    if (this.snpGuest) host.freeAsid(this.asid);
  }

  /**
   * What sev_vm_destroy() and the guest_memfd release (sev_gmem_invalidate()) should have given
   * back: every RMP entry of the ASID made shared, each frame back in the direct map, the VMSA
   * pages, the ASID. Frames snp_leak_pages() kept are the exception.
   */
  checkAfterDestroy(): string[] {
    const out: string[] = [];
    const host = this.host;
    const leaked = host.leakedPages;
    if (this.snpGuest) {
      host.rmp.forEachAssigned((pfn, w) => {
        if (wordAsid(w) === this.asid && !leaked.has(pfn)) out.push(`pfn 0x${pfn.toString(16)} still assigned to ASID ${this.asid} in the RMP (never made shared)`);
      });
      if (host.sev.asids.isBound(this.asid)) out.push(`ASID ${this.asid} still bound (sev_asid_free() did not run)`);
    }
    if (this.vmsaPfns.length !== 0) out.push(`${this.vmsaPfns.length} VMSA pages not given back`);
    host.directmap.forEachUnmapped((pfn) => {
      if (!leaked.has(pfn) && (host.rmp.word(pfn) & RMPW_ASSIGNED) === 0) out.push(`shared pfn 0x${pfn.toString(16)} is missing from the direct map (set_direct_map_default_noflush() did not run)`);
    });
    return out;
  }

  /* ------------------------------------------------------------------ invariants / inspect */

  checkInvariants(): string[] {
    const out = [...this.violations];
    const host = this.host;
    const rmp = host.rmp;
    const dm = host.directmap;
    rmp.forEachNonDefault((pfn, w) => {
      if ((w & RMPW_VALIDATED) !== 0 && (w & RMPW_ASSIGNED) === 0) out.push(`pfn 0x${pfn.toString(16)} is validated but not assigned`);
    });
    rmp.forEachAssigned((pfn, w) => {
      if (wordAsid(w) !== this.asid) return;
      if (this.directmapPolicy === 'unmap') {
        if (dm.isPresent(pfn)) out.push(`assigned pfn 0x${pfn.toString(16)} is still in the direct map (unmap policy)`);
      } else if (rmp.level(pfn) === PG_LEVEL_4K && rmp.assignedIn2M(pfn) < RMP_ENTRIES_PER_2M && dm.mappingLevel(pfn) > PG_LEVEL_4K) {
        out.push(`assigned 4K pfn 0x${pfn.toString(16)} sits under a ${dm.mappingLevel(pfn) === 3 ? '1G' : '2M'} direct-map page: a host write to a shared neighbour takes an RMP #PF`);
      }
    });
    const vm = this.vm;
    if (vm) {
      vm.forEachPrivateMapping((gfn, pfn, level) => {
        const w = rmp.word(pfn);
        const where = `private NPT mapping gfn 0x${gfn.toString(16)} → pfn 0x${pfn.toString(16)} (level ${level})`;
        if ((w & RMPW_ASSIGNED) === 0) out.push(`${where} has no assigned RMP entry`);
        else if (wordAsid(w) !== this.asid) out.push(`${where}: RMP asid ${wordAsid(w)} is not ${this.asid}`);
        else if (rmp.gfn(pfn) !== gfn) out.push(`${where}: RMP gpa 0x${(rmp.gfn(pfn) * 4096).toString(16)} does not match`);
        else if (rmp.level(pfn) < level) out.push(`${where}: RMP page size (level ${rmp.level(pfn)}) is smaller than the mapping`);
      });
    }
    // a leaked frame is held for good: the allocator must never hand it out again
    for (const pfn of host.leakedPages) {
      if (this.phys.isAllocated(pfn)) out.push(`leaked pfn 0x${pfn.toString(16)} is allocated again`);
    }
    return out;
  }

  inspect(query: SnpInspect): unknown {
    const host = this.host;
    switch (query.what) {
      case 'rmp':
        return 'pfn' in query ? host.rmp.inspect(query.pfn) : this.rmpEntryForGpa(query.gpa);
      case 'directmap':
        return host.directmap.inspect(query.pfn);
      case 'stats':
        return {
          asid: this.asid,
          directmap: this.directmapPolicy,
          rmpTiming: this.rmpTiming,
          rmp: { assignedPages: host.rmp.assignedPages, bytes: host.rmp.bytes, bytesPerAssignedPage: host.rmp.bytesPerAssignedPage, chunks: host.rmp.chunkCount },
          directmapStats: { ...host.directmap.stats, unmappedPages: host.directmap.unmappedPages, split2MRegions: host.directmap.split2MCount },
          // the host's counters (every SNP VM of the host adds to them) and this VM's
          host: { ...host.stats },
          backend: { ...this.stats },
        };
      case 'sev':
        return {
          active: this.sevInfo.active,
          es_active: this.sevInfo.esActive,
          need_init: this.sevInfo.needInit,
          asid: this.sevInfo.asid,
          vmsa_features: this.sevInfo.vmsaFeatures,
          ghcb_version: this.sevInfo.ghcbVersion,
        };
      case 'launch':
        return {
          started: this.snpContext,
          finished: this.launchFinished,
          policy: this.policy,
          digest: this.digest.hex(),
          measuredPages: this.digest.pages,
          vmsaPfns: this.vmsaPfns.slice(),
        };
      default:
        return undefined;
    }
  }

  /** the RMP entry bound to this guest's `gpa`, or null */
  private rmpEntryForGpa(gpa: number): RmpEntryView | null {
    const pfn = this.kvm.gmemPeekPfn(gpaToGfn(gpa));
    return pfn >= 0 ? this.host.rmp.inspect(pfn) : null;
  }
}

/**
 * `BackendFactory` for `new Kvm({ backends: { [KVM_X86_SNP_VM]: snpBackendFactory } })`.
 * VM options: `directmap` ('split' default | 'unmap'), `rmpTiming` ('prepare' default |
 * 'set-attributes'), `asid`.
 */
export const snpBackendFactory: BackendFactory<SnpEdge> = (options: Readonly<SnpVmOptions>, env: BackendEnv): SnpBackend => {
  checkVmOptions(options, SNP_VM_OPTIONS, 'snp');
  const { directmap = 'split', rmpTiming = 'prepare', asid } = options;
  if (directmap !== 'split' && directmap !== 'unmap') fail('EINVAL', `snp: directmap must be 'split' or 'unmap'`);
  if (rmpTiming !== 'prepare' && rmpTiming !== 'set-attributes') fail('EINVAL', `snp: rmpTiming must be 'prepare' or 'set-attributes'`);
  if (asid !== undefined && !Number.isInteger(asid)) fail('EINVAL', 'snp: asid must be an integer');
  // sev_hardware_setup(): with min_sev_asid 1 "the system has not been allocated ASIDs for
  // SEV-ES", so SEV-ES and SEV-SNP stay off and KVM_X86_SNP_VM is not a supported VM type
  // (kvm_arch_init_vm(): EINVAL)
  if (snpHostFor(env.phys).maxSnpAsid === 0) fail('EINVAL', 'KVM_CREATE_VM: the host has no SEV-ES ASIDs (min_sev_asid is 1), so no SNP VMs');
  return createSnpBackend({ directmap, rmpTiming, phys: env.phys, ...(asid !== undefined ? { asid } : {}) });
};
