/**
 * KVM's TDX side (arch/x86/kvm/vmx/tdx.c, v6.19 cycle) as a `VendorBackend`: the mirror-root hooks
 * that turn TDP MMU changes into SEAMCALLs, KVM's busy handling, the shared bit, the TDX
 * KVM_MEMORY_ENCRYPT_OP sub-commands, MapGPA / ACCEPT on the guest side, and teardown.
 */
import {
  ERRNO,
  errnoName,
  KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MAP_GPA_RANGE_DECRYPTED,
  KVM_MAP_GPA_RANGE_ENCRYPTED,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_X86_TDX_VM,
  KvmError,
  PG_LEVEL_2M,
  PG_LEVEL_4K,
  checkVmOptions,
  fail,
  gpaToGfn,
  kvmGpaToGfn,
  type BackendEnv,
  type BackendFactory,
  type GuestAccessCheck,
  type GuestAccessVerdict,
  type GuestOpResult,
  type HostPhysMem,
  type VendorBackend,
  type VendorIoctlResult,
  type VmForBackend,
} from '@ccmem/core';
import { TDX_VM_OPTIONS, type TdxEdge, type TdxGpaw, type TdxGuestRequest, type TdxInspect, type TdxIoctlOut, type TdxVcpuIoctl, type TdxVmIoctl, type TdxVmOptions } from './edge.js';
import {
  TDX_FLUSHVP_NOT_DONE,
  TDX_OPERAND_BUSY,
  TDX_SUCCESS,
  TDX_VCPU_NOT_ASSOCIATED,
  tdxStatusName,
  type TdvmcallStatusName,
} from './status.js';
import { SEPT_BLOCKED, SEPT_PENDING, SEPT_PENDING_BLOCKED, SEPT_PRESENT, SEPT_SPAN, septStateName } from './sept.js';
import {
  TDG_EXIT_EPT_VIOLATION,
  TDX_EXTENDMR_CHUNKSIZE,
  TDX_TD_ATTR_SEPT_VE_DISABLE,
  TdxModule,
  type TdxTd,
} from './tdx-module.js';

/** the verdict of an access the TD's translation allows (shared, frozen: no allocation per access) */
const ACCESS_OK: GuestAccessVerdict = Object.freeze({ kind: 'ok' });

/** KVM_TDX_MEASURE_MEMORY_REGION (kvm_tdx_cmd.flags of KVM_TDX_INIT_MEM_REGION) */
export const KVM_TDX_MEASURE_MEMORY_REGION = 1 << 0;
/** KVM_SUPPORTED_TD_ATTRS: the only TD attribute KVM lets userspace set that matters here */
export const KVM_SUPPORTED_TD_ATTRS = TDX_TD_ATTR_SEPT_VE_DISABLE;
/** TDX_MAP_GPA_MAX_LEN: MapGPA is forwarded to userspace in steps of at most 2 MiB */
export const TDX_MAP_GPA_MAX_LEN = 2 * 1024 * 1024;
/** PFERR_PRIVATE_ACCESS (bit 49 of the fault error code) */
export const PFERR_PRIVATE_ACCESS = 2 ** 49;

const PAGE = 4096;

export interface TdxBackendOptions extends TdxVmOptions {
  phys: HostPhysMem;
  /** the platform's TDX module (HKID pool); one is made for this VM when absent */
  module?: TdxModule;
}

interface TdxVcpuState {
  mapGpaNext: number;
  mapGpaEnd: number;
  mapGpaActive: boolean;
  /** model-only: an interrupt is pending, MapGPA stops with RETRY between steps */
  pendingInterrupt: boolean;
}

export interface TdxBackendStats {
  kicks: number;
  busyRetries: number;
  bugs: number;
  septTablesLinked: number;
  septTablesReclaimed: number;
  pagesAdded: number;
  pagesAugmented: number;
  pagesRemoved: number;
  pagesAccepted: number;
  splits: number;
}

const OK_ACCEPT: GuestOpResult = Object.freeze({ ret: 'TDX_SUCCESS' });

/* operations run through tdh_do_no_vcpus */
const OP_BLOCK = 0;
const OP_TRACK = 1;
const OP_REMOVE = 2;
const OP_DEMOTE = 3;
const OP_NAMES = ['TDH.MEM.RANGE.BLOCK', 'TDH.MEM.TRACK', 'TDH.MEM.PAGE.REMOVE', 'TDH.MEM.PAGE.DEMOTE'];

export class TdxBackend implements VendorBackend<TdxEdge> {
  readonly name = 'tdx';
  readonly vmType = KVM_X86_TDX_VM;
  readonly hasPrivateMem = true;
  readonly hasReadonlyMem = false;
  readonly nrMemslotAsIds = 1;
  readonly hasMirroredTdp = true;
  readonly supportsGmemInitShared = false;

  readonly module: TdxModule;
  readonly td: TdxTd;
  readonly hugePages: boolean;
  private gpawValue: TdxGpaw = 48;
  /* kvm_gfn_direct_bits() and the shared gpa bit for the current GPAW (read on every fault) */
  private directBits = 2 ** (48 - 1 - 12);
  private sharedBit = 2 ** (48 - 1);

  private get gpaw(): TdxGpaw {
    return this.gpawValue;
  }

  private set gpaw(v: TdxGpaw) {
    this.gpawValue = v;
    this.directBits = 2 ** (v - 1 - 12);
    this.sharedBit = 2 ** (v - 1);
  }
  private vm: VmForBackend | null = null;
  private readonly phys: HostPhysMem;

  /** kvm_tdx->page_add_src: the source page staged by KVM_TDX_INIT_MEM_REGION */
  private pageAddSrc: Uint8Array | null = null;
  /** kvm_tdx->wait_for_sept_zap: vCPUs may not enter while set */
  waitForSeptZap = false;
  private preFault = false;
  private hkidReleased = false;
  /** tdx_mmu_release_hkid() failed: the kernel leaks the HKID on purpose (and with it the TD pages) */
  private hkidLeaked = false;
  /** kvm_destroy_vm() has started: the VM's roots are going away, nothing to walk any more */
  private vmDestroyed = false;
  private readonly vcpuState: TdxVcpuState[] = [];
  /** why the VM was bugged, in order */
  readonly bugReasons: string[] = [];
  readonly stats: TdxBackendStats = {
    kicks: 0,
    busyRetries: 0,
    bugs: 0,
    septTablesLinked: 0,
    septTablesReclaimed: 0,
    pagesAdded: 0,
    pagesAugmented: 0,
    pagesRemoved: 0,
    pagesAccepted: 0,
    splits: 0,
  };

  constructor(opts: TdxBackendOptions) {
    this.phys = opts.phys;
    this.hugePages = opts.hugePages === true;
    this.gpaw = opts.gpaw ?? 48;
    if (this.gpaw !== 48 && this.gpaw !== 52) throw new RangeError('gpaw must be 48 or 52');
    this.module = opts.module ?? new TdxModule({ phys: opts.phys });
    this.td = this.module.createTd();
  }

  attach(vm: VmForBackend): void {
    this.vm = vm;
    if (!this.module.tracer) this.module.tracer = vm.tracer;
  }

  private get kvm(): VmForBackend {
    if (!this.vm) throw new Error('TDX backend used before attach()');
    return this.vm;
  }

  /** kvm_gfn_direct_bits(): the shared bit as a gfn bit (gpa bit 47 → gfn bit 35, 51 → 39) */
  get gfnDirectBits(): number {
    return this.directBits;
  }

  /** the shared bit as a gpa value */
  get sharedBitGpa(): number {
    return this.sharedBit;
  }

  preFaultAllowed(): boolean {
    return this.preFault;
  }

  /** vt_is_tdx_private_gpa(): the shared bit is clear */
  faultIsPrivate(gpa: number): boolean {
    return Math.floor(gpa / this.sharedBitGpa) % 2 === 0;
  }

  /** tdx_gmem_max_mapping_level(): private → 4K (2M with the huge-page option), shared → no limit */
  gmemMaxMappingLevel(_pfn: number, isPrivate: boolean): number {
    if (!isPrivate) return 0;
    return this.hugePages ? PG_LEVEL_2M : PG_LEVEL_4K;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* errors, kicks, tdh_do_no_vcpus                                                             */
  /* ------------------------------------------------------------------------------------------ */

  /** TDX_BUG_ON / KVM_BUG_ON: the VM is dead. */
  private bug(what: string, status?: number): void {
    const reason = status === undefined ? what : `${what} failed: ${tdxStatusName(status)}`;
    this.stats.bugs++;
    this.bugReasons.push(reason);
    this.kvm.markBugged(reason);
  }

  /** bug() in a hook that returns an errno: the VM is bugged and the hook fails with -EIO */
  private bugEio(what: string, status?: number): number {
    this.bug(what, status);
    return -ERRNO.EIO;
  }

  /** kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE): every vCPU leaves TD context. */
  private kick(reason: string): void {
    this.stats.kicks++;
    this.kvm.kickAllVcpus(reason);
    this.td.vpExitAll();
  }

  private runOp(op: number, gpa: number, level: number, spt: number): number {
    switch (op) {
      case OP_BLOCK:
        return this.td.memRangeBlock(gpa, level);
      case OP_TRACK:
        return this.td.memTrack();
      case OP_REMOVE:
        return this.td.memPageRemove(gpa, level);
      default:
        return this.td.memPageDemote(gpa, level, spt);
    }
  }

  /**
   * tdh_do_no_vcpus(): run the SEAMCALL; on TDX_OPERAND_BUSY set wait_for_sept_zap, kick every
   * vCPU out of the guest and retry once. The retry is expected to succeed.
   */
  private doNoVcpus(op: number, gpa: number, level: number, spt: number): number {
    let err = this.runOp(op, gpa, level, spt);
    if (err === TDX_OPERAND_BUSY) {
      this.waitForSeptZap = true;
      this.stats.busyRetries++;
      this.kick(`${OP_NAMES[op]} busy`);
      err = this.runOp(op, gpa, level, spt);
      this.waitForSeptZap = false;
    }
    return err;
  }

  /**
   * tdx_track(): TDH.MEM.TRACK then kick every vCPU, only once the TD runs. It returns nothing:
   * a failed TRACK is a TDX_BUG_ON, the kick still follows, and the caller goes on to REMOVE or
   * DEMOTE, which the module then refuses (TDX_TLB_TRACKING_NOT_DONE).
   */
  private track(): void {
    if (this.td.state !== 'RUNNABLE') return;
    const err = this.doNoVcpus(OP_TRACK, 0, 0, 0);
    if (err !== TDX_SUCCESS) this.bug('TDH.MEM.TRACK', err);
    this.kick('tdx_track');
  }

  private leafLevelOk(level: number): boolean {
    return level === PG_LEVEL_4K || (this.hugePages && level === PG_LEVEL_2M);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* mirror-root hooks                                                                          */
  /* ------------------------------------------------------------------------------------------ */

  /** tdx_sept_link_private_spt(): TDH.MEM.SEPT.ADD. BUSY → -EBUSY (fault retried); else bug. */
  linkExternalSpt(gfn: number, level: number, externalSpt: number): number {
    const err = this.td.memSeptAdd(gfn * PAGE, level - 1, externalSpt);
    if (err === TDX_OPERAND_BUSY) return -ERRNO.EBUSY;
    if (err !== TDX_SUCCESS) return this.bugEio('TDH.MEM.SEPT.ADD', err);
    this.stats.septTablesLinked++;
    return 0;
  }

  /** tdx_sept_set_private_spte(): PAGE.ADD with the staged source before FINALIZE, PAGE.AUG after. */
  setExternalSpte(gfn: number, level: number, pfn: number): number {
    if (!this.leafLevelOk(level)) return this.bugEio(`set_external_spte at level ${level}`);
    const gpa = gfn * PAGE;
    if (this.td.state !== 'RUNNABLE') {
      // tdx_mem_page_add()
      const src = this.pageAddSrc;
      if (!src || this.preFault || level !== PG_LEVEL_4K) return this.bugEio(src ? 'TDH.MEM.PAGE.ADD after pre_fault_allowed' : 'TDH.MEM.PAGE.ADD without a staged source page');
      const err = this.td.memPageAdd(gpa, 0, pfn, src);
      if (err === TDX_OPERAND_BUSY) return -ERRNO.EBUSY;
      if (err !== TDX_SUCCESS) return this.bugEio('TDH.MEM.PAGE.ADD', err);
      this.stats.pagesAdded++;
      return 0;
    }
    const err = this.td.memPageAug(gpa, level - 1, pfn);
    if (err === TDX_OPERAND_BUSY) return -ERRNO.EBUSY;
    if (err !== TDX_SUCCESS) return this.bugEio('TDH.MEM.PAGE.AUG', err);
    this.stats.pagesAugmented++;
    return 0;
  }

  /**
   * tdx_sept_remove_private_spte(): BLOCK → TRACK → kick → REMOVE → WBINVD → reset the page.
   * Needs the HKID; any failure bugs the VM (the hook returns void).
   */
  removeExternalSpte(gfn: number, level: number, pfn: number): void {
    if (!this.td.hkidAssigned) return this.bug('remove_external_spte after the HKID was released');
    if (!this.leafLevelOk(level)) return this.bug(`remove_external_spte at level ${level}`);
    const gpa = gfn * PAGE;
    const tl = level - 1;
    let err = this.doNoVcpus(OP_BLOCK, gpa, tl, 0);
    if (err !== TDX_SUCCESS) return this.bug('TDH.MEM.RANGE.BLOCK', err);
    this.track();
    err = this.doNoVcpus(OP_REMOVE, gpa, tl, 0);
    if (err !== TDX_SUCCESS) return this.bug('TDH.MEM.PAGE.REMOVE', err);
    const n = SEPT_SPAN[tl]!;
    for (let k = 0; k < n; k++) {
      err = this.td.phymemPageWbinvd(pfn + k);
      if (err !== TDX_SUCCESS) return this.bug('TDH.PHYMEM.PAGE.WBINVD', err);
      this.phys.zeroPage(pfn + k); // tdx_quirk_reset_page()
    }
    this.stats.pagesRemoved++;
  }

  /** tdx_sept_free_private_spt(): only after the HKID is freed; TDH.PHYMEM.PAGE.RECLAIM. */
  freeExternalSpt(_gfn: number, _level: number, externalSpt: number): number {
    if (this.td.hkidAssigned) return this.bugEio('free_external_spt while the HKID is assigned');
    const err = this.td.phymemPageReclaim(externalSpt);
    if (err !== TDX_SUCCESS) return -ERRNO.EIO; // pr_tdx_error; the page is leaked
    this.phys.zeroPage(externalSpt);
    this.stats.septTablesReclaimed++;
    return 0;
  }

  /**
   * Split a 2 MiB private leaf (not upstream: Isaku Yamahata's split_private_spt, brought back as
   * split_external_spt in Yan Zhao's 2025 TDX huge-page RFC): BLOCK → TRACK → kick → DEMOTE.
   */
  splitExternalSpt(gfn: number, level: number, externalSpt: number): number {
    if (!this.hugePages || level !== PG_LEVEL_2M || !this.td.hkidAssigned) return this.bugEio(`split_external_spt at level ${level}`);
    const gpa = gfn * PAGE;
    let err = this.doNoVcpus(OP_BLOCK, gpa, level - 1, 0);
    if (err !== TDX_SUCCESS) return this.bugEio('TDH.MEM.RANGE.BLOCK', err);
    this.track();
    err = this.doNoVcpus(OP_DEMOTE, gpa, level - 1, externalSpt);
    if (err !== TDX_SUCCESS) return this.bugEio('TDH.MEM.PAGE.DEMOTE', err);
    this.stats.splits++;
    this.stats.septTablesLinked++;
    return 0;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* guest accesses and guest operations                                                        */
  /* ------------------------------------------------------------------------------------------ */

  /**
   * tdx_vcpu_create() (arch/x86/kvm/vmx/tdx.c): KVM_CREATE_VCPU fails with -EIO unless the TD is
   * TD_STATE_INITIALIZED, i.e. after KVM_TDX_INIT_VM and before KVM_TDX_FINALIZE_VM. (Its next
   * check, a split irqchip, is not modelled: the model has no irqchip.)
   */
  vcpuCreate(_vcpuId: number): number {
    return this.td.state === 'INITIALIZED' ? 0 : -ERRNO.EIO;
  }

  /**
   * tdx_vcpu_pre_run(): KVM_RUN fails with -EINVAL (and does nothing) unless the TD is RUNNABLE
   * (KVM_TDX_FINALIZE_VM done) and this vCPU had KVM_TDX_INIT_VCPU.
   */
  vcpuPreRun(vcpuId: number): number {
    if (this.td.state !== 'RUNNABLE' || !this.td.vcpuInitialized(vcpuId)) return -ERRNO.EINVAL;
    return 1;
  }

  /**
   * TDH.VP.ENTER for an access or a TDCALL. KVM_RUN reaches here only past tdx_vcpu_pre_run(),
   * so a TD that is not runnable is refused (false), never entered. While `wait_for_sept_zap`
   * is set tdx_vcpu_run() returns without entering and the vCPU retries (still true).
   */
  private enterIfRunnable(vcpuId: number): boolean {
    if (this.vcpuPreRun(vcpuId) <= 0) return false;
    if (!this.waitForSeptZap) this.td.vpEnter(vcpuId);
    return true;
  }

  checkGuestAccess(access: GuestAccessCheck): GuestAccessVerdict {
    if (!this.enterIfRunnable(access.vcpuId)) {
      return { kind: 'vm-dead', reason: `KVM_BUG: TD entry of vCPU ${access.vcpuId} before the TD is runnable (tdx_vcpu_pre_run refuses KVM_RUN)` };
    }
    if (!access.isPrivate) {
      // the shared EPT maps with the host key: a TD page there never yields its private contents
      if (this.td.pamt.has(access.pfn)) {
        return {
          kind: 'guest-exception',
          vector: 'none',
          reason: `shared alias reaches TD private page pfn ${access.pfn}: TD-bit mismatch, the private contents are never returned`,
        };
      }
      return ACCESS_OK;
    }
    const e = this.td.leafStateAt(gpaToGfn(access.gpa));
    const ec = PFERR_PRIVATE_ACCESS + (access.write ? 2 : 0) + (access.fetch ? 16 : 0);
    switch (e.state) {
      case SEPT_PRESENT:
        if (e.pfn !== access.pfn) return { kind: 'npf', errorCode: ec, reason: `S-EPT maps pfn ${e.pfn}, mirror pfn ${access.pfn}` };
        return ACCESS_OK;
      case SEPT_PENDING:
        if (this.td.attributes & TDX_TD_ATTR_SEPT_VE_DISABLE) {
          return { kind: 'vm-dead', reason: `pending EPT violation at gpa ${access.gpa}: page touched before TDG.MEM.PAGE.ACCEPT (SEPT_VE_DISABLE)` };
        }
        return { kind: 'guest-exception', vector: '#VE', reason: `EPT violation #VE: gpa ${access.gpa} is PENDING (not accepted)` };
      case SEPT_BLOCKED:
      case SEPT_PENDING_BLOCKED:
        return { kind: 'npf', errorCode: ec, reason: `S-EPT entry ${septStateName(e.state)}` };
      default:
        return { kind: 'npf', errorCode: ec, reason: 'no S-EPT mapping' };
    }
  }

  guestOp(vcpuId: number, req: TdxGuestRequest): GuestOpResult {
    switch (req.op) {
      case 'accept':
        return this.accept(vcpuId, req.gpa, req.level ?? PG_LEVEL_4K);
      case 'map_gpa':
        return this.mapGpa(vcpuId, req.gpa, req.size);
      case 'pending_interrupt':
        this.vcpu(vcpuId).pendingInterrupt = req.pending;
        return { ret: 0 };
      default:
        return { errno: 'EINVAL', detail: { reason: `unknown TDX guest op ${(req as { op: string }).op}` } };
    }
  }

  /** TDG.MEM.PAGE.ACCEPT; an unmapped page exits with an EPT violation, which KVM maps (AUG) first. */
  private accept(vcpuId: number, gpa: number, level: number): GuestOpResult {
    let st = this.td.tdgMemPageAccept(vcpuId, gpa, level - 1);
    if (st === TDG_EXIT_EPT_VIOLATION) {
      // the EPT violation carries the accept level (check_tdaccept_failure() cases 1.2 / 2): KVM
      // splits a larger mapping and maps at most at that level (tdx_check_accept_level(), TDX
      // huge-page series); without huge pages everything is 4K already
      const r = this.kvm.handlePrivateFault(vcpuId, gpa, this.hugePages ? level : undefined);
      if (r === -ERRNO.EFAULT || r === -ERRNO.EHWPOISON) {
        // kvm_mmu_prepare_memory_fault_exit(): the gfn is not private (or has no private page):
        // KVM_RUN returns to userspace with KVM_EXIT_MEMORY_FAULT, flags PRIVATE
        const page = Math.floor(gpa / PAGE) * PAGE;
        return {
          errno: r === -ERRNO.EFAULT ? 'EFAULT' : 'EHWPOISON',
          exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: page, size: PAGE } },
          detail: { gpa, reason: 'TDG.MEM.PAGE.ACCEPT: EPT violation on a gfn KVM cannot map privately' },
        };
      }
      if (r < 0) return { ret: 'EPT_VIOLATION', detail: { gpa, fault: r } };
      st = this.td.tdgMemPageAccept(vcpuId, gpa, level - 1);
      if (st === TDG_EXIT_EPT_VIOLATION) return { ret: 'EPT_VIOLATION', detail: { gpa } };
    }
    if (st === TDX_SUCCESS) {
      this.stats.pagesAccepted++;
      return OK_ACCEPT;
    }
    return { ret: tdxStatusName(st) };
  }

  private vcpu(id: number): TdxVcpuState {
    let v = this.vcpuState[id];
    if (!v) {
      v = { mapGpaNext: 0, mapGpaEnd: 0, mapGpaActive: false, pendingInterrupt: false };
      this.vcpuState[id] = v;
    }
    return v;
  }

  private tdvmcall(ret: TdvmcallStatusName, r11?: number): GuestOpResult {
    return r11 === undefined ? { ret } : { ret, detail: { r11 } };
  }

  /** kvm_vcpu_is_legal_gpa(): below 2^GPAW */
  private legalGpa(gpa: number): boolean {
    return gpa >= 0 && gpa < 2 ** this.gpaw;
  }

  /** tdx_map_gpa(): TDG.VP.VMCALL<MapGPA>(gpa, size) — checks in the kernel's order. */
  private mapGpa(vcpuId: number, gpa: number, size: number): GuestOpResult {
    const kvm = this.kvm;
    if (!kvm.userExitOnHypercall(KVM_HC_MAP_GPA_RANGE)) {
      return this.tdvmcall('TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED', gpa);
    }
    const end = gpa + size;
    if (
      end <= gpa ||
      !this.legalGpa(gpa) ||
      !this.legalGpa(end - 1) ||
      this.faultIsPrivate(gpa) !== this.faultIsPrivate(end - 1)
    ) {
      return this.tdvmcall('TDVMCALL_STATUS_INVALID_OPERAND', gpa);
    }
    if (gpa % PAGE !== 0 || size % PAGE !== 0) return this.tdvmcall('TDVMCALL_STATUS_ALIGN_ERROR', gpa);
    const v = this.vcpu(vcpuId);
    v.mapGpaNext = gpa;
    v.mapGpaEnd = end;
    v.mapGpaActive = true;
    return this.mapGpaStep(v);
  }

  /** __tdx_map_gpa(): forward the next ≤ 2 MiB to userspace as KVM_HC_MAP_GPA_RANGE. */
  private mapGpaStep(v: TdxVcpuState): GuestOpResult {
    const gpa = v.mapGpaNext;
    const size = Math.min(v.mapGpaEnd - gpa, TDX_MAP_GPA_MAX_LEN);
    const priv = this.faultIsPrivate(gpa);
    return {
      exit: {
        reason: 'KVM_EXIT_HYPERCALL',
        hypercall: {
          nr: KVM_HC_MAP_GPA_RANGE,
          args: [priv ? gpa : gpa - this.sharedBitGpa, size / PAGE, priv ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED],
          ret: 0,
          flags: KVM_EXIT_HYPERCALL_LONG_MODE,
        },
      },
    };
  }

  /** tdx_complete_vmcall_map_gpa() */
  completeHypercall(vcpuId: number, ret: number): GuestOpResult | null {
    const v = this.vcpuState[vcpuId];
    if (!v || !v.mapGpaActive) return null;
    if (ret !== 0) {
      v.mapGpaActive = false;
      // v6.18: every non-zero value is INVALID_OPERAND. Upstream ("allow userspace to return
      // errors to guest for MAPGPA"): EAGAIN → RETRY, EINVAL → INVALID_OPERAND, anything else
      // fails KVM_RUN with EINVAL (kvm_is_valid_map_gpa_range_ret())
      if (this.kvm.profile.mapGpaRangeUserErrors === false || ret === ERRNO.EINVAL) {
        return this.tdvmcall('TDVMCALL_STATUS_INVALID_OPERAND', v.mapGpaNext);
      }
      if (ret === ERRNO.EAGAIN) return this.tdvmcall('TDVMCALL_STATUS_RETRY', v.mapGpaNext);
      return { errno: 'EINVAL', detail: { reason: `hypercall.ret ${ret} is not 0, EINVAL or EAGAIN (kvm_is_valid_map_gpa_range_ret)` } };
    }
    v.mapGpaNext += TDX_MAP_GPA_MAX_LEN;
    if (v.mapGpaNext >= v.mapGpaEnd) {
      v.mapGpaActive = false;
      return this.tdvmcall('TDVMCALL_STATUS_SUCCESS');
    }
    if (v.pendingInterrupt) {
      v.mapGpaActive = false;
      return this.tdvmcall('TDVMCALL_STATUS_RETRY', v.mapGpaNext);
    }
    return this.mapGpaStep(v);
  }

  /* ------------------------------------------------------------------------------------------ */
  /* KVM_MEMORY_ENCRYPT_OP                                                                      */
  /* ------------------------------------------------------------------------------------------ */

  vmIoctl(req: TdxVmIoctl): VendorIoctlResult<TdxIoctlOut> {
    switch (req.cmd) {
      case 'tdx_init_vm':
        return this.initVm(req);
      case 'tdx_finalize_vm':
        return this.finalizeVm();
      default:
        fail('EINVAL', `tdx_vm_ioctl: unknown command ${(req as { cmd: string }).cmd}`);
    }
  }

  /** tdx_td_init(): TDH.MNG.CREATE (HKID) → TDH.MNG.KEY.CONFIG → TDH.MNG.INIT. */
  private initVm(args: Extract<TdxVmIoctl, { cmd: 'tdx_init_vm' }>): VendorIoctlResult<TdxIoctlOut> {
    if (this.td.state !== 'UNINITIALIZED' || this.td.lifecycle !== 'NONE') fail('EINVAL', 'tdx_td_init: TD already initialized');
    const attributes = args.attributes ?? TDX_TD_ATTR_SEPT_VE_DISABLE;
    // KVM_SUPPORTED_TD_ATTRS has a single bit in the model, so a plain comparison suffices
    if (attributes !== 0 && attributes !== KVM_SUPPORTED_TD_ATTRS) fail('EINVAL', 'tdx_td_init: unsupported TD attributes');
    const gpaw = args.gpaw ?? this.gpaw;
    if (gpaw !== 48 && gpaw !== 52) fail('EINVAL', 'setup_tdparams: GPAW must be 48 or 52');
    // The model builds the TDP MMU (its shared bit and EPT level) when the VM is created, so
    // the GPAW is chosen there (VM option `gpaw`); KVM_TDX_INIT_VM may only confirm it.
    if (gpaw !== this.gpaw) fail('EINVAL', `tdx_td_init: GPAW ${gpaw} differs from the VM's GPAW ${this.gpaw} (choose it when the VM is created)`);
    const hkid = this.module.allocHkid();
    if (hkid < 0) fail('ENOSPC', 'tdx_guest_keyid_alloc: no free HKID');
    const td = this.td;
    let err = td.mngCreate(hkid);
    if (err === TDX_SUCCESS) err = td.mngKeyConfig();
    if (err === TDX_SUCCESS) err = td.mngInit({ gpaw, attributes });
    if (err !== TDX_SUCCESS) {
      this.bug('tdx_td_init', err);
      fail('EIO', `tdx_td_init: ${tdxStatusName(err)}`);
    }
    this.gpaw = gpaw;
    return { ret: 0, out: { hkid, gpaw, gfn_direct_bits: this.gfnDirectBits } };
  }

  /** tdx_td_finalize(): TDH.MR.FINALIZE, then RUNNABLE and pre_fault_allowed. */
  private finalizeVm(): VendorIoctlResult<TdxIoctlOut> {
    if (this.td.state !== 'INITIALIZED') fail('EINVAL', 'tdx_td_finalize: TD not in INITIALIZED state');
    const err = this.td.mrFinalize();
    if (err === TDX_OPERAND_BUSY) fail('EBUSY', 'tdx_td_finalize: TDH.MR.FINALIZE busy');
    if (err !== TDX_SUCCESS) {
      this.bug('TDH.MR.FINALIZE', err);
      fail('EIO', `tdx_td_finalize: ${tdxStatusName(err)}`);
    }
    this.preFault = true;
    return { ret: 0, out: { mrtd: this.td.mrtd!.toString('hex') } };
  }

  vcpuIoctl(vcpuId: number, req: TdxVcpuIoctl): VendorIoctlResult<TdxIoctlOut> {
    switch (req.cmd) {
      case 'tdx_init_vcpu':
        return this.initVcpu(vcpuId);
      case 'tdx_init_mem_region':
        return this.initMemRegion(vcpuId, req);
      default:
        fail('EINVAL', `tdx_vcpu_ioctl: unknown command ${(req as { cmd: string }).cmd}`);
    }
  }

  private initVcpu(vcpuId: number): VendorIoctlResult<TdxIoctlOut> {
    if (!this.td.hkidAssigned || this.td.state === 'RUNNABLE') fail('EINVAL', 'tdx_vcpu_ioctl: TD not initialized or already finalized');
    if (this.td.vcpuInitialized(vcpuId)) fail('EINVAL', 'tdx_vcpu_init: vCPU already initialized');
    const err = this.td.vpInit(vcpuId);
    if (err !== TDX_SUCCESS) fail('EIO', `tdx_vcpu_init: ${tdxStatusName(err)}`);
    this.vcpu(vcpuId);
    return { ret: 0 };
  }

  /**
   * tdx_vcpu_init_mem_region(): kvm_gmem_populate() one page at a time, with
   * tdx_gmem_post_populate() as the callback. Progress is written back in `out`; a failure after
   * the first page returns `ret` < 0 with the progress, as the kernel does.
   */
  private initMemRegion(vcpuId: number, args: Extract<TdxVcpuIoctl, { cmd: 'tdx_init_mem_region' }>): VendorIoctlResult<TdxIoctlOut> {
    const td = this.td;
    if (!td.hkidAssigned || td.state === 'RUNNABLE') fail('EINVAL', 'tdx_vcpu_ioctl: TD not initialized or already finalized');
    if (!td.vcpuInitialized(vcpuId)) fail('EINVAL', 'tdx_vcpu_init_mem_region: vCPU not initialized');
    const flags = args.flags ?? 0;
    if (flags & ~KVM_TDX_MEASURE_MEMORY_REGION) fail('EINVAL', 'tdx_vcpu_init_mem_region: flags');
    const { source_addr: sourceAddr, gpa, nr_pages: nrPages } = args;
    const end = gpa + nrPages * PAGE;
    // upstream (2026) pre-checks the source: 0 is EINVAL before any page; v6.18 only checks the
    // alignment and a NULL source fails in the copy (EFAULT) on the first page
    const sourceCheck = this.kvm.profile.tdxInitMemRegionSourceCheck !== false;
    if (
      (sourceCheck && sourceAddr === 0) ||
      sourceAddr % PAGE !== 0 ||
      gpa % PAGE !== 0 ||
      // the uAPI's fields are u64: a fraction or a value past 2^53 is no page count
      !Number.isSafeInteger(nrPages) ||
      nrPages <= 0 ||
      end <= gpa ||
      !this.faultIsPrivate(gpa) ||
      !this.faultIsPrivate(end - 1) ||
      end - 1 >= this.sharedBitGpa
    ) {
      fail('EINVAL', 'tdx_vcpu_init_mem_region: region');
    }
    const kvm = this.kvm;
    const postPopulate = (gfn: number, pfn: number, src: Uint8Array | null): number => this.gmemPostPopulate(gfn, pfn, src, flags);
    let src = sourceAddr;
    let g = gpa;
    let n = nrPages;
    let ret = 0;
    while (n > 0) {
      const r = kvm.gmemPopulate({ startGfn: gpaToGfn(g), npages: 1, src, postPopulate });
      if (r < 0) {
        ret = r;
        break;
      }
      if (r !== 1) {
        ret = -ERRNO.EIO;
        break;
      }
      src += PAGE;
      g += PAGE;
      n--;
    }
    if (ret !== 0 && n === nrPages) throw new KvmError(errnoName(-ret) ?? 'EIO', 'tdx_vcpu_init_mem_region: kvm_gmem_populate');
    return { ret, out: { source_addr: src, gpa: g, nr_pages: n } };
  }

  /** tdx_gmem_post_populate(): stage the source for TDH.MEM.PAGE.ADD, map, then TDH.MR.EXTEND ×16 */
  private gmemPostPopulate(gfn: number, pfn: number, src: Uint8Array | null, flags: number): number {
    if (!src) return -ERRNO.EOPNOTSUPP;
    this.pageAddSrc = src;
    const r = this.kvm.mapPrivatePfn(gfn, pfn);
    this.pageAddSrc = null;
    if (r !== 0 || !(flags & KVM_TDX_MEASURE_MEMORY_REGION)) return r;
    const gpa = gfn * PAGE;
    for (let off = 0; off < PAGE; off += TDX_EXTENDMR_CHUNKSIZE) {
      const err = this.td.mrExtend(gpa + off);
      if (err !== TDX_SUCCESS) return this.bugEio('TDH.MR.EXTEND', err);
    }
    return 0;
  }

  /* ------------------------------------------------------------------------------------------ */
  /* teardown, invariants, inspection                                                           */
  /* ------------------------------------------------------------------------------------------ */

  /**
   * vm_pre_destroy → tdx_mmu_release_hkid(): TDH.VP.FLUSH on each vCPU, TDH.MNG.VPFLUSHDONE,
   * TDH.PHYMEM.CACHE.WB, TDH.MNG.KEY.FREEID. After this the S-EPT table pages can be reclaimed
   * (free_external_spt). Called once every guest_memfd is released, i.e. every private leaf is gone.
   */
  destroy(): void {
    const td = this.td;
    this.vmDestroyed = true;
    if (!td.hkidAssigned) return;
    // tdx_mmu_release_hkid(): TDH.VP.FLUSH on each initialized vCPU; a failure other than
    // TDX_VCPU_NOT_ASSOCIATED is a TDX_BUG_ON (tdx_flush_vp_on_cpu()) and leaves the vCPU
    // associated, so TDH.MNG.VPFLUSHDONE below is TDX_FLUSHVP_NOT_DONE and the HKID is leaked
    for (let i = 0; i < td.vcpus.length; i++) {
      if (!td.vcpuInitialized(i)) continue;
      const flush = td.vpFlush(i);
      if (flush !== TDX_SUCCESS && flush !== TDX_VCPU_NOT_ASSOCIATED) this.bug('TDH.VP.FLUSH', flush);
    }
    let err = td.mngVpFlushDone();
    if (err === TDX_SUCCESS) {
      // smp_func_do_phymem_cache_wb() on each package only reports a failure: "the following
      // tdh_mng_key_freeid() will fail", and that failure is what leaks the HKID
      const wb = td.phymemCacheWb();
      if (wb !== TDX_SUCCESS) this.bugReasons.push(`TDH.PHYMEM.CACHE.WB failed: ${tdxStatusName(wb)}`);
      err = td.mngKeyFreeid();
    }
    if (err !== TDX_SUCCESS) {
      const reason = `tdx_mmu_release_hkid: ${tdxStatusName(err)}; HKID leaked`;
      this.hkidLeaked = true;
      // TDX_FLUSHVP_NOT_DONE only ends the release ("goto out"); any other failure of
      // TDH.MNG.VPFLUSHDONE or TDH.MNG.KEY.FREEID is a TDX_BUG_ON
      if (err === TDX_FLUSHVP_NOT_DONE) this.bugReasons.push(reason);
      else this.bug(reason);
      return;
    }
    this.hkidReleased = true;
  }

  /**
   * tdx_vm_destroy() → tdx_reclaim_td_control_pages(): once the MMU has zapped every private
   * page and reclaimed every S-EPT table, TDH.PHYMEM.PAGE.RECLAIM takes back the TD's control
   * pages (the model's TDCS is its S-EPT root page) and they are reset and freed. Nothing while
   * the HKID is still assigned (tdx_mmu_release_hkid() failed: the pages are given up), and a
   * page RECLAIM refuses is leaked (tdx_reclaim_control_page()).
   */
  vmDestroy(): void {
    const td = this.td;
    const sept = td.sept;
    if (td.hkidAssigned || !sept) return;
    const root = sept.table(sept.rootLevel, 0);
    if (!root) return;
    if (td.phymemPageReclaim(root.hpa) !== TDX_SUCCESS) return;
    this.phys.zeroPage(root.hpa); // tdx_quirk_reset_paddr()
    this.phys.freePage(root.hpa);
  }

  /**
   * What the teardown should have released: the HKID (tdx_mmu_release_hkid(); kept only when a
   * teardown SEAMCALL failed, which bugReasons records), every private page (TDH.MEM.PAGE.REMOVE)
   * and every S-EPT page (TDH.PHYMEM.PAGE.RECLAIM) the TD owned in the PAMT.
   */
  checkAfterDestroy(): string[] {
    const out: string[] = [];
    const td = this.td;
    if (td.hkidAssigned && !this.hkidLeaked) out.push(`HKID ${td.hkid} still assigned (tdx_mmu_release_hkid() did not free it)`);
    td.sept?.forEachLeaf((gfn, level) => out.push(`private page gfn ${gfn} (level ${level + 1}) still in the S-EPT`));
    const owned = [...td.pamt.keys()].sort((a, b) => a - b);
    if (owned.length > 0) {
      // one sentence, the frames as runs: `pfns 3072-3074, 3076-3583`
      const runs: string[] = [];
      for (let i = 0; i < owned.length; ) {
        let j = i;
        while (j + 1 < owned.length && owned[j + 1] === owned[j]! + 1) j++;
        runs.push(j === i ? `${owned[i]}` : `${owned[i]}-${owned[j]}`);
        i = j + 1;
      }
      out.push(`${owned.length} page${owned.length === 1 ? '' : 's'} still owned by the TD in the PAMT (never reclaimed): pfn${owned.length === 1 ? '' : 's'} ${runs.join(', ')}`);
    }
    return out;
  }

  checkInvariants(): string[] {
    const out: string[] = [];
    const td = this.td;
    const sept = td.sept;
    const kvm = this.vmDestroyed ? null : this.vm;
    // After a TDX_BUG_ON the S-EPT stays as the failed SEAMCALL left it: the void
    // remove_external_spte hook cannot undo the zap of the mirror leaf, so a leaf may be left
    // BLOCKED or without a mirror leaf. The VM is dead and never runs again.
    const bugged = this.stats.bugs > 0;
    if (sept) {
      // S-EPT leaves: only PRESENT/PENDING outside a removal; none once the HKID is gone
      const septLeaves = new Map<number, number>();
      sept.forEachLeaf((gfn, level, state, pfn) => {
        if (!bugged && (state === SEPT_BLOCKED || state === SEPT_PENDING_BLOCKED)) {
          out.push(`S-EPT entry for gfn ${gfn} (level ${level + 1}) left ${septStateName(state)} outside a removal`);
        }
        if (this.hkidReleased) out.push(`private page gfn ${gfn} still in the S-EPT after the HKID was released`);
        septLeaves.set(gfn * 8 + level, pfn);
      });
      if (kvm) {
        kvm.forEachMirrorLeaf((gfn, level, pfn) => {
          const k = gfn * 8 + (level - 1);
          const spfn = septLeaves.get(k);
          if (spfn === undefined) out.push(`mirror leaf gfn ${gfn} (level ${level}) has no S-EPT entry`);
          else if (spfn !== pfn) out.push(`mirror leaf gfn ${gfn} maps pfn ${pfn}, S-EPT maps pfn ${spfn}`);
          else septLeaves.delete(k);
        });
        if (!bugged) for (const k of septLeaves.keys()) out.push(`S-EPT leaf gfn ${Math.floor(k / 8)} (level ${(k % 8) + 1}) has no mirror leaf`);
      }
      // table pages: none reclaimed while the HKID is live (root + every link)
      if (td.hkidAssigned && sept.tableCount !== this.stats.septTablesLinked + 1) {
        out.push(`S-EPT has ${sept.tableCount - 1} table pages but ${this.stats.septTablesLinked} were linked: a table page was freed while the HKID is assigned`);
      }
    }
    if (kvm) {
      kvm.forEachDirectLeaf((gfn, level, pfn) => {
        const n = SEPT_SPAN[level - 1]!;
        for (let k = 0; k < n; k++) {
          if (td.pamt.has(pfn + k)) out.push(`TD private page pfn ${pfn + k} reachable through shared alias gfn ${gfn + k}`);
        }
      });
    }
    return out;
  }

  inspect(query: TdxInspect): unknown {
    const td = this.td;
    switch (query.what) {
      case 'sept': {
        const gfn = kvmGpaToGfn({ backend: this }, query.gpa);
        const gpa = gfn * PAGE + (query.gpa % PAGE);
        if (!td.sept) return { gpa, level: 0, state: 'FREE', pfn: null };
        const e = td.sept.lookup(gfn);
        return { gpa, level: e.level + 1, state: septStateName(e.state), pfn: e.state ? e.pfn : null };
      }
      case 'td':
        return {
          state: td.state,
          lifecycle: td.lifecycle,
          hkid: td.hkid,
          hkidReleased: this.hkidReleased,
          gpaw: this.gpaw,
          attributes: td.attributes,
          epoch: td.epoch,
          refcount: [td.refcount[0], td.refcount[1]],
          vcpus: td.vcpus.map((v, i) => ({ id: i, initialized: v?.initialized ?? false, inGuest: v?.inGuest ?? false, epoch: v?.epoch ?? 0 })),
          mrtd: td.mrtd ? td.mrtd.toString('hex') : null,
          // pages the TD owns in the PAMT: its S-EPT pages (the root too) and its private pages
          pamtPages: td.pamt.size,
          preFaultAllowed: this.preFault,
          waitForSeptZap: this.waitForSeptZap,
        };
      case 'stats': {
        const byState: Record<string, number> = {};
        td.sept?.forEachLeaf((_g, _l, s) => {
          const n = septStateName(s);
          byState[n] = (byState[n] ?? 0) + 1;
        });
        // SEAMCALL counts flat, by trace name (tdh_mem_page_aug: 3), for `assert: { what: stats }`
        const calls: Record<string, number> = {};
        for (const [leaf, c] of Object.entries(td.allCallCounts())) calls[leaf.toLowerCase().replace(/\./g, '_')] = c;
        return {
          ...calls,
          ...this.stats,
          tdState: td.state,
          lifecycle: td.lifecycle,
          hkidAssigned: td.hkidAssigned,
          mrtd: td.mrtd ? td.mrtd.toString('hex') : null,
          septTables: td.sept ? td.sept.tableCount : 0,
          leavesByState: byState,
          seamcalls: td.callStats(),
          bugReasons: [...this.bugReasons],
        };
      }
      default:
        return undefined;
    }
  }
}

/** A TDX `VendorBackend` for `Kvm.createVm({ type: KVM_X86_TDX_VM, backend })`. */
export function createTdxBackend(opts: TdxBackendOptions): TdxBackend {
  return new TdxBackend(opts);
}


/**
 * `BackendFactory` for `new Kvm({ backends: { [KVM_X86_TDX_VM]: tdxBackendFactory } })`.
 * VM options: `hugePages` (default false) and `gpaw` (48 default | 52).
 */
export const tdxBackendFactory: BackendFactory<TdxEdge> = (options: Readonly<TdxVmOptions>, env: BackendEnv): TdxBackend => {
  checkVmOptions(options, TDX_VM_OPTIONS, 'tdx');
  const { hugePages = false, gpaw = 48 } = options;
  if (typeof hugePages !== 'boolean') fail('EINVAL', 'tdx: hugePages must be a boolean');
  if (gpaw !== 48 && gpaw !== 52) fail('EINVAL', 'tdx: gpaw must be 48 or 52');
  return createTdxBackend({ hugePages, gpaw, phys: env.phys });
};
