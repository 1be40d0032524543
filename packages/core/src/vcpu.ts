/**
 * `struct kvm_vcpu` and the guest's memory accesses. An access is one guest instruction that
 * loads, stores or fetches 1, 2, 4 or 8 bytes at a gpa: the hardware walks the TDP tables; on
 * a miss it takes an EPT violation / #NPF, KVM runs its fault path (kvm_mmu_page_fault) and
 * re-enters the guest; when KVM cannot finish inside the kernel, KVM_RUN returns to userspace
 * with an exit (`kvm_run.exit_reason` and its fields).
 */
import { ERRNO, errnoName as errnoNameOf, type ErrnoName } from './errno.js';
import type { GuestOpResult, KvmFile, KvmRunExit, VendorEdge, VendorIoctlResult } from './backend.js';
import { fail } from './errno.js';
import { KVM_INTERNAL_ERROR_EMULATION, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEMSLOT_INVALID, PAGE_SIZE } from './uapi.js';
import { EMULATED_MMIO, emulatedWriteDone, emulatorFragmentPfn } from './emulated-access.js';
import { KvmPageFault, kvmMmuFaultinPfn, kvmTdpMmuMapFault } from './mmu/page-fault.js';
import { RET_PF_CONTINUE } from './mmu/mmu-internal.js';
import type { Vm } from './vm.js';
import { preFaultMemory, type KvmPreFaultMemory } from './prefault.js';
import { VcpuPaging } from './mmu/shadow/vcpu-paging.js';
import { GuestAccessOp, WRITE_DONE, checkAccessSize, pageOffset, type GuestAccessOpOptions } from './guest-access-op.js';
import { deliverException, IDTR_RESET, type IdtRegister } from './event-delivery.js';
import { DIRTY_RING_FULL_EXIT, KvmDirtyRing, kvmPageInDirtyRing } from './memslot/dirty-ring.js';
/** mmap(2) bits kvm_vcpu_mmap() looks at */
const PROT_EXEC = 0x4;
const MAP_SHARED = 0x01;

export type GuestAccessKind = 'read' | 'write' | 'fetch';

export interface GuestAccess {
  gpa: number;
  /** 1, 2, 4 or 8 bytes */
  size: number;
  kind: GuestAccessKind;
  /** value stored by a write */
  value?: bigint;
  /** the access is private (SNP C-bit set / TDX shared bit clear); ignored by SW-protected VMs */
  private?: boolean;
}

/**
 * The outcome of a guest access: the value (reads and fetches), or the exit that made KVM_RUN
 * return to userspace, with KVM_RUN's errno when it returned -1 (EFAULT with
 * KVM_EXIT_MEMORY_FAULT), or an exception the guest took itself (#VC, #VE).
 */
export interface GuestAccessResult {
  value?: bigint;
  exit?: KvmRunExit;
  errno?: ErrnoName;
  exception?: { vector: string; reason: string; errorCode?: number; address?: number };
  /** why the access ended where it did (kernel rule), for explanations */
  reason?: string;
}


/** vcpu->mmio_fragments and friends: fragments as (gpa, len, byte offset in the access) triples */
interface EmulatedMmio {
  frags: number[];
  nr: number;
  cur: number;
  isWrite: boolean;
  /** the store's value, or the load's value so far (RAM bytes, then each completed fragment) */
  value: bigint;
}

/**
 * A vCPU and its file (kvm_vcpu_fops): the fd KVM_CREATE_VCPU returns holds a reference to the
 * VM (kvm_get_kvm() in kvm_vm_ioctl_create_vcpu()), which its close drops (kvm_vcpu_release()).
 * The vCPU itself lives until the VM is destroyed (kvm_destroy_vcpus()).
 */
export class Vcpu<E extends VendorEdge = VendorEdge> implements KvmFile {
  readonly kind = 'kvm-vcpu';
  /** the vCPU's file descriptor in the VMM process (create_vcpu_fd()) */
  fd = -1;
  /** close(2) of the vCPU fd happened (release()) */
  private fdReleased = false;
  /** the last exit KVM_RUN reported (kvm_run) */
  lastExit: KvmRunExit | null = null;
  /** an MMIO read waiting for userspace to provide the data (the current fragment) */
  pendingMmioRead: { gpa: number; size: number } | null = null;
  /**
   * The emulated access waiting for userspace (vcpu->mmio_needed): its MMIO fragments
   * (vcpu->mmio_fragments, at most two: one per page), the one userspace sees now
   * (mmio_cur_fragment), and the value being assembled (a load) or stored (a store).
   */
  private mmio: EmulatedMmio | null = null;
  /** how often this vCPU was kicked out of guest mode */
  kicks = 0;
  /** a signal is pending: the next KVM_RUN / KVM_PRE_FAULT_MEMORY returns EINTR */
  signalPending = false;
  /** RMP #NPF / retry loop count of the last access (seed 002's loop) */
  lastAccessRetries = 0;
  readonly fault = new KvmPageFault();
  /** CR0/CR3/CR4/EFER, gva accesses, and the shadow MMU's per-vCPU roots */
  readonly paging: VcpuPaging = new VcpuPaging(this);
  /** vcpu->dirty_ring, when the VM enabled KVM_CAP_DIRTY_LOG_RING before creating the vCPU */
  dirtyRing: KvmDirtyRing | null = null;
  /**
   * What a KVM_EXIT_DIRTY_RING_FULL interrupted: the access to run again on the next KVM_RUN
   * (the guest's instruction had not completed), or the result of one that had (an emulated
   * store), which the next KVM_RUN reports.
   */
  private ringFullPending: { access: GuestAccess } | { result: GuestAccessResult } | null = null;
  /** the access the synchronous driver runs (reused: no allocation per access) */
  private readonly syncOp: GuestAccessOp = new GuestAccessOp(this, undefined, { runsToCompletion: true });

  constructor(
    readonly vm: Vm<E>,
    readonly id: number,
  ) {}

  kick(): void {
    this.kicks++;
  }

  /**
   * kvm_vcpu_release(): the last descriptor of the vCPU fd is closed; the reference it held on
   * the VM is dropped (kvm_put_kvm(), which destroys a VM nothing else holds). The vCPU's
   * ioctls are EBADF from now on (no fd reaches it).
   */
  release(): void {
    if (this.fdReleased) return;
    this.fdReleased = true;
    this.vm.put();
  }

  /** release() was called: the vCPU fd is closed */
  get released(): boolean {
    return this.fdReleased;
  }

  /** kvm_dirty_ring_alloc() at KVM_CREATE_VCPU */
  allocDirtyRing(index: number, bytes: number, rsvdEntries: number): void {
    this.dirtyRing = new KvmDirtyRing(index, bytes, rsvdEntries);
  }

  /** kvm_dirty_ring_check_request(): the ring is soft-full and KVM_RUN must exit */
  dirtyRingExitPending(): boolean {
    return this.dirtyRing !== null && this.dirtyRing.softFullRequest && this.dirtyRing.checkRequest();
  }

  /** an access is waiting for the KVM_RUN after a KVM_EXIT_DIRTY_RING_FULL */
  get dirtyRingFullPending(): boolean {
    return this.ringFullPending !== null;
  }

  /**
   * mmap(2) of the vCPU fd at page `pgoff`. do_mmap() refuses PROT_EXEC first (EPERM): the
   * fd is an anon inode, whose mount is noexec (path_noexec()). Then kvm_vcpu_mmap(): a
   * mapping that covers the dirty ring's first or last page must be MAP_SHARED and not
   * PROT_EXEC (EINVAL).
   */
  mmapCheck(pgoff: number, pages: number, prot: number, flags: number): void {
    if (prot & PROT_EXEC) fail('EPERM', 'do_mmap: PROT_EXEC mapping of an anon inode (noexec)');
    const size = this.vm.dirtyRingSize;
    if ((kvmPageInDirtyRing(size, pgoff) || kvmPageInDirtyRing(size, pgoff + pages - 1)) && (prot & PROT_EXEC || !(flags & MAP_SHARED))) {
      fail('EINVAL', 'kvm_vcpu_mmap: the dirty ring must be mapped shared and not executable');
    }
  }

  /**
   * KVM_RUN with no new instruction: after a KVM_EXIT_DIRTY_RING_FULL, enter again; the ring
   * check runs first, then the interrupted access (or the report of a completed one). With
   * nothing pending only the ring check runs.
   */
  run(): GuestAccessResult {
    const p = this.ringFullPending;
    if (p !== null && 'access' in p) return this.access(p.access);
    const vm = this.vm;
    if (vm.deadReason !== null) return { errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` };
    const refused = this.preRun();
    if (refused) return refused;
    if (this.dirtyRingExitPending()) return this.ringFullExit('the dirty ring is still soft-full');
    this.ringFullPending = null;
    return p !== null ? p.result : {};
  }

  private ringFullExit(reason: string): GuestAccessResult {
    this.lastExit = DIRTY_RING_FULL_EXIT;
    if (this.vm.tracer.enabled) this.vm.tracer.emit('kvm_dirty_ring_exit', { vcpu_id: this.id });
    return { exit: DIRTY_RING_FULL_EXIT, reason: `kvm_dirty_ring_check_request: ${reason}` };
  }

  /* ------------------------------------------------------------- accesses --------------- */

  guestRead(gpa: number, size: number, isPrivate = false): GuestAccessResult {
    return this.accessRaw(gpa, size, false, false, 0n, isPrivate, 'read');
  }

  guestWrite(gpa: number, size: number, value: bigint, isPrivate = false): GuestAccessResult {
    return this.accessRaw(gpa, size, true, false, value, isPrivate, 'write');
  }

  guestFetch(gpa: number, size: number, isPrivate = false): GuestAccessResult {
    return this.accessRaw(gpa, size, false, true, 0n, isPrivate, 'fetch');
  }

  /** KVM_RUN until the access completes or an exit reaches userspace */
  access(a: GuestAccess): GuestAccessResult {
    return this.accessRaw(a.gpa, a.size, a.kind === 'write', a.kind === 'fetch', a.value ?? 0n, a.private ?? false, a.kind);
  }

  /**
   * access() from the access's fields, without a GuestAccess object per call. The vCPU is the
   * running vCPU meanwhile (kvm_get_running_vcpu(): its dirty ring takes the pages it dirties);
   * with a dirty ring, KVM_RUN first exits while the ring is soft-full, and an access whose
   * fault filled the ring stops with KVM_EXIT_DIRTY_RING_FULL before it completes.
   */
  private accessRaw(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint, isPrivate: boolean, kind: GuestAccessKind): GuestAccessResult {
    const vm = this.vm;
    if (vm.deadReason !== null) return { errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` };
    const refused = this.preRun();
    if (refused) return refused;
    if (this.signalPending) {
      this.signalPending = false;
      return { errno: 'EINTR', reason: 'signal pending at KVM_RUN' };
    }
    checkAccessSize(size);
    if (this.dirtyRing === null) return this.accessEntered(gpa, size, write, fetch, value, isPrivate, kind);
    this.ringFullPending = null;
    const prev = vm.runningVcpu;
    vm.runningVcpu = this;
    try {
      if (write && vm.profile.dirtyRingRelogsEachRun) {
        this.relogAtEntry(gpa);
        if (pageOffset(gpa) + size > PAGE_SIZE) this.relogAtEntry(gpa + size - 1);
      }
      // vcpu_enter_guest(): kvm_dirty_ring_check_request() before the guest runs
      if (this.dirtyRingExitPending()) {
        this.ringFullPending = { access: { gpa, size, kind, value, private: isPrivate } };
        return this.ringFullExit('the dirty ring is soft-full');
      }
      const r = this.accessEntered(gpa, size, write, fetch, value, isPrivate, kind);
      if (r.exit === DIRTY_RING_FULL_EXIT) {
        // a fault of this access filled the ring: the instruction runs again on the next KVM_RUN
        this.ringFullPending = { access: { gpa, size, kind, value, private: isPrivate } };
      } else if (r.exit === undefined && r.errno === undefined && this.dirtyRingExitPending()) {
        // KVM completed the instruction itself (emulation) and the ring filled: the exit comes
        // before the guest's next instruction
        this.ringFullPending = { result: r };
        return this.ringFullExit('the dirty ring filled while KVM completed the instruction');
      }
      return r;
    } finally {
      vm.runningVcpu = prev;
    }
  }

  /**
   * KernelProfile.dirtyRingRelogsEachRun: the page a write touches is write-protected at entry,
   * so the write faults and is logged again even if an earlier KVM_RUN made it writable.
   */
  private relogAtEntry(gpa: number): void {
    const vm = this.vm;
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = vm.gfnToMemslot(gfn);
    if (slot && slot.flags & KVM_MEM_LOG_DIRTY_PAGES && !(slot.flags & KVM_MEMSLOT_INVALID)) {
      vm.enableDirtyLogPtMasked(slot, gfn - slot.baseGfn, 1);
    }
  }

  private accessEntered(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint, isPrivate: boolean, kind: GuestAccessKind): GuestAccessResult {
    const vm = this.vm;
    // shadow MMU (tdp_enabled = false): with paging off a gpa is also the gva
    if (!vm.tdpEnabled && this.paging.cpuRole.level > 0) fail('EINVAL', 'guest paging is on: access guest memory by gva (vcpu.paging.access)');
    if (!vm.tdpEnabled && vm.profile.emulatedGuestAccesses === true) return this.emulatedAccess(gpa, size, write, fetch, value);
    if (!vm.tdpEnabled && pageOffset(gpa) + size <= PAGE_SIZE) return this.paging.access({ gva: gpa, size, kind, value });
    const pageOff = pageOffset(gpa);
    this.lastExit = null;
    this.pendingMmioRead = null;
    this.mmio = null;
    if (pageOff + size > PAGE_SIZE) return this.splitAccess(gpa, size, write, fetch, value, isPrivate);
    this.lastAccessRetries = 0;
    const op = this.syncOp.resetRaw(gpa, size, write, fetch, value, isPrivate);
    while (!op.step());
    const r = op.result();
    if (r.exit) {
      this.lastExit = r.exit;
      // one fragment: the whole access (emulator_read_write_onepage)
      if (r.exit.reason === 'KVM_EXIT_MMIO') this.mmio = { frags: [gpa, size, 0], nr: 1, cur: 0, isWrite: write, value: write ? value : 0n };
    }
    return r;
  }

  /**
   * The resumable form of `access` for an explorer: the entry checks run now (a dead VM, a
   * pending signal or a bad size give a finished op with that result; a page-crossing access
   * is not supported here), each `step()` runs one phase (walk → faultin → map [→ vendor]).
   * Retries are unbounded unless `opts.maxRetries` says otherwise.
   */
  beginAccess(a: GuestAccess, opts: GuestAccessOpOptions = { maxRetries: Infinity }): GuestAccessOp {
    checkAccessSize(a.size);
    if (!this.vm.tdpEnabled) fail('EINVAL', 'beginAccess: the VM uses the shadow MMU; use vcpu.paging.beginAccess');
    if ((a.gpa % PAGE_SIZE) + a.size > PAGE_SIZE) fail('EINVAL', 'beginAccess: an access that crosses a page boundary is two accesses');
    const op = new GuestAccessOp(this, a, opts);
    this.lastExit = null;
    this.pendingMmioRead = null;
    this.mmio = null;
    this.lastAccessRetries = 0;
    const refused = this.vm.dead ? null : this.preRun();
    if (this.vm.dead) op.finish({ errno: 'EIO', reason: `VM is dead: ${this.vm.deadReason}` });
    else if (refused) op.finish(refused);
    else if (this.signalPending) {
      this.signalPending = false;
      op.finish({ errno: 'EINTR', reason: 'signal pending at KVM_RUN' });
    } else if (this.dirtyRingExitPending()) {
      this.lastExit = DIRTY_RING_FULL_EXIT;
      op.finish({ exit: DIRTY_RING_FULL_EXIT, reason: 'kvm_dirty_ring_check_request: the dirty ring is soft-full' });
    }
    return op;
  }

  /**
   * kvm_arch_vcpu_ioctl_run() → kvm_x86_ops.vcpu_pre_run(): the vendor may refuse KVM_RUN
   * (TDX: the TD is not finalized or the vCPU not initialized → -EINVAL). A refused run returns
   * before complete_userspace_io and vcpu_run(), so nothing changes. null when the vCPU may run.
   */
  private preRun(): GuestAccessResult | null {
    const hook = this.vm.backend?.vcpuPreRun;
    if (!hook) return null;
    const r = hook.call(this.vm.backend, this.id);
    if (r > 0) return null;
    const errno = r < 0 ? errnoNameOf(-r) : undefined;
    return { errno: errno ?? 'EINVAL', reason: `KVM_RUN refused by ${this.vm.backend!.name}'s vcpu_pre_run (${r})` };
  }

  /**
   * An access that crosses a page boundary. The hardware translates both pages (each may
   * fault and be fixed like any access); when both are RAM the access completes in the guest.
   * When one page ends in emulation (no memslot, a read-only slot's write, ...), KVM emulates
   * the whole instruction: emulator_read_write() (arch/x86/kvm/x86.c) splits it at the page
   * boundary and emulator_read_write_onepage() reads or writes a RAM fragment itself (a load's
   * bytes are taken now, a store's are written now) while each MMIO fragment is queued in
   * vcpu->mmio_fragments. KVM_RUN then exits once per fragment, `phys_addr` = the fragment's
   * start and `len` = min(8, its length); complete_emulated_mmio() moves to the next fragment
   * on each re-entry, and the load completes with the RAM bytes and the MMIO data together.
   */
  private splitAccess(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint, isPrivate: boolean): GuestAccessResult {
    const n0 = PAGE_SIZE - pageOffset(gpa);
    const lens = [n0, size - n0];
    const gpas = [gpa, gpa + n0];
    // per page: the translated pfn (RAM), -1 (an MMIO fragment), -2 (an all-ones PCI hole) or
    // -3 (a store the shadow MMU emulated already: a write-tracked guest page table)
    const pfns = [0, 0];
    for (let i = 0; i < 2; i++) {
      this.lastAccessRetries = 0;
      const part = write ? BigInt.asUintN(8 * lens[i]!, value >> BigInt(i === 0 ? 0 : 8 * n0)) : 0n;
      let r: GuestAccessResult;
      let pfn: number;
      if (this.vm.tdpEnabled) {
        const op = this.syncOp.resetRaw(gpas[i]!, lens[i]!, write, fetch, part, isPrivate);
        op.translateOnly = true;
        while (!op.step());
        r = op.result();
        pfn = op.translatedPfn;
      } else {
        // shadow MMU, paging off: the gva is the gpa (vcpu_mmio_gva_to_gpa)
        const op = this.paging.translateFragment({ gva: gpas[i]!, size: lens[i]!, kind: write ? 'write' : fetch ? 'fetch' : 'read', value: part });
        r = op.result();
        pfn = op.translatedPfn;
        // a write to a write-tracked page (a shadowed guest page table) was emulated already
        if (pfn < 0 && write && r.errno === undefined && r.exit === undefined) {
          pfns[i] = -3;
          continue;
        }
      }
      if (pfn >= 0) pfns[i] = pfn;
      else if (r.exit?.reason === 'KVM_EXIT_MMIO') pfns[i] = -1;
      else if (r.value !== undefined && !write && r.exit === undefined) pfns[i] = -2;
      else {
        if (r.exit) this.lastExit = r.exit;
        return r;
      }
    }
    this.pendingMmioRead = null;
    const phys = this.vm.phys;
    let out = 0n;
    const frags: number[] = [];
    for (let i = 0; i < 2; i++) {
      const off = i === 0 ? 0 : n0;
      const len = lens[i]!;
      const pfn = pfns[i]!;
      if (pfn === -1) frags.push(gpas[i]!, len, off);
      else if (pfn === -3) continue;
      else if (pfn === -2) out |= ((1n << BigInt(8 * len)) - 1n) << BigInt(8 * off);
      else if (write) phys.writeValue(pfn, pageOffset(gpas[i]!), len, value >> BigInt(8 * off));
      else out |= phys.readValue(pfn, pageOffset(gpas[i]!), len) << BigInt(8 * off);
    }
    return this.fragmentsDone(frags, size, write, value, out, 'emulated page-crossing access', 'is not RAM');
  }

  /**
   * The end of emulator_read_write(): with no MMIO fragment the access is done (a load with the
   * RAM bytes `out`); else the fragments are queued in vcpu->mmio_fragments and KVM_RUN exits
   * with the first.
   */
  private fragmentsDone(frags: number[], size: number, write: boolean, value: bigint, out: bigint, what: string, why: string): GuestAccessResult {
    if (frags.length === 0) return write ? WRITE_DONE : { value: out };
    const m: EmulatedMmio = { frags, nr: frags.length / 3, cur: 0, isWrite: write, value: write ? BigInt.asUintN(8 * size, value) : out };
    this.mmio = m;
    return this.mmioExit(m, `${what}: fragment 1 of ${m.nr} (gpa 0x${frags[0]!.toString(16)}) ${why}`);
  }

  /**
   * The access as the instruction emulator performs it (profile `emulatedGuestAccesses`;
   * emulated-access.ts): KVM_RUN loads the vCPU's MMU root (kvm_mmu_reload()), then each page
   * fragment goes through the memslot's hva, RAM fragments now and MMIO fragments as exits,
   * as in splitAccess(). No SPTE is made.
   */
  private emulatedAccess(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint): GuestAccessResult {
    this.paging.ensureRoot(this.paging.l1, false);
    return this.emulateAt(gpa, size, write, fetch, value);
  }

  /**
   * emulator_read_write() at a translated gpa: RAM fragments through the memslot's hva now,
   * MMIO fragments as exits.
   * @internal
   */
  emulateAt(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint): GuestAccessResult {
    const vm = this.vm;
    this.lastExit = null;
    this.pendingMmioRead = null;
    this.mmio = null;
    this.lastAccessRetries = 0;
    const n0 = Math.min(size, PAGE_SIZE - pageOffset(gpa));
    const phys = vm.phys;
    const frags: number[] = [];
    let out = 0n;
    for (let off = 0; off < size; ) {
      const fgpa = gpa + off;
      const len = off === 0 ? n0 : size - n0;
      const pfn = emulatorFragmentPfn(vm, fgpa, write);
      if (pfn === EMULATED_MMIO) {
        if (fetch) {
          return { exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: KVM_INTERNAL_ERROR_EMULATION } }, reason: `instruction fetch from gpa 0x${fgpa.toString(16)}, which is not RAM` };
        }
        frags.push(fgpa, len, off);
      } else if (write) {
        const part = BigInt.asUintN(8 * len, value >> BigInt(8 * off));
        phys.writeValue(pfn, pageOffset(fgpa), len, part);
        emulatedWriteDone(vm, fgpa);
        // emulator_write_phys() → kvm_page_track_write() → kvm_mmu_track_write()
        vm.shadowMmu.trackWrite(fgpa, len, part !== 0n);
      } else {
        out |= phys.readValue(pfn, pageOffset(fgpa), len) << BigInt(8 * off);
      }
      off += len;
    }
    return this.fragmentsDone(frags, size, write, value, out, 'emulated access', "is not RAM the emulator can reach through the memslot's hva");
  }

  /** the KVM_EXIT_MMIO for the current fragment (emulator_read_write(), complete_emulated_mmio()) */
  private mmioExit(m: EmulatedMmio, reason: string): GuestAccessResult {
    const c = m.cur * 3;
    const fgpa = m.frags[c]!;
    const len = Math.min(8, m.frags[c + 1]!);
    const data = m.isWrite ? BigInt.asUintN(8 * len, m.value >> BigInt(8 * m.frags[c + 2]!)) : 0n;
    const exit: KvmRunExit = { reason: 'KVM_EXIT_MMIO', mmio: { phys_addr: fgpa, data, len, is_write: m.isWrite } };
    this.pendingMmioRead = m.isWrite ? null : { gpa: fgpa, size: len };
    this.lastExit = exit;
    return { exit, reason };
  }

  /** the guest's IDTR (LIDT); the reset value is base 0, limit 0xffff */
  idt: IdtRegister = { ...IDTR_RESET };

  /**
   * KVM did not emulate the MMIO access it decoded (an event being vectored hit MMIO:
   * kvm_prepare_event_vectoring_exit()): nothing is left for userspace to complete.
   */
  abortEmulatedMmio(): void {
    this.mmio = null;
    this.pendingMmioRead = null;
  }

  /** the guest raises exception `vector`: delivery through its IDT (event-delivery.ts) */
  raiseException(vector: number): GuestAccessResult {
    const r = deliverException(this, vector, this.idt);
    if (r.exit) this.lastExit = r.exit;
    return r;
  }

  /** KVM_RUN is waiting for userspace to complete a KVM_EXIT_MMIO (vcpu->mmio_needed) */
  get mmioNeeded(): boolean {
    return this.mmio !== null || this.pendingMmioRead !== null;
  }

  /**
   * KVM_RUN after a KVM_EXIT_MMIO: complete_emulated_mmio() (arch/x86/kvm/x86.c). A load takes
   * kvm_run.mmio.data for the current fragment; then either the next fragment exits, or the
   * access completes (a load returns the assembled value).
   */
  completeMmio(data = 0n): GuestAccessResult {
    const m = this.mmio;
    if (m === null) {
      if (this.pendingMmioRead) return this.completeMmioRead(data);
      fail('EINVAL', 'no KVM_EXIT_MMIO is pending on this vCPU');
    }
    // vcpu_pre_run() runs before complete_userspace_io: a refused KVM_RUN completes nothing
    const refused = this.preRun();
    if (refused) return refused;
    const c = m.cur * 3;
    const flen = m.frags[c + 1]!;
    const len = Math.min(8, flen);
    if (!m.isWrite) m.value |= BigInt.asUintN(8 * len, data) << BigInt(8 * m.frags[c + 2]!);
    if (flen <= 8) m.cur++;
    else {
      // a fragment longer than 8 bytes goes out 8 bytes at a time
      m.frags[c] = m.frags[c]! + len;
      m.frags[c + 1] = flen - len;
      m.frags[c + 2] = m.frags[c + 2]! + len;
    }
    if (m.cur >= m.nr) {
      this.mmio = null;
      this.pendingMmioRead = null;
      return m.isWrite ? WRITE_DONE : { value: m.value };
    }
    return this.mmioExit(m, `emulated page-crossing access: fragment ${m.cur + 1} of ${m.nr}`);
  }

  /** KVM_RUN after userspace filled kvm_run.mmio.data for a pending MMIO read */
  completeMmioRead(data: bigint): GuestAccessResult {
    if (this.mmio !== null && !this.mmio.isWrite) return this.completeMmio(data);
    const p = this.pendingMmioRead;
    if (!p) fail('EINVAL', 'no MMIO read is pending on this vCPU');
    const refused = this.preRun();
    if (refused) return refused;
    this.pendingMmioRead = null;
    return { value: data & ((1n << BigInt(8 * p.size)) - 1n) };
  }

  /**
   * kvm_mmu_page_fault() for a TDP fault, both phases back to back (the synchronous driver).
   * Returns RET_PF_* or -errno; the fault struct keeps the details.
   */
  pageFault(gpa: number, gfn: number, isPrivate: boolean, write: boolean, fetch: boolean, prefetch: boolean, maxLevel?: number): number {
    const f = this.fault;
    f.reset(gpa, gfn);
    if (maxLevel !== undefined) f.maxLevel = Math.min(f.maxLevel, maxLevel);
    f.isPrivate = isPrivate;
    f.write = write;
    f.exec = fetch;
    f.prefetch = prefetch;
    let r = kvmMmuFaultinPfn(this.vm, f);
    if (r === RET_PF_CONTINUE) r = kvmTdpMmuMapFault(this.vm, f);
    if (r < 0 && f.memoryFaultExit && f.isPrivate && r === -ERRNO.EFAULT) {
      // private memory is never emulated (kvm_mmu_do_page_fault)
    }
    return r;
  }

  /** the slot of `gfn` is being deleted or moved (for pre-fault's EAGAIN) */
  slotInvalid(gfn: number): boolean {
    const slot = this.vm.gfnToMemslot(gfn);
    return !!slot && (slot.flags & KVM_MEMSLOT_INVALID) !== 0;
  }

  /* ---------------------------------------------------------- vCPU ioctls --------------- */

  /** KVM_PRE_FAULT_MEMORY: updates args.gpa / args.size to the remaining range */
  preFaultMemory(args: KvmPreFaultMemory): void {
    // vcpu_load(): the vCPU is the running vCPU for the ioctl
    const prev = this.vm.runningVcpu;
    this.vm.runningVcpu = this;
    try {
      preFaultMemory(this, args);
    } finally {
      this.vm.runningVcpu = prev;
    }
  }

  /** KVM_MEMORY_ENCRYPT_OP on the vCPU fd (KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION) */
  memoryEncryptOp(req: E['vcpuIoctl']): VendorIoctlResult<E['ioctlOut']> {
    const backend = this.vm.backend;
    if (this.vm.dead) fail('EIO', `${req.cmd}: the VM is dead`);
    if (!backend?.vcpuIoctl) fail('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP: no vendor backend for this VM type');
    return backend.vcpuIoctl(this.id, req);
  }

  /** a vendor guest operation (PVALIDATE, TDG.MEM.PAGE.ACCEPT, PSC, MapGPA, ...) */
  guestOp(req: E['guestRequest']): GuestOpResult {
    const backend = this.vm.backend;
    if (this.vm.dead) return { errno: 'EIO' };
    if (!backend?.guestOp) fail('EINVAL', `guest operation ${req.op}: no vendor backend for this VM type`);
    // the guest runs the operation inside KVM_RUN: the vendor's vcpu_pre_run gates it
    const refused = this.preRun();
    if (refused) return { errno: refused.errno, detail: { reason: refused.reason } };
    const r = backend.guestOp(this.id, req);
    if (r.exit) this.lastExit = r.exit;
    return r;
  }

  /** KVM_RUN after userspace set kvm_run.hypercall.ret */
  completeHypercall(ret: number): GuestOpResult | null {
    const backend = this.vm.backend;
    if (!backend?.completeHypercall) fail('EINVAL', 'no hypercall is pending on this vCPU');
    const refused = this.preRun();
    if (refused) return { errno: refused.errno, detail: { reason: refused.reason } };
    const r = backend.completeHypercall(this.id, ret);
    if (r?.exit) this.lastExit = r.exit;
    return r;
  }
}
