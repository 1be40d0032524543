/**
 * One guest memory access as a resumable kernel operation (`KernelOp`), the unit an explorer
 * interleaves with the VMM's operations. The phases follow the hardware and
 * kvm_mmu_page_fault() (arch/x86/kvm/mmu/mmu.c, mmu-and-vendors.md §A.4):
 *
 *   walk     the hardware TDP walk; a present leaf with the needed permission completes the
 *            access (done); a present read-only leaf that is MMU-writable is made writable
 *            (fast_page_fault) and walked again; a vendor check on the translation may raise an
 *            #NPF of its own (SNP: RMP check) → faultin; a miss → faultin
 *   faultin  kvm_mmu_faultin_pfn(): snapshot mmu_invalidate_seq, attribute and slot checks,
 *            resolve the pfn (no mmu_lock)
 *   map      under mmu_lock: is_page_fault_stale() then kvm_tdp_mmu_map()
 *   vendor   after an #NPF the vendor raised (SNP RMP fault): sev_handle_rmp_fault()
 *
 * RET_PF_RETRY / FIXED / SPURIOUS / WRITE_PROTECTED re-enter the guest: back to `walk`.
 * Anything else ends KVM_RUN with an exit or errno (done).
 *
 * `Vcpu.access` runs the same object to completion (one reusable op per vCPU, no allocation
 * per access); `Vcpu.beginAccess` hands out a fresh one for an explorer.
 */
import { errnoName } from './errno.js';
import type { GuestAccessCheck, GuestAccessVerdict, KvmRunExit } from './backend.js';
import { fail } from './errno.js';
import { KVM_INTERNAL_ERROR_EMULATION, KVM_MEMORY_EXIT_FLAG_PRIVATE, PAGE_SIZE } from './uapi.js';
import { kvmMmuFaultinPfn, kvmTdpMmuMapFault } from './mmu/page-fault.js';
import {
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  RET_PF_WRITE_PROTECTED,
} from './mmu/mmu-internal.js';
import type { KernelOp } from './steps.js';
import { kvmGpaToGfn } from './gfn.js';
import { MMIO_SPTE_GEN_MASK } from './mmu/spte.js';
import type { GuestAccess, GuestAccessResult, Vcpu } from './vcpu.js';
import { kvmSlotDirtyTrackEnabled } from './memslot/memslot.js';
import { DIRTY_RING_FULL_EXIT } from './memslot/dirty-ring.js';

export type GuestAccessPhase = 'walk' | 'faultin' | 'map' | 'vendor' | 'done';

/** Bound on in-kernel retries of one access (the synchronous driver reports an internal error). */
export const GUEST_ACCESS_MAX_RETRIES = 64;

const NO_RESULT: GuestAccessResult = Object.freeze({});
/**
 * The result of a completed write: it carries nothing, so every write shares one frozen
 * object (no allocation per access; a caller cannot change it for the next one).
 */
export const WRITE_DONE: GuestAccessResult = Object.freeze({});
/** The result of a read that returned zero (most reads of fresh memory): shared and frozen. */
export const READ_ZERO: GuestAccessResult = Object.freeze({ value: 0n });
const ALL_ONES = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, 0xffffffffffffffffn];

export interface GuestAccessOpOptions {
  /** faults before the access gives up with KVM_EXIT_INTERNAL_ERROR (default 64; Infinity for an explorer) */
  maxRetries?: number;
  /**
   * The op runs to completion with nothing interleaved (Vcpu.access): after a fault that
   * installed the leaf (RET_PF_FIXED), the guest's retry uses that leaf instead of walking
   * the tables again (the walk could only find the same leaf). Not for an explorer.
   */
  runsToCompletion?: boolean;
}

export class GuestAccessOp implements KernelOp<GuestAccessResult> {
  readonly name = 'kvm_guest_access';
  phase: GuestAccessPhase = 'done';
  /** the access (one page: a page-crossing access is split by Vcpu.access) */
  gpa = 0;
  size = 0;
  write = false;
  fetch = false;
  value = 0n;
  /** gfn with kvm_gfn_direct_bits() cleared */
  gfn = 0;
  isPrivate = false;
  /** faults taken so far (each ends in `walk` again or in done) */
  faults = 0;
  /** vendor #NPFs on a present translation (SNP RMP faults) so far */
  vendorFaults = 0;
  /** the last completed fault ended without installing anything (RETRY / SPURIOUS): the
   *  vCPU re-enters the guest and would fault the same way until another actor changes state */
  spinning = false;
  /** RET_PF_* of the last fault (or -errno) */
  lastFaultResult = 0;
  /**
   * Stop once the translation is complete, without loading or storing (a page-crossing access
   * translates both pages before it touches either: Vcpu.access). Cleared by reset().
   */
  translateOnly = false;
  /** the pfn the completed translation found (translateOnly), else -1 */
  translatedPfn = -1;
  maxRetries: number;
  private readonly runsToCompletion: boolean;
  /** the last fault returned RET_PF_FIXED and nothing ran since (runsToCompletion only) */
  private fixedLeaf = false;
  private npfExtra = 0;
  private faultRet = 0;
  private res: GuestAccessResult = NO_RESULT;
  private readonly walkOut = { lo: 0, hi: 0, level: 0, present: false, pfn: 0 };
  private readonly check: { -readonly [K in keyof GuestAccessCheck]: GuestAccessCheck[K] } = {
    vcpuId: 0,
    gpa: 0,
    gfn: 0,
    pfn: 0,
    level: 0,
    isPrivate: false,
    write: false,
    fetch: false,
  };

  constructor(
    readonly vcpu: Vcpu,
    a?: GuestAccess,
    opts: GuestAccessOpOptions = {},
  ) {
    this.maxRetries = opts.maxRetries ?? GUEST_ACCESS_MAX_RETRIES;
    this.runsToCompletion = opts.runsToCompletion === true;
    if (a) this.reset(a);
  }

  /** start a new access on this object (one page; no checks beyond the page split) */
  reset(a: GuestAccess): this {
    return this.resetRaw(a.gpa, a.size, a.kind === 'write', a.kind === 'fetch', a.value ?? 0n, a.private ?? false);
  }

  /** reset() from the access's fields (the synchronous driver's form: no GuestAccess object) */
  resetRaw(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint, requestedPrivate: boolean): this {
    const vm = this.vcpu.vm;
    const backend = vm.backend;
    this.gpa = gpa;
    this.size = size;
    this.write = write;
    this.fetch = fetch;
    this.value = value;
    const rawGfn = Math.floor(gpa / PAGE_SIZE);
    if (backend === null) {
      this.gfn = rawGfn;
      this.isPrivate = vm.memIsPrivate(rawGfn); // KVM_X86_SW_PROTECTED_VM: the attribute decides
    } else {
      // kvm_mmu_do_page_fault(): a TDX shared alias and its private twin share one gfn
      this.gfn = kvmGpaToGfn(vm, gpa);
      if (backend.faultIsPrivate) this.isPrivate = backend.faultIsPrivate(gpa, requestedPrivate);
      else this.isPrivate = vm.memIsPrivate(this.gfn);
    }
    this.faults = 0;
    this.vendorFaults = 0;
    this.spinning = false;
    this.npfExtra = 0;
    this.faultRet = 0;
    this.lastFaultResult = 0;
    this.fixedLeaf = false;
    this.translateOnly = false;
    this.translatedPfn = -1;
    this.res = NO_RESULT;
    this.phase = 'walk';
    return this;
  }

  result(): GuestAccessResult {
    return this.res;
  }

  step(): boolean {
    // with a dirty ring the vCPU is the running vCPU while its phases run (the ring
    // mark_page_dirty_in_slot() pushes to)
    if (this.vcpu.dirtyRing === null) return this.phaseStep();
    const vm = this.vcpu.vm;
    const prev = vm.runningVcpu;
    vm.runningVcpu = this.vcpu;
    try {
      return this.phaseStep();
    } finally {
      vm.runningVcpu = prev;
    }
  }

  private phaseStep(): boolean {
    switch (this.phase) {
      case 'walk':
        return this.walk();
      case 'faultin':
        return this.faultin();
      case 'map':
        return this.map();
      case 'vendor':
        return this.vendor();
      case 'done':
        return true;
    }
  }

  /** KVM_RUN ends with KVM_EXIT_DIRTY_RING_FULL before the instruction completes */
  private ringFull(): GuestAccessResult {
    return { exit: DIRTY_RING_FULL_EXIT, reason: 'kvm_dirty_ring_check_request: a fault of this access filled the dirty ring (soft-full)' };
  }

  /** end the access with `r` (KVM_RUN's entry checks use it too) */
  finish(r: GuestAccessResult): boolean {
    this.res = r;
    this.phase = 'done';
    return true;
  }

  private walk(): boolean {
    const vm = this.vcpu.vm;
    if (vm.dead) return this.finish({ errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` });
    const gfn = this.gfn;
    const w = this.walkOut;
    // The hardware walk (EPT / NPT). A present leaf with the needed permission completes
    // the translation; a present leaf without W but MMU-writable is fixed by fast_page_fault.
    const found = this.fixedLeaf ? vm.mmu.walkAfterMap(gfn, this.isPrivate, w) : vm.mmu.walk(gfn, this.isPrivate, w);
    this.fixedLeaf = false;
    if (found && w.present) {
      if (this.write && !vm.mmu.lastWalkWritable) {
        // fast_page_fault(): never make a huge SPTE of a dirty-logged slot writable; the slow
        // path maps the page at 4K so that the write is logged per page
        const slot = vm.gfnToMemslot(gfn);
        if (!(w.level > 1 && slot && kvmSlotDirtyTrackEnabled(slot)) && vm.mmu.makeWritable(gfn, this.isPrivate)) {
          if (slot && kvmSlotDirtyTrackEnabled(slot)) vm.markPageDirty(slot, gfn);
          // re-entry: kvm_dirty_ring_check_request()
          if (this.vcpu.dirtyRingExitPending()) return this.finish(this.ringFull());
          return false; // walk again
        }
      } else {
        const pfn = w.pfn; // walk() returns the pfn of this gfn (leaf pfn + offset in the huge page)
        const backend = vm.backend;
        let verdict: GuestAccessVerdict | undefined;
        if (backend !== null && backend.checkGuestAccess !== undefined) {
          // one check object per op, refilled: the hook reads it and does not keep it
          const c = this.check;
          c.vcpuId = this.vcpu.id;
          c.gpa = this.gpa;
          c.gfn = gfn;
          c.pfn = pfn;
          c.level = w.level;
          c.isPrivate = this.isPrivate;
          c.write = this.write;
          c.fetch = this.fetch;
          verdict = backend.checkGuestAccess(c);
        }
        if (verdict === undefined || verdict.kind === 'ok') {
          if (this.translateOnly) {
            this.translatedPfn = pfn;
            return this.finish(WRITE_DONE);
          }
          const off = pageOffset(this.gpa);
          if (this.write) {
            vm.phys.writeValue(pfn, off, this.size, this.value);
            return this.finish(WRITE_DONE);
          }
          const value = vm.phys.readValue(pfn, off, this.size);
          return this.finish(value === 0n ? READ_ZERO : { value });
        }
        if (verdict.kind === 'guest-exception') return this.finish(this.exceptionResult(verdict));
        if (verdict.kind === 'vm-dead') {
          vm.markBugged(verdict.reason);
          return this.finish({ errno: 'EIO', reason: verdict.reason });
        }
        // an #NPF the vendor's hardware raised on a present translation (SNP RMP check)
        this.npfExtra = verdict.errorCode;
        this.vendorFaults++;
        vm.tracer.emit('kvm_page_fault', { vcpu_id: this.vcpu.id, gpa: this.gpa, error_code: this.npfExtra, reason: verdict.reason });
      }
    }
    // An MMIO SPTE (present in the tables, not shadow-present): the hardware takes an EPT
    // misconfiguration and handle_mmio_page_fault() emulates at once if the SPTE's memslot
    // generation is current (check_mmio_spte()), before any attribute or private check;
    // otherwise (RET_PF_INVALID) the full fault runs and replaces the SPTE.
    if (!(found && w.present) && vm.backend === null) {
      const gen = vm.mmu.mmioSpteGeneration(w.lo, w.hi);
      if (gen >= 0 && gen === (vm.memslotsGeneration & MMIO_SPTE_GEN_MASK)) {
        const f = this.vcpu.fault;
        f.reset(this.gpa, gfn);
        f.write = this.write;
        f.exec = this.fetch;
        f.reason = 'cached MMIO SPTE (handle_mmio_page_fault): emulated MMIO';
        return this.finish(this.finishFault(RET_PF_EMULATE));
      }
    }
    if (this.faults >= this.maxRetries) {
      return this.finish({
        exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: 1 } },
        reason: `the access did not complete after ${this.maxRetries} faults (last: ${this.vcpu.fault.reason})`,
      });
    }
    this.faults++;
    const f = this.vcpu.fault;
    f.reset(this.gpa, gfn);
    f.isPrivate = this.isPrivate;
    f.write = this.write;
    f.exec = this.fetch;
    f.prefetch = false;
    this.phase = 'faultin';
    return false;
  }

  private faultin(): boolean {
    const r = kvmMmuFaultinPfn(this.vcpu.vm, this.vcpu.fault);
    if (r === RET_PF_CONTINUE) {
      this.phase = 'map';
      return false;
    }
    return this.faultDone(r);
  }

  private map(): boolean {
    return this.faultDone(kvmTdpMmuMapFault(this.vcpu.vm, this.vcpu.fault));
  }

  /** the end of kvm_mmu_page_fault(): re-enter the guest, or end KVM_RUN */
  private faultDone(r: number): boolean {
    this.lastFaultResult = r;
    this.spinning = r === RET_PF_RETRY || r === RET_PF_SPURIOUS;
    if (this.npfExtra !== 0) {
      this.faultRet = r;
      this.phase = 'vendor';
      return false;
    }
    if (r === RET_PF_WRITE_PROTECTED && this.write && this.vcpu.vm.shadowMmuIfUsed !== null) return this.finish(this.emulateTrackedWrite());
    if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS || r === RET_PF_RETRY || r === RET_PF_WRITE_PROTECTED) {
      this.vcpu.lastAccessRetries++;
      // vcpu_enter_guest(): a fault that filled the dirty ring ends KVM_RUN before re-entry
      if (this.vcpu.dirtyRingExitPending()) return this.finish(this.ringFull());
      this.fixedLeaf = r === RET_PF_FIXED && this.runsToCompletion;
      this.phase = 'walk';
      return false;
    }
    return this.finish(this.finishFault(r));
  }

  /**
   * RET_PF_WRITE_PROTECTED on a write (the gfn is a guest page table the shadow MMU
   * write-tracks, e.g. L1's EPT for an L2): kvm_mmu_write_protect_fault() →
   * x86_emulate_instruction() → emulator_write_phys(): KVM stores the value and calls
   * kvm_mmu_track_write().
   */
  private emulateTrackedWrite(): GuestAccessResult {
    const vm = this.vcpu.vm;
    const pfn = vm.guestMemory.pfnOf(this.gpa, true);
    if (pfn < 0) return { errno: 'EFAULT', reason: `emulated write to gpa 0x${this.gpa.toString(16)}: no host page` };
    vm.phys.writeValue(pfn, pageOffset(this.gpa), this.size, this.value);
    const slot = vm.gfnToMemslot(this.gfn);
    if (slot) vm.markPageDirty(slot, this.gfn);
    vm.shadowMmuIfUsed?.trackWrite(this.gpa, this.size, this.value !== 0n);
    return WRITE_DONE;
  }

  /** e.g. sev_handle_rmp_fault(): PSMASH + zap on a size mismatch, no-op otherwise */
  private vendor(): boolean {
    const vm = this.vcpu.vm;
    const s = vm.mmu.stats;
    const before = s.pages_4k + s.pages_2m + s.pages_1g + s.tlb_flushes;
    vm.backend?.handleNpfExtra?.(this.vcpu.id, this.gpa, this.npfExtra);
    this.npfExtra = 0;
    this.vcpu.lastAccessRetries++;
    const r = this.faultRet;
    if (r < 0 || r === RET_PF_EMULATE) return this.finish(this.finishFault(r));
    // the vendor handler changed the tables (PSMASH + zap): that is progress
    if (s.pages_4k + s.pages_2m + s.pages_1g + s.tlb_flushes !== before) this.spinning = false;
    this.phase = 'walk';
    return false;
  }

  /**
   * The result for a guest exception. Vendors answer with a few constant verdicts (SNP's
   * #VC for a page that is not validated), so the frozen result of the last verdict is kept
   * and shared while the same verdict object comes back.
   */
  private exceptionResult(verdict: GuestAccessVerdict & { kind: 'guest-exception' }): GuestAccessResult {
    if (verdict === this.lastVerdict && this.lastVerdictResult !== null) return this.lastVerdictResult;
    const r: GuestAccessResult = Object.freeze({ exception: Object.freeze({ vector: verdict.vector, reason: verdict.reason }) });
    if (Object.isFrozen(verdict)) {
      // only a frozen verdict can be recognised again: a mutable one may have changed
      this.lastVerdict = verdict;
      this.lastVerdictResult = r;
    }
    return r;
  }
  private lastVerdict: GuestAccessVerdict | null = null;
  private lastVerdictResult: GuestAccessResult | null = null;

  /** turn a fault result that ends KVM_RUN into the exit userspace sees */
  private finishFault(r: number): GuestAccessResult {
    const f = this.vcpu.fault;
    const size = this.size;
    if (r === RET_PF_EMULATE) {
      if (f.pciHoleRead) return { value: ALL_ONES[size] ?? (1n << BigInt(8 * size)) - 1n, reason: f.reason };
      if (this.fetch) {
        // The emulator must fetch the instruction bytes at the faulting gpa itself
        // (kvm_fetch_guest_virt): there is no RAM there, decoding fails, and
        // handle_emulation_failure() exits to userspace at CPL0 with an emulation error.
        return {
          exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: KVM_INTERNAL_ERROR_EMULATION } },
          reason: `instruction fetch from gpa 0x${this.gpa.toString(16)}, which is not RAM (${f.reason}): emulation failure`,
        };
      }
      const mmio = {
        phys_addr: this.gpa,
        data: this.write ? this.value & ((1n << BigInt(8 * size)) - 1n) : 0n,
        len: size,
        is_write: this.write,
      };
      if (!this.write) this.vcpu.pendingMmioRead = { gpa: this.gpa, size };
      const exit: KvmRunExit = { reason: 'KVM_EXIT_MMIO', mmio };
      return { exit, reason: f.reason };
    }
    const name = errnoName(-r) ?? 'EFAULT';
    if (f.memoryFaultExit) {
      const exit: KvmRunExit = {
        reason: 'KVM_EXIT_MEMORY_FAULT',
        memory_fault: { flags: this.isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0, gpa: this.gfn * PAGE_SIZE, size: PAGE_SIZE },
      };
      return { exit, errno: name, reason: f.reason };
    }
    return { errno: name, reason: f.reason };
  }
}

/** KVM_RUN's entry checks of a guest access (shared by Vcpu.access and Vcpu.beginAccess) */
export function checkAccessSize(size: number): void {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) fail('EINVAL', 'guest access size must be 1, 2, 4 or 8');
}

/**
 * gpa % PAGE_SIZE. A gpa above 2^31 is a double, and a float modulo is a libm call; for a
 * non-negative integer the low 12 bits of its low 32-bit half are the same number.
 */
export function pageOffset(gpa: number): number {
  return gpa >= 0 && gpa === Math.floor(gpa) ? (gpa >>> 0) & (PAGE_SIZE - 1) : gpa % PAGE_SIZE;
}
