/**
 * `struct kvm_vcpu` and the guest's memory accesses. An access is one guest instruction that
 * loads, stores or fetches 1, 2, 4 or 8 bytes at a gpa: the hardware walks the TDP tables; on
 * a miss it takes an EPT violation / #NPF, KVM runs its fault path (kvm_mmu_page_fault) and
 * re-enters the guest; when KVM cannot finish inside the kernel, KVM_RUN returns to userspace
 * with an exit (`kvm_run.exit_reason` and its fields).
 */
import { ERRNO, type ErrnoName } from './errno.js';
import type { GuestOpRequest, GuestOpResult, KvmRunExit, VendorIoctlResult } from './backend.js';
import { fail } from './errno.js';
import { KVM_MEMSLOT_INVALID, PAGE_SIZE } from './uapi.js';
import { KvmPageFault, kvmMmuFaultinPfn, kvmTdpMmuMapFault } from './mmu/page-fault.js';
import { RET_PF_CONTINUE } from './mmu/mmu-internal.js';
import type { Vm } from './vm.js';
import { preFaultMemory, type KvmPreFaultMemory } from './prefault.js';
import { VcpuPaging } from './mmu/shadow/vcpu-paging.js';
import { GuestAccessOp, WRITE_DONE, checkAccessSize, pageOffset, type GuestAccessOpOptions } from './guest-access-op.js';

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


export class Vcpu {
  readonly kind = 'kvm-vcpu';
  /** the last exit KVM_RUN reported (kvm_run) */
  lastExit: KvmRunExit | null = null;
  /** an MMIO read waiting for userspace to provide the data */
  pendingMmioRead: { gpa: number; size: number } | null = null;
  /** how often this vCPU was kicked out of guest mode */
  kicks = 0;
  /** a signal is pending: the next KVM_RUN / KVM_PRE_FAULT_MEMORY returns EINTR */
  signalPending = false;
  /** RMP #NPF / retry loop count of the last access (seed 002's loop) */
  lastAccessRetries = 0;
  readonly fault = new KvmPageFault();
  /** CR0/CR3/CR4/EFER, gva accesses, and the shadow MMU's per-vCPU roots */
  readonly paging: VcpuPaging = new VcpuPaging(this);
  /** the access the synchronous driver runs (reused: no allocation per access) */
  private readonly syncOp: GuestAccessOp = new GuestAccessOp(this, undefined, { runsToCompletion: true });

  constructor(
    readonly vm: Vm,
    readonly id: number,
  ) {}

  kick(): void {
    this.kicks++;
  }

  release(): void {}

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

  /** access() from the access's fields, without a GuestAccess object per call */
  private accessRaw(gpa: number, size: number, write: boolean, fetch: boolean, value: bigint, isPrivate: boolean, kind: GuestAccessKind): GuestAccessResult {
    const vm = this.vm;
    if (vm.deadReason !== null) return { errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` };
    if (this.signalPending) {
      this.signalPending = false;
      return { errno: 'EINTR', reason: 'signal pending at KVM_RUN' };
    }
    checkAccessSize(size);
    // shadow MMU (tdp_enabled = false): with paging off a gpa is also the gva
    if (!vm.tdpEnabled && this.paging.cpuRole.level > 0) fail('EINVAL', 'guest paging is on: access guest memory by gva (vcpu.paging.access)');
    if (!vm.tdpEnabled && pageOffset(gpa) + size <= PAGE_SIZE) return this.paging.access({ gva: gpa, size, kind, value });
    const pageOff = pageOffset(gpa);
    if (pageOff + size > PAGE_SIZE) return this.splitAccess({ gpa, size, kind, value, private: isPrivate });
    this.lastExit = null;
    this.pendingMmioRead = null;
    this.lastAccessRetries = 0;
    const op = this.syncOp.resetRaw(gpa, size, write, fetch, value, isPrivate);
    while (!op.step());
    const r = op.result();
    if (r.exit) this.lastExit = r.exit;
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
    this.lastAccessRetries = 0;
    if (this.vm.dead) op.finish({ errno: 'EIO', reason: `VM is dead: ${this.vm.deadReason}` });
    else if (this.signalPending) {
      this.signalPending = false;
      op.finish({ errno: 'EINTR', reason: 'signal pending at KVM_RUN' });
    }
    return op;
  }

  /** an access that crosses a page boundary is two translations, done byte by byte */
  private splitAccess(a: GuestAccess): GuestAccessResult {
    let value = 0n;
    for (let i = 0; i < a.size; i++) {
      const byte = a.kind === 'write' ? ((a.value ?? 0n) >> BigInt(8 * i)) & 0xffn : undefined;
      const r = this.accessOnePage({ ...a, gpa: a.gpa + i, size: 1, value: byte });
      if (r.exit || r.errno || r.exception) return r;
      if (r.value !== undefined) value |= r.value << BigInt(8 * i);
    }
    return a.kind === 'write' ? WRITE_DONE : { value };
  }

  /** one page: the vCPU's reusable GuestAccessOp, run to completion */
  private accessOnePage(a: GuestAccess): GuestAccessResult {
    this.lastAccessRetries = 0;
    if (!this.vm.tdpEnabled) return this.paging.access({ gva: a.gpa, size: a.size, kind: a.kind, ...(a.value !== undefined ? { value: a.value } : {}) });
    const op = this.syncOp.reset(a);
    while (!op.step());
    return op.result();
  }

  /** KVM_RUN after userspace filled kvm_run.mmio.data for a pending MMIO read */
  completeMmioRead(data: bigint): GuestAccessResult {
    const p = this.pendingMmioRead;
    if (!p) fail('EINVAL', 'no MMIO read is pending on this vCPU');
    this.pendingMmioRead = null;
    return { value: data & ((1n << BigInt(8 * p.size)) - 1n) };
  }

  /**
   * kvm_mmu_page_fault() for a TDP fault, both phases back to back (the synchronous driver).
   * Returns RET_PF_* or -errno; the fault struct keeps the details.
   */
  pageFault(gpa: number, gfn: number, isPrivate: boolean, write: boolean, fetch: boolean, prefetch: boolean): number {
    const f = this.fault;
    f.reset(gpa, gfn);
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
    preFaultMemory(this, args);
  }

  /** KVM_MEMORY_ENCRYPT_OP on the vCPU fd (KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION) */
  memoryEncryptOp(cmd: string, args: Readonly<Record<string, unknown>>): VendorIoctlResult {
    const backend = this.vm.backend;
    if (this.vm.dead) fail('EIO', `${cmd}: the VM is dead`);
    if (!backend?.vcpuIoctl) fail('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP: no vendor backend for this VM type');
    return backend.vcpuIoctl(this.id, cmd, args);
  }

  /** a vendor guest operation (PVALIDATE, TDG.MEM.PAGE.ACCEPT, PSC, MapGPA, ...) */
  guestOp(req: GuestOpRequest): GuestOpResult {
    const backend = this.vm.backend;
    if (this.vm.dead) return { errno: 'EIO' };
    if (!backend?.guestOp) fail('EINVAL', `guest operation ${req.op}: no vendor backend for this VM type`);
    const r = backend.guestOp(this.id, req);
    if (r.exit) this.lastExit = r.exit;
    return r;
  }

  /** KVM_RUN after userspace set kvm_run.hypercall.ret */
  completeHypercall(ret: number): GuestOpResult | null {
    const backend = this.vm.backend;
    if (!backend?.completeHypercall) fail('EINVAL', 'no hypercall is pending on this vCPU');
    const r = backend.completeHypercall(this.id, ret);
    if (r?.exit) this.lastExit = r.exit;
    return r;
  }
}
