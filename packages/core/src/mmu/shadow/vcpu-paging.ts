/**
 * A vCPU's paging state and its guest-virtual accesses (struct kvm_vcpu_arch's CR0/CR3/CR4/
 * EFER and struct kvm_mmu). With TDP the hardware walks the guest's tables itself and the
 * resulting gpa goes through the TDP MMU; with the shadow MMU (tdp_enabled = false) the
 * hardware walks KVM's shadow tables, and a miss is a #PF that KVM handles with
 * FNAME(page_fault) (paging_tmpl.h): walk the guest's tables, inject the guest's #PF or
 * fetch the shadow pages. An L2 under nested EPT is always shadowed (role.guest_mode).
 */
import { fail, ERRNO } from '../../errno.js';
import { KVM_INTERNAL_ERROR_EMULATION, PAGE_SIZE } from '../../uapi.js';
import { kvmMmuFaultinPfn, type KvmPageFault } from '../page-fault.js';
import { kvmMmuHugepageAdjust } from '../hugepage.js';
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK, RET_PF_CONTINUE, RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from '../mmu-internal.js';
import { sptePfn } from '../spte.js';
import { CHUNK_SHIFT, SptPool } from '../spt-pool.js';
import { ZERO_PFN } from '../../host/phys-mem.js';
import { GuestWalker, pt64IndexOf } from '../paging-tmpl.js';
import {
  type CpuRole,
  type GuestPagingRegs,
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  X86_EFLAGS_AC,
  calcCpuRole,
  calcEptCpuRole,
  pgdToGfn,
} from '../guest-paging.js';
import { type HugepageAdjuster, ShadowMmu, type ShadowVcpuContext } from './shadow-mmu.js';
import { makeRole } from './mmu-page.js';
import type { Vcpu, GuestAccessResult, GuestAccessKind } from '../../vcpu.js';
import type { KernelOp } from '../../steps.js';
import { DIRTY_RING_FULL_EXIT } from '../../memslot/dirty-ring.js';
import { pageOffset } from '../../guest-access-op.js';

/** one access by guest-virtual address (or, for L2, by L2 guest-physical address) */
export interface GvaAccess {
  gva: number;
  size: number;
  kind: GuestAccessKind;
  value?: bigint;
  /** CPL 3 (PFERR_USER_MASK); default supervisor */
  user?: boolean;
}

const MAX_FAULTS = 64;
const WRITE_DONE: GuestAccessResult = Object.freeze({});
const READ_ZERO: GuestAccessResult = Object.freeze({ value: 0n });

export class VcpuPaging implements HugepageAdjuster {
  regs: GuestPagingRegs = { cr0: 0, cr3: 0, cr4: 0, efer: 0, rflags: 2 };
  cpuRole: CpuRole = calcCpuRole(this.regs);
  /** the shadow root (struct kvm_mmu.root) for L1 when the VM uses the shadow MMU */
  readonly l1: ShadowVcpuContext = { role: this.cpuRole, root: -1 };
  /** L2 under nested EPT: EPTP and its shadow root (guest_mode) */
  nested: { eptp: number; ctx: ShadowVcpuContext } | null = null;
  readonly walker = new GuestWalker();
  /** the last #PF / EPT violation injected */
  lastInjected: { vector: string; errorCode: number; address: number } | null = null;

  constructor(private readonly vcpu: Vcpu) {}

  private get vm() {
    return this.vcpu.vm;
  }
  /** @internal */
  get vmRef() {
    return this.vcpu.vm;
  }
  /** @internal why the last fault ended where it did */
  get lastFaultReason(): string {
    return this.vcpu.fault.reason;
  }

  /** KVM_SET_SREGS (CR0, CR3, CR4, EFER): kvm_mmu_reset_context() unloads the roots */
  setRegs(regs: Partial<GuestPagingRegs>): void {
    const next = { ...this.regs, ...regs };
    const role = calcCpuRole(next); // EINVAL for an unmodelled mode, before anything changes
    this.regs = next;
    this.cpuRole = role;
    this.unloadL1();
    this.l1.role = role;
  }

  /** MOV to CR3: kvm_set_cr3() → kvm_mmu_new_pgd(), then KVM_REQ_MMU_SYNC (kvm_mmu_sync_roots) */
  setCr3(cr3: number): void {
    this.regs = { ...this.regs, cr3 };
    this.unloadL1();
    if (!this.vm.tdpEnabled && this.cpuRole.level > 0) {
      this.loadL1();
      this.syncRoots(this.l1);
    }
  }

  /** INVLPG: kvm_mmu_invlpg() syncs the unsync SPTE the address maps */
  invlpg(gva: number): void {
    if (this.vm.tdpEnabled || this.l1.root < 0) return;
    this.vm.shadowMmu.invalidateAddr(this.l1, this.l1.root, gva);
  }

  private unloadL1(): void {
    if (this.l1.root >= 0) this.vm.shadowMmu.putRoot(this.l1.root);
    this.l1.root = -1;
  }

  /** kvm_mmu_load() → mmu_alloc_shadow_roots() / mmu_alloc_direct_roots() for L1 */
  private loadL1(): void {
    const mmu = this.vm.shadowMmu;
    const r = this.cpuRole;
    const paging = r.level > 0;
    const role = makeRole({
      level: paging ? r.level : 4,
      direct: !paging,
      efer_nx: true, // KVM forces EFER.NX=1 when TDP is disabled
      cr0_wp: r.cr0_wp,
      smep_andnot_wp: r.cr4_smep && !r.cr0_wp,
      smap_andnot_wp: r.cr4_smap && !r.cr0_wp,
    });
    const sp = mmu.getShadowPage(this.l1, paging ? pgdToGfn(this.regs.cr3) : 0, role);
    mmu.getRoot(sp);
    this.l1.root = sp;
  }

  /** kvm_mmu_sync_roots(): sync the unsync pages below the root */
  private syncRoots(ctx: ShadowVcpuContext): void {
    if (ctx.root < 0) return;
    this.vm.shadowMmu.syncChildren(ctx, ctx.root);
  }

  /** nested VM-entry with EPT: L2's translation is L1's EPT tables at `eptp` */
  enterGuestMode(eptp: number): void {
    if (!this.vm.tdpEnabled) fail('EINVAL', 'nested EPT needs TDP (enable_ept): the host uses the shadow MMU');
    const role = calcEptCpuRole(eptp);
    this.leaveGuestMode();
    this.nested = { eptp, ctx: { role, root: -1 } };
  }

  leaveGuestMode(): void {
    if (this.nested && this.nested.ctx.root >= 0) this.vm.shadowMmu.putRoot(this.nested.ctx.root);
    this.nested = null;
  }

  private loadNested(): void {
    const n = this.nested!;
    const mmu = this.vm.shadowMmu;
    const role = makeRole({ level: n.ctx.role.level, direct: false, guest_mode: true, ad_disabled: !n.ctx.role.haveAd, cr0_wp: true, efer_nx: true });
    const sp = mmu.getShadowPage(n.ctx, pgdToGfn(n.eptp), role);
    mmu.getRoot(sp);
    n.ctx.root = sp;
  }

  /* ------------------------------------------------------------------- accesses -------- */

  /** kvm_dirty_ring_check_request() of this vCPU */
  dirtyRingExitPending(): boolean {
    return this.vcpu.dirtyRingExitPending();
  }

  /** one guest instruction's access by gva (L1); the vCPU is the running vCPU meanwhile */
  access(a: GvaAccess): GuestAccessResult {
    const vm = this.vm;
    if (this.vcpu.dirtyRing === null) return this.accessL1(a);
    const prev = vm.runningVcpu;
    vm.runningVcpu = this.vcpu;
    try {
      return this.accessL1(a);
    } finally {
      vm.runningVcpu = prev;
    }
  }

  private accessL1(a: GvaAccess): GuestAccessResult {
    checkAccess(a);
    if (this.vm.deadReason !== null) return { errno: 'EIO', reason: `VM is dead: ${this.vm.deadReason}` };
    if (this.vm.tdpEnabled) return this.tdpAccess(a);
    if (this.vm.profile.emulatedGuestAccesses === true) return this.emulatedAccess(a);
    // an obsolete root is unloaded (and a new one loaded) by ensureRoot() at the first walk
    return this.shadowAccess(this.l1, a, false);
  }

  /**
   * The access in the instruction emulator (profile `emulatedGuestAccesses`): KVM_RUN loads the
   * root, then emulator_read_write_onepage() translates the gva with the guest's own tables
   * (vcpu_mmio_gva_to_gpa() → FNAME(gva_to_gpa) → FNAME(walk_addr), which sets the A/D bits
   * through the hva and logs the table pages it writes, and injects #PF where the tables refuse
   * the access) and reads or writes the gpa through the memslot's hva. No TLB: a changed PTE
   * counts at once.
   */
  private emulatedAccess(a: GvaAccess): GuestAccessResult {
    this.ensureRoot(this.l1, false);
    let gpa = a.gva;
    if (this.cpuRole.level > 0) {
      const w = this.walker;
      if (!w.walk(this.cpuRole, this.regs.cr3, this.vm.guestMemory, a.gva, pferrOf(a), this.regs.rflags)) return this.injectPf(w.faultErrorCode, a.gva, '#PF');
      gpa = w.gfn * PAGE_SIZE + pageOffset(a.gva);
    }
    return this.vcpu.emulateAt(gpa, a.size, a.kind === 'write', a.kind === 'fetch', a.value ?? 0n);
  }

  /** one L2 access by L2 guest-physical address (nested EPT, shadowed) */
  l2Access(a: GvaAccess): GuestAccessResult {
    const vm = this.vm;
    const prev = vm.runningVcpu;
    vm.runningVcpu = this.vcpu;
    try {
      return this.accessL2(a);
    } finally {
      vm.runningVcpu = prev;
    }
  }

  private accessL2(a: GvaAccess): GuestAccessResult {
    checkAccess(a);
    if (!this.nested) fail('EINVAL', 'l2Access: the vCPU is not in guest mode (enterGuestMode)');
    if (this.nested.ctx.root >= 0 && this.vm.shadowMmu.isObsolete(this.nested.ctx.root)) {
      this.vm.shadowMmu.putRoot(this.nested.ctx.root);
      this.nested.ctx.root = -1;
    }
    return this.shadowAccess(this.nested.ctx, a, true);
  }

  /** the gpa a gva translates to under the current guest tables (no A/D updates), or null */
  translate(gva: number, access = 0): number | null {
    if (this.cpuRole.level === 0) return gva;
    const w = this.walker;
    if (!w.walk(this.cpuRole, this.regs.cr3, this.vm.guestMemory, gva, access, this.regs.rflags)) return null;
    return w.gfn * PAGE_SIZE + pageOffset(gva);
  }

  /** TDP: the hardware walks the guest's tables (setting A/D), then the gpa goes through TDP */
  private tdpAccess(a: GvaAccess): GuestAccessResult {
    let gpa = a.gva;
    if (this.cpuRole.level > 0) {
      const w = this.walker;
      if (!w.walk(this.cpuRole, this.regs.cr3, this.vm.guestMemory, a.gva, pferrOf(a), this.regs.rflags)) return this.injectPf(w.faultErrorCode, a.gva, '#PF');
      gpa = w.gfn * PAGE_SIZE + pageOffset(a.gva);
    }
    return this.vcpu.access({ gpa, size: a.size, kind: a.kind, ...(a.value !== undefined ? { value: a.value } : {}) });
  }

  private injectPf(errorCode: number, address: number, vector: string): GuestAccessResult {
    this.lastInjected = { vector, errorCode, address };
    return {
      exception: { vector, reason: `${vector} injected: error code 0x${errorCode.toString(16)} at 0x${address.toString(16)}`, errorCode, address },
    };
  }

  /**
   * The shadow MMU's access loop: the hardware walks the shadow tables; a miss or a
   * protection fault is a #PF (or, for L2, an EPT violation) that kvm_mmu_page_fault()
   * handles with FNAME(page_fault); the guest retries until the access completes, the guest
   * gets a fault injected, or KVM_RUN exits.
   */
  private shadowAccess(ctx: ShadowVcpuContext, a: GvaAccess, l2: boolean): GuestAccessResult {
    return this.syncOp.reset(ctx, a, l2, MAX_FAULTS).run().result();
  }
  private readonly syncOp: ShadowAccessOp = new ShadowAccessOp(this);

  /**
   * One fragment of an emulated page-crossing access with paging off (gva = gpa): fault the
   * page in through the shadow MMU and return the op, whose `translatedPfn` is the host pfn
   * when the page is RAM; otherwise its result is the fault's outcome (an MMIO exit, an
   * emulated write to a write-tracked page, an error).
   * @internal
   */
  translateFragment(a: GvaAccess): ShadowAccessOp {
    if (this.l1.root >= 0 && this.vm.shadowMmu.isObsolete(this.l1.root)) this.unloadL1();
    const op = this.syncOp.reset(this.l1, a, false, MAX_FAULTS);
    op.translateOnly = true;
    return op.run();
  }

  /**
   * The resumable form for an explorer: `step()` runs one phase — `walk` (the CPU's walk of
   * the shadow tables), `guest-walk` (FNAME(walk_addr) and kvm_mmu_faultin_pfn(), no
   * mmu_lock), `fetch` (under mmu_lock: is_page_fault_stale(), FNAME(fetch) with its
   * gpte_changed() checks). Another actor may write the guest's page tables in between.
   */
  beginAccess(a: GvaAccess, opts: { l2?: boolean; maxFaults?: number } = {}): ShadowAccessOp {
    checkAccess(a);
    if (this.vm.tdpEnabled && !opts.l2) fail('EINVAL', 'beginAccess: the VM uses TDP; gva accesses are synchronous (access)');
    const l2 = opts.l2 ?? false;
    if (l2 && !this.nested) fail('EINVAL', 'beginAccess: the vCPU is not in guest mode (enterGuestMode)');
    return new ShadowAccessOp(this).reset(l2 ? this.nested!.ctx : this.l1, a, l2, opts.maxFaults ?? Infinity);
  }

  /** @internal the root a context needs before the CPU can walk it */
  ensureRoot(ctx: ShadowVcpuContext, l2: boolean): void {
    const mmu = this.vm.shadowMmu;
    if (ctx.root >= 0 && mmu.isObsolete(ctx.root)) {
      mmu.putRoot(ctx.root);
      ctx.root = -1;
    }
    if (ctx.root < 0) {
      if (l2) this.loadNested();
      else this.loadL1();
    }
  }

  /** @internal the data access once the CPU found a present translation */
  complete(hw: number, a: GvaAccess): GuestAccessResult {
    const vm = this.vm;
    const off = pageOffset(a.gva);
    if (a.kind === 'write') {
      vm.phys.writeValue(hw, off, a.size, a.value ?? 0n);
      return WRITE_DONE;
    }
    // the shared zero page (a read fault on untouched anonymous memory) reads zeros: no lookup
    if (hw === ZERO_PFN) return READ_ZERO;
    const value = vm.phys.readValue(hw, off, a.size);
    return value === 0n ? READ_ZERO : { value };
  }

  /** @internal the end of kvm_mmu_page_fault() for a result that leaves the guest */
  finishFault(r: number, a: GvaAccess, l2: boolean): GuestAccessResult | null {
    const write = a.kind === 'write';
    const fetch = a.kind === 'fetch';
    if (r === INJECTED) return this.injectPf(this.walker.faultErrorCode, a.gva, l2 ? 'EPT_VIOLATION' : '#PF');
    if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS || r === RET_PF_RETRY) return null;
    if (r === RET_PF_WRITE_PROTECTED && write) return this.emulateWrite(a);
    if (r === RET_PF_WRITE_PROTECTED) return null;
    const f = this.vcpu.fault;
    if (r === RET_PF_EMULATE) {
      const gpa = f.gfn * PAGE_SIZE + pageOffset(a.gva);
      if (fetch) return { exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: KVM_INTERNAL_ERROR_EMULATION } }, reason: `instruction fetch from gpa 0x${gpa.toString(16)}, which is not RAM` };
      if (!write) this.vcpu.pendingMmioRead = { gpa, size: a.size };
      return {
        exit: { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: gpa, data: write ? BigInt.asUintN(8 * a.size, a.value ?? 0n) : 0n, len: a.size, is_write: write } },
        reason: f.reason,
      };
    }
    if (r < 0) {
      const errno = -r === ERRNO.EIO ? 'EIO' : 'EFAULT';
      if (f.memoryFaultExit) return { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', memory_fault: { flags: 0, gpa: f.gfn * PAGE_SIZE, size: PAGE_SIZE } }, errno, reason: f.reason };
      return { errno, reason: f.reason };
    }
    return { errno: 'EFAULT', reason: `unexpected fault result ${r}` };
  }

  /**
   * The CPU's walk of KVM's shadow tables: the host pfn of the page, -1 when a level is not
   * present, -2 when the leaf refuses the access (W, U / R, NX / X, SMEP, SMAP).
   */
  /** @internal */
  hardwareWalk(mmu: ShadowMmu, ctx: ShadowVcpuContext, a: GvaAccess, write: boolean, user: boolean, fetch: boolean, l2: boolean): number {
    // the access, not its address, is passed: a gva beyond the small-integer range passed as
    // a number is boxed on every call
    const addr = a.gva;
    let sp = ctx.root;
    const aLo = addr >>> 0;
    const aHi = addr > 0xffffffff ? (addr / 2 ** 32) >>> 0 : 0;
    const chunks = mmu.pool.chunks;
    for (let level = mmu.spLevel(sp); level >= 1; level--) {
      // the SPTE's two halves in its table's chunk (ShadowMmu.spteLo / spteHi)
      const w = chunks[sp >>> CHUNK_SHIFT]!;
      const o = SptPool.base(sp) + 2 * pt64IndexOf(aLo, aHi, level);
      const lo = w[o]!;
      if (!ShadowMmu.isPresent(lo)) return -1;
      const hi = w[o + 1]!;
      if (!ShadowMmu.isLast(lo, level)) {
        sp = ShadowMmu.childOf(lo, hi);
        continue;
      }
      const f = mmu.format;
      if (write && !(lo & 2)) return -2;
      if (l2 || f.name === 'ept') {
        if (fetch && !(lo & f.xLo)) return -2;
      } else {
        const u = (lo & f.userLo) !== 0;
        if (user && !u) return -2;
        if (fetch && hi & f.nxHi) return -2;
        const r = this.cpuRole;
        if (!user && u && fetch && r.cr4_smep) return -2;
        if (!user && u && !fetch && r.cr4_smap && !(this.regs.rflags & X86_EFLAGS_AC)) return -2;
      }
      let pfn = sptePfn(lo, hi);
      if (level > 1) pfn += Math.floor(addr / PAGE_SIZE) % 2 ** (9 * (level - 1));
      return pfn;
    }
    return -1;
  }

  /**
   * kvm_mmu_page_fault() → FNAME(page_fault) (indirect) or direct_page_fault() (paging off),
   * the part before mmu_lock: walk the guest's tables (INJECTED when they refuse the access),
   * page_fault_handle_page_track(), kvm_mmu_faultin_pfn(). RET_PF_CONTINUE when
   * `pageFaultLocked` should run.
   * @internal
   */
  pageFaultPrepare(ctx: ShadowVcpuContext, a: GvaAccess, errorCode: number, l2: boolean): number {
    const addr = a.gva;
    const vm = this.vm;
    const mmu = vm.shadowMmu;
    const f = this.vcpu.fault;
    const write = (errorCode & PFERR_WRITE_MASK) !== 0;
    const fetch = (errorCode & PFERR_FETCH_MASK) !== 0;
    const user = (errorCode & PFERR_USER_MASK) !== 0;
    const paging = ctx.role.level > 0;
    let gfn: number;
    const w = this.walker;
    if (paging) {
      const pgd = l2 ? this.nested!.eptp : this.regs.cr3;
      // EPT: a read is reported as PFERR_USER_MASK (the exit qualification's read bit)
      const access = l2 ? (write ? PFERR_WRITE_MASK : 0) | (fetch ? PFERR_FETCH_MASK : 0) | (!write && !fetch ? PFERR_USER_MASK : 0) : errorCode & ~PFERR_PRESENT_MASK;
      if (!w.walk(ctx.role, pgd, vm.guestMemory, addr, access, this.regs.rflags)) return INJECTED;
      gfn = w.gfn;
    } else {
      gfn = Math.floor(addr / PAGE_SIZE);
    }
    f.reset(addr, gfn);
    f.write = write;
    f.exec = fetch;
    f.user = user;
    f.present = (errorCode & PFERR_PRESENT_MASK) !== 0;
    if (paging) {
      f.maxLevel = Math.min(f.maxLevel, w.level);
      // page_fault_handle_page_track(): a write to a write-tracked gfn cannot be fixed
      if (f.present && f.write && mmu.gfnIsWriteTracked(gfn)) {
        if (ctx.root >= 0) mmu.clearFlood(ctx.root, addr);
        return RET_PF_WRITE_PROTECTED;
      }
    }
    const r = kvmMmuFaultinPfn(vm, f);
    if (r !== RET_PF_CONTINUE) return r;
    if (paging && !l2 && f.write && !(w.pteAccess & ACC_WRITE_MASK) && !ctx.role.cr0_wp && !f.user && f.slot) {
      // a supervisor write with CR0.WP=0 to a read-only gpte: writable, but not for CPL 3
      w.pteAccess |= ACC_WRITE_MASK;
      w.pteAccess &= ~ACC_USER_MASK;
      if (ctx.role.cr4_smep) w.pteAccess &= ~ACC_EXEC_MASK;
    }
    return RET_PF_CONTINUE;
  }

  /**
   * The part under mmu_lock: is_page_fault_stale(), make_mmu_pages_available(), then
   * FNAME(fetch) / direct_map().
   * @internal
   */
  pageFaultLocked(ctx: ShadowVcpuContext): number {
    const vm = this.vm;
    const mmu = vm.shadowMmu;
    const f = this.vcpu.fault;
    if (vm.mmuInvalidate.retryGfn(f.mmuSeq, f.gfn)) {
      f.reason = 'is_page_fault_stale: mmu_invalidate_retry_gfn';
      return RET_PF_RETRY;
    }
    if (ctx.root < 0 || mmu.isObsolete(ctx.root)) {
      f.reason = 'is_page_fault_stale: obsolete root';
      return RET_PF_RETRY;
    }
    const r = mmu.makeMmuPagesAvailable();
    if (r) return r;
    if (ctx.role.level === 0) return mmu.directMap(ctx, f, this);
    return mmu.fetch(ctx, f, this.walker, this);
  }

  /**
   * kvm_mmu_hugepage_adjust(): the TDP rules (slot, host level, dirty logging), and lpage_info
   * also counts the shadowed guest page tables inside the huge page
   * @internal
   */
  hugepageAdjust(fault: KvmPageFault): void {
    const vm = this.vm;
    kvmMmuHugepageAdjust(vm, fault);
    if (fault.goalLevel === 1) return;
    const before = fault.goalLevel;
    while (fault.goalLevel > 1 && vm.shadowMmu.lpageDisallowed(fault.gfn, fault.goalLevel)) fault.goalLevel--;
    if (fault.goalLevel !== before && fault.pfn >= 0) {
      // kvmMmuHugepageAdjust aligned the pfn for the larger level; the offset back inside it
      fault.pfn += (fault.gfn % 2 ** (9 * (before - 1))) - (fault.gfn % 2 ** (9 * (fault.goalLevel - 1)));
    }
    fault.reqLevel = fault.goalLevel;
  }

  /**
   * RET_PF_WRITE_PROTECTED on a write: kvm_mmu_write_protect_fault() → x86_emulate_instruction()
   * → emulator_write_phys(): KVM writes the guest memory itself and tells the MMU
   * (kvm_page_track_write → kvm_mmu_track_write).
   */
  private emulateWrite(a: GvaAccess): GuestAccessResult {
    const vm = this.vm;
    const f = this.vcpu.fault;
    const gpa = f.gfn * PAGE_SIZE + pageOffset(a.gva);
    const pfn = vm.guestMemory.pfnOf(gpa, true);
    if (pfn < 0) return { errno: 'EFAULT', reason: `emulated write to gpa 0x${gpa.toString(16)}: no host page` };
    vm.phys.writeValue(pfn, pageOffset(gpa), a.size, a.value ?? 0n);
    const slot = vm.gfnToMemslot(f.gfn);
    if (slot) vm.markPageDirty(slot, f.gfn);
    vm.shadowMmu.trackWrite(gpa, a.size, (a.value ?? 0n) !== 0n);
    return WRITE_DONE;
  }
}

const INJECTED = -1000;

function pferrOf(a: GvaAccess): number {
  return (a.kind === 'write' ? PFERR_WRITE_MASK : 0) | (a.kind === 'fetch' ? PFERR_FETCH_MASK : 0) | (a.user ? PFERR_USER_MASK : 0);
}

function checkAccess(a: GvaAccess): void {
  if (a.size !== 1 && a.size !== 2 && a.size !== 4 && a.size !== 8) fail('EINVAL', 'guest access size must be 1, 2, 4 or 8');
  if (!Number.isInteger(a.gva) || a.gva < 0) fail('EINVAL', 'gva must be a non-negative integer');
  if (pageOffset(a.gva) + a.size > PAGE_SIZE) fail('EINVAL', 'a gva access that crosses a page boundary is two accesses');
}

/** One access through the shadow MMU as a resumable kernel operation (see VcpuPaging.beginAccess). */
export class ShadowAccessOp implements KernelOp<GuestAccessResult> {
  readonly name = 'kvm_mmu_page_fault (shadow)';
  phase: 'walk' | 'guest-walk' | 'fetch' | 'done' = 'done';
  /** faults taken so far */
  faults = 0;
  private ctx: ShadowVcpuContext | null = null;
  private a: GvaAccess = { gva: 0, size: 1, kind: 'read' };
  private l2 = false;
  private maxFaults = MAX_FAULTS;
  private errorCode = 0;
  private res: GuestAccessResult = WRITE_DONE;
  /**
   * The emulator's translation of one fragment (emulator_read_write_onepage()): stop once
   * the page is mapped and report its host pfn in `translatedPfn` instead of accessing it.
   */
  translateOnly = false;
  /** the pfn a completed translation found (translateOnly), else -1 */
  translatedPfn = -1;

  constructor(private readonly paging: VcpuPaging) {}

  reset(ctx: ShadowVcpuContext, a: GvaAccess, l2: boolean, maxFaults: number): this {
    this.ctx = ctx;
    this.a = a;
    this.l2 = l2;
    this.maxFaults = maxFaults;
    this.faults = 0;
    this.phase = 'walk';
    this.translateOnly = false;
    this.translatedPfn = -1;
    return this;
  }

  result(): GuestAccessResult {
    return this.res;
  }

  private finish(r: GuestAccessResult): boolean {
    this.res = r;
    this.phase = 'done';
    return true;
  }

  step(): boolean {
    const p = this.paging;
    switch (this.phase) {
      case 'walk':
        return this.walkPhase();
      case 'guest-walk': {
        const r = p.pageFaultPrepare(this.ctx!, this.a, this.errorCode, this.l2);
        if (r === RET_PF_CONTINUE) {
          this.phase = 'fetch';
          return false;
        }
        return this.after(r);
      }
      case 'fetch':
        return this.after(p.pageFaultLocked(this.ctx!));
      case 'done':
        return true;
    }
  }

  /**
   * The phases of step() back to back, with nothing in between (the synchronous access):
   * the same calls in the same order, without the phase dispatch.
   */
  run(): this {
    const p = this.paging;
    const ctx = this.ctx!;
    if (this.phase !== 'walk') {
      while (!this.step());
      return this;
    }
    while (!this.walkPhase()) {
      let r = p.pageFaultPrepare(ctx, this.a, this.errorCode, this.l2);
      if (r === RET_PF_CONTINUE) {
        this.phase = 'fetch';
        r = p.pageFaultLocked(ctx);
      }
      if (this.after(r)) break;
    }
    return this;
  }

  /** the `walk` phase: the CPU's walk of the shadow tables; true when the access is done */
  private walkPhase(): boolean {
    const p = this.paging;
    const ctx = this.ctx!;
    const a = this.a;
    p.ensureRoot(ctx, this.l2);
    const vm = p.vmRef;
    if (vm.deadReason !== null) return this.finish({ errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` });
    const write = a.kind === 'write';
    const fetch = a.kind === 'fetch';
    const hw = p.hardwareWalk(vm.shadowMmu, ctx, a, write, a.user ?? false, fetch, this.l2);
    if (hw >= 0 && this.translateOnly) {
      this.translatedPfn = hw;
      return this.finish(WRITE_DONE);
    }
    if (hw >= 0) return this.finish(p.complete(hw, a));
    if (this.faults >= this.maxFaults) {
      return this.finish({ exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: 1 } }, reason: `the access did not complete after ${this.maxFaults} faults (last: ${p.lastFaultReason})` });
    }
    this.faults++;
    // error code: PRESENT when a leaf was there but refused the access
    this.errorCode = (hw === -2 ? PFERR_PRESENT_MASK : 0) | pferrOf(a);
    this.phase = 'guest-walk';
    return false;
  }

  private after(r: number): boolean {
    const out = this.paging.finishFault(r, this.a, this.l2);
    if (out) return this.finish(out);
    // vcpu_enter_guest(): a fault that filled the dirty ring ends KVM_RUN before re-entry
    if (this.paging.dirtyRingExitPending()) {
      return this.finish({ exit: DIRTY_RING_FULL_EXIT, reason: 'kvm_dirty_ring_check_request: a fault of this access filled the dirty ring (soft-full)' });
    }
    this.phase = 'walk';
    return false;
  }
}
