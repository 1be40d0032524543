/**
 * `struct kvm_vcpu` and the guest's memory accesses. An access is one guest instruction that
 * loads, stores or fetches 1, 2, 4 or 8 bytes at a gpa: the hardware walks the TDP tables; on
 * a miss it takes an EPT violation / #NPF, KVM runs its fault path (kvm_mmu_page_fault) and
 * re-enters the guest; when KVM cannot finish inside the kernel, KVM_RUN returns to userspace
 * with an exit (`kvm_run.exit_reason` and its fields).
 */
import { ERRNO, errnoName, type ErrnoName } from './errno.js';
import type { GuestOpRequest, GuestOpResult, KvmRunExit, VendorIoctlResult } from './backend.js';
import { fail } from './errno.js';
import {
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_MEMSLOT_INVALID,
  PAGE_SIZE,
  pagesPerHpage,
} from './uapi.js';
import { KvmPageFault, kvmMmuFaultinPfn, kvmTdpMmuMapFault } from './mmu/page-fault.js';
import {
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  RET_PF_WRITE_PROTECTED,
} from './mmu/mmu-internal.js';
import type { Vm } from './vm.js';
import { preFaultMemory, type KvmPreFaultMemory } from './prefault.js';

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
  exception?: { vector: string; reason: string };
  /** why the access ended where it did (kernel rule), for explanations */
  reason?: string;
}

/** Bound on in-kernel retries of one access in the synchronous driver. */
const MAX_RETRIES = 64;

const ALL_ONES = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, 0xffffffffffffffffn];

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
  private readonly walkOut = { lo: 0, hi: 0, level: 0, present: false, pfn: 0 };

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
    return this.access({ gpa, size, kind: 'read', private: isPrivate });
  }

  guestWrite(gpa: number, size: number, value: bigint, isPrivate = false): GuestAccessResult {
    return this.access({ gpa, size, kind: 'write', value, private: isPrivate });
  }

  guestFetch(gpa: number, size: number, isPrivate = false): GuestAccessResult {
    return this.access({ gpa, size, kind: 'fetch', private: isPrivate });
  }

  /** KVM_RUN until the access completes or an exit reaches userspace */
  access(a: GuestAccess): GuestAccessResult {
    const vm = this.vm;
    if (vm.dead) return { errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` };
    if (this.signalPending) {
      this.signalPending = false;
      return { errno: 'EINTR', reason: 'signal pending at KVM_RUN' };
    }
    if (![1, 2, 4, 8].includes(a.size)) fail('EINVAL', 'guest access size must be 1, 2, 4 or 8');
    const pageOff = a.gpa % PAGE_SIZE;
    if (pageOff + a.size > PAGE_SIZE) return this.splitAccess(a);
    this.lastExit = null;
    this.pendingMmioRead = null;
    const r = this.accessOnePage(a);
    if (r.exit) this.lastExit = r.exit;
    return r;
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
    return a.kind === 'write' ? {} : { value };
  }

  private accessOnePage(a: GuestAccess): GuestAccessResult {
    const vm = this.vm;
    const backend = vm.backend;
    const write = a.kind === 'write';
    const fetch = a.kind === 'fetch';
    const direct = backend?.gfnDirectBits ?? 0;
    const rawGfn = Math.floor(a.gpa / PAGE_SIZE);
    // kvm_gfn_direct_bits(): a TDX shared alias and its private twin share one gfn
    const gfn = direct && rawGfn >= direct ? rawGfn - direct : rawGfn;
    let isPrivate: boolean;
    if (backend?.faultIsPrivate) isPrivate = backend.faultIsPrivate(a.gpa, a.private ?? false);
    else isPrivate = vm.memIsPrivate(gfn); // KVM_X86_SW_PROTECTED_VM: the attribute decides
    const w = this.walkOut;
    let npfExtra = 0;
    this.lastAccessRetries = 0;

    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (vm.dead) return { errno: 'EIO', reason: `VM is dead: ${vm.deadReason}` };
      // The hardware walk (EPT / NPT). A present leaf with the needed permission completes
      // the translation; a present leaf without W but MMU-writable is fixed by fast_page_fault.
      if (npfExtra === 0 && vm.mmu.walk(gfn, isPrivate, w) && w.present) {
        const writable = vm.mmu.lastWalkWritable;
        if (write && !writable) {
          if (vm.mmu.makeWritable(gfn, isPrivate)) {
            const slot = vm.gfnToMemslot(gfn);
            if (slot?.dirtyBitmap) vm.dirtyLog.markPageDirtyInSlot(slot, gfn);
            continue;
          }
        } else {
          const n = pagesPerHpage(w.level);
          const pfn = w.pfn + (gfn % n);
          const verdict = backend?.checkGuestAccess?.({
            vcpuId: this.id,
            gpa: a.gpa,
            gfn,
            pfn,
            level: w.level,
            isPrivate,
            write,
            fetch,
          });
          if (!verdict || verdict.kind === 'ok') {
            const off = a.gpa % PAGE_SIZE;
            if (write) {
              vm.phys.writeValue(pfn, off, a.size, a.value ?? 0n);
              return {};
            }
            return { value: vm.phys.readValue(pfn, off, a.size) };
          }
          if (verdict.kind === 'guest-exception') return { exception: { vector: verdict.vector, reason: verdict.reason } };
          if (verdict.kind === 'vm-dead') {
            vm.markBugged(verdict.reason);
            return { errno: 'EIO', reason: verdict.reason };
          }
          // an #NPF the vendor's hardware raised on a present translation (SNP RMP check)
          npfExtra = verdict.errorCode;
          vm.tracer.emit('kvm_page_fault', { vcpu_id: this.id, gpa: a.gpa, error_code: npfExtra, reason: verdict.reason });
        }
      }
      const r = this.pageFault(a.gpa, gfn, isPrivate, write, fetch, false);
      if (npfExtra !== 0) {
        // e.g. sev_handle_rmp_fault(): PSMASH + zap on a size mismatch, no-op otherwise
        backend?.handleNpfExtra?.(this.id, a.gpa, npfExtra);
        npfExtra = 0;
        this.lastAccessRetries++;
        if (r < 0 || r === RET_PF_EMULATE) return this.finishFault(r, a, gfn, isPrivate);
        continue;
      }
      if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS || r === RET_PF_RETRY || r === RET_PF_WRITE_PROTECTED) {
        this.lastAccessRetries++;
        continue;
      }
      return this.finishFault(r, a, gfn, isPrivate);
    }
    return {
      exit: { reason: 'KVM_EXIT_INTERNAL_ERROR', internal: { suberror: 1 } },
      reason: `the access did not complete after ${MAX_RETRIES} faults (last: ${this.fault.reason})`,
    };
  }

  /** turn a fault result that ends KVM_RUN into the exit userspace sees */
  private finishFault(r: number, a: GuestAccess, gfn: number, isPrivate: boolean): GuestAccessResult {
    const f = this.fault;
    if (r === RET_PF_EMULATE) {
      if (f.pciHoleRead) return { value: ALL_ONES[a.size]!, reason: f.reason };
      const mmio = {
        phys_addr: a.gpa,
        data: a.kind === 'write' ? (a.value ?? 0n) & ((1n << BigInt(8 * a.size)) - 1n) : 0n,
        len: a.size,
        is_write: a.kind === 'write',
      };
      if (a.kind !== 'write') this.pendingMmioRead = { gpa: a.gpa, size: a.size };
      const exit: KvmRunExit = { reason: 'KVM_EXIT_MMIO', mmio };
      return { exit, reason: f.reason };
    }
    const name = errnoName(-r) ?? 'EFAULT';
    if (f.memoryFaultExit) {
      const exit: KvmRunExit = {
        reason: 'KVM_EXIT_MEMORY_FAULT',
        memory_fault: { flags: isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0, gpa: gfn * PAGE_SIZE, size: PAGE_SIZE },
      };
      return { exit, errno: name, reason: f.reason };
    }
    return { errno: name, reason: f.reason };
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
