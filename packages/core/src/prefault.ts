/**
 * KVM_PRE_FAULT_MEMORY (vCPU ioctl; the upstream form of the KVM_MAP_MEMORY RFC, seed 001):
 * generic kvm_vcpu_pre_fault_memory() in kvm_main.c and x86 kvm_arch_vcpu_pre_fault_memory()
 * / kvm_tdp_page_prefault() (kvm-uapi.md §7, mmu-and-vendors.md §A.8).
 *
 * A synthetic read fault per chunk ("doesn't break CoW"), private iff the gfn's attribute is
 * PRIVATE; each chunk maps up to the end of the (possibly huge) mapping it created, so one
 * step can consume more than 4 KiB. Returns 0 once any byte was processed; `gpa`/`size`
 * always come back as the remaining range.
 */
import { ERRNO, errnoName, fail, type ErrnoName } from './errno.js';
import { PAGE_SIZE, pagesPerHpage } from './uapi.js';
import type { KernelOp } from './steps.js';
import { kvmGfnDirectBits, kvmIsGfnAlias } from './gfn.js';
import { u64AddWraps, u64PageAligned, u64Value, type U64 } from './u64.js';
import type { Vcpu } from './vcpu.js';
import { kvmMmuFaultinPfn, kvmTdpMmuMapFault } from './mmu/page-fault.js';
import {
  RET_PF_CONTINUE,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  RET_PF_WRITE_PROTECTED,
} from './mmu/mmu-internal.js';

/** struct kvm_pre_fault_memory (gpa and size are in/out) */
export interface KvmPreFaultMemory {
  /** u64, in/out: a bigint keeps values above 2^53 exact; written back as numbers */
  gpa: U64;
  size: U64;
  flags?: number;
}

/** the range once checked: page aligned below 2^64, so exact as numbers */
interface CheckedRange {
  gpa: number;
  size: number;
  flags?: number;
}
/** retries of one chunk before the synchronous driver gives up (a RETRY that never clears) */
const MAX_CHUNK_RETRIES = 1000;

type Phase = 'chunk' | 'map' | 'done';

/** The resumable form: each chunk is a faultin phase and a map phase. */
export class PreFaultMemoryOp implements KernelOp<ErrnoName | null> {
  readonly name = 'kvm_vcpu_pre_fault_memory';
  phase: Phase = 'chunk';
  private processed = 0;
  private error: ErrnoName | null = null;
  private retries = 0;
  private gfn = 0;

  readonly range: CheckedRange;

  constructor(
    private readonly vcpu: Vcpu,
    range: KvmPreFaultMemory,
  ) {
    const vm = vcpu.vm;
    if (vm.dead) fail('EIO', 'KVM_PRE_FAULT_MEMORY: the VM is dead');
    if ((range.flags ?? 0) !== 0) fail('EINVAL', 'KVM_PRE_FAULT_MEMORY: flags must be 0');
    // kvm_vcpu_pre_fault_memory(): `gpa + size <= gpa` on u64 is a wrap (gpa + size >= 2^64,
    // 2^64 itself included) or size 0
    const gpa = u64Value(range.gpa, 'gpa');
    const size = u64Value(range.size, 'size');
    if (!u64PageAligned(gpa) || !u64PageAligned(size) || size === 0n || u64AddWraps(gpa, size))
      fail('EINVAL', 'KVM_PRE_FAULT_MEMORY: gpa/size not page aligned, size 0, or gpa + size wraps');
    this.range = range as CheckedRange;
    range.gpa = Number(gpa);
    range.size = Number(size);
  }

  step(): boolean {
    switch (this.phase) {
      case 'chunk':
        return this.faultin();
      case 'map':
        return this.map();
      case 'done':
        return true;
    }
  }

  private stop(err: ErrnoName | null): boolean {
    // 0 once any page was mapped, else the error
    this.error = this.processed > 0 ? null : err;
    this.phase = 'done';
    return true;
  }

  /** kvm_arch_vcpu_pre_fault_memory() up to and including kvm_mmu_faultin_pfn() */
  private faultin(): boolean {
    const { vcpu, range } = this;
    const vm = vcpu.vm;
    if (vcpu.signalPending) {
      vcpu.signalPending = false;
      return this.stop('EINTR');
    }
    if (vm.dead) return this.stop('EIO');
    if (!vm.profile.preFaultMemory) return this.stop('EOPNOTSUPP'); // MMU is not TDP
    if (vm.backend && !vm.backend.preFaultAllowed()) return this.stop('EOPNOTSUPP');
    const direct = kvmGfnDirectBits(vm);
    const rawGfn = range.gpa / PAGE_SIZE;
    if (kvmIsGfnAlias(vm, rawGfn)) return this.stop('EINVAL'); // a gfn alias
    this.gfn = rawGfn;
    const isPrivate = vm.memIsPrivate(rawGfn);
    // the shared alias of a TDX gfn carries the shared bit
    const gpa = isPrivate || !direct ? range.gpa : range.gpa + direct * PAGE_SIZE;
    const f = vcpu.fault;
    f.reset(gpa, rawGfn);
    f.isPrivate = isPrivate;
    f.prefetch = true;
    const r = kvmMmuFaultinPfn(vm, f);
    if (r === RET_PF_CONTINUE) {
      this.phase = 'map';
      return false;
    }
    return this.handle(r);
  }

  private map(): boolean {
    const r = kvmTdpMmuMapFault(this.vcpu.vm, this.vcpu.fault);
    return this.handle(r);
  }

  /** kvm_tdp_page_prefault()'s result mapping */
  private handle(r: number): boolean {
    const { vcpu, range } = this;
    if (r === RET_PF_RETRY) {
      if (++this.retries > MAX_CHUNK_RETRIES) return this.stop('EIO');
      this.phase = 'chunk';
      return false;
    }
    this.retries = 0;
    if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS || r === RET_PF_WRITE_PROTECTED) {
      const level = vcpu.vm.mmu.leafLevel(this.gfn, vcpu.fault.isPrivate) || 1;
      const n = pagesPerHpage(level);
      const end = (this.gfn - (this.gfn % n) + n) * PAGE_SIZE;
      const done = Math.min(range.size, end - range.gpa);
      range.gpa += done;
      range.size -= done;
      this.processed += done;
      // the kernel's `while (size)`: the next chunk, or 0 once the whole range is mapped
      if (range.size > 0) {
        this.phase = 'chunk';
        return false;
      }
      return this.stop(null);
    }
    if (r === RET_PF_EMULATE) return this.stop('ENOENT'); // no memslot: would be MMIO
    if (r < 0) return this.stop(errnoName(-r) ?? 'EIO');
    return this.stop('EIO');
  }

  /** null = the ioctl returned 0 */
  result(): ErrnoName | null {
    return this.error;
  }
}

/** KVM_PRE_FAULT_MEMORY, synchronously: throws KvmError; range is updated either way */
export function preFaultMemory(vcpu: Vcpu, range: KvmPreFaultMemory): void {
  const op = new PreFaultMemoryOp(vcpu, range);
  while (!op.step());
  const err = op.result();
  if (err) fail(err, `KVM_PRE_FAULT_MEMORY: ${vcpu.fault.reason || 'stopped'}`);
}

export { ERRNO };
